"""The NumPy twin: the U-Net with every forward and backward written by hand, proven equal to PyTorch autograd.

NumPy only: nothing in this package imports torch but `bridge.py`, which is imported only when asked for (a test
checks it). `NumpyUNet.from_torch` reads a PyTorch model by duck typing; the way back is
`unetlab.twin.bridge.to_torch`. Derivations: docs/twin.md.

    >>> twin = NumpyUNet(in_channels=1, num_classes=2, base_channels=8, depth=3, dtype=np.float64)
    >>> logits = twin.forward(image)                   # (N, 2, H, W)
    >>> loss, cache = softmax_ce_forward(logits, mask)
    >>> grads = twin.backward(softmax_ce_backward(1.0, cache))  # {state_dict key: gradient}
    >>> Adam(lr=1e-3).step(twin.params, grads)
"""

from unetlab.twin.losses import (
    sigmoid_bce_backward,
    sigmoid_bce_forward,
    soft_dice_backward,
    soft_dice_forward,
    softmax_ce_backward,
    softmax_ce_forward,
)
from unetlab.twin.model import NumpyUNet
from unetlab.twin.optim import SGD, Adam

__all__ = [
    "SGD",
    "Adam",
    "NumpyUNet",
    "sigmoid_bce_backward",
    "sigmoid_bce_forward",
    "soft_dice_backward",
    "soft_dice_forward",
    "softmax_ce_backward",
    "softmax_ce_forward",
]
