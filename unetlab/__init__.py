"""unetlab: U-Nets for image segmentation, built from scratch and built twice."""

__version__ = "0.1.0"

from unetlab.errors import UnetlabError
from unetlab.models import AttentionUNet, ResNetUNet, UNet, create_model, list_models
from unetlab.prediction import Prediction, Predictor, predict

__all__ = [
    "AttentionUNet",
    "Prediction",
    "Predictor",
    "ResNetUNet",
    "UNet",
    "UnetlabError",
    "__version__",
    "create_model",
    "list_models",
    "predict",
]
