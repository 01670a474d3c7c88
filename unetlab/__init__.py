"""unetlab: U-Nets for image segmentation, built from scratch and built twice."""

from unetlab.errors import UnetlabError
from unetlab.models import AttentionUNet, ResNetUNet, UNet, create_model, list_models

__version__ = "0.1.0"

__all__ = ["AttentionUNet", "ResNetUNet", "UNet", "UnetlabError", "__version__", "create_model", "list_models"]
