"""The twin's state: names and shapes identical to PyTorch's `UNet.state_dict()`, initialisation, and checks.

- `state_shapes(...)` lists every parameter and buffer of a `unetlab.models.UNet` of that configuration, in
  `state_dict()` order (a module's own tensors, then its children in registration order).
- `init_state(...)` draws weights as the U-Net paper does (Ronneberger et al. 2015, Sec. 3.1: Gaussian with
  standard deviation sqrt(2 / N), N the incoming connections of a unit; He et al. 2015).
- `check_state(...)` compares key sets and shapes before anything is copied (nanoGPT `GPT.from_pretrained`).
- `state_dict_to_numpy(...)` turns a PyTorch state dict into NumPy arrays by duck typing, so this package never
  imports torch; the way back, `unetlab.twin.to_torch`, lives outside it.
"""

import numpy as np

from unetlab.errors import UnetlabError

BUFFERS = ("running_mean", "running_var", "num_batches_tracked")  # batch-norm state that is not trained


def state_shapes(in_channels, num_classes, base_channels, depth, norm) -> dict[str, tuple[int, ...]]:
    """Every tensor of the PyTorch `UNet` with these options: {state_dict key: shape}, in state_dict order."""
    channels = [base_channels * 2**i for i in range(depth + 1)]  # e.g. 64, 128, 256, 512, 1024
    shapes = {}

    def double_conv(prefix, cin, cout):  # blocks.DoubleConv: conv1, norm1, conv2, norm2
        for i, c in ((1, cin), (2, cout)):
            shapes[f"{prefix}conv{i}.weight"] = (cout, c, 3, 3)
            if norm is None:
                shapes[f"{prefix}conv{i}.bias"] = (cout,)  # convs carry a bias only without normalisation
                continue
            for name in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"{prefix}norm{i}.{name}"] = (cout,)
            shapes[f"{prefix}norm{i}.num_batches_tracked"] = ()

    double_conv("encoders.0.", in_channels, channels[0])
    for i in range(1, depth):
        double_conv(f"encoders.{i}.conv.", channels[i - 1], channels[i])  # Down: pool (no state), conv
    double_conv("bottleneck.conv.", channels[depth - 1], channels[depth])
    for i in range(depth):
        shapes[f"decoders.{i}.up.weight"] = (channels[i + 1], channels[i], 2, 2)  # ConvTranspose2d: (in, out, ..)
        shapes[f"decoders.{i}.up.bias"] = (channels[i],)
        double_conv(f"decoders.{i}.conv.", 2 * channels[i], channels[i])  # input: [skip, x]
    shapes["head.weight"] = (num_classes, channels[0], 1, 1)
    shapes["head.bias"] = (num_classes,)
    return shapes


def is_buffer(key: str) -> bool:
    """True for batch-norm running statistics, which are state but not trained parameters."""
    return key.rsplit(".", 1)[-1] in BUFFERS


def init_state(shapes: dict, rng: np.random.Generator, dtype) -> dict[str, np.ndarray]:
    """Fresh weights for `shapes`: He-normal convolutions, zero biases, batch norm at identity.

    A convolution's unit sees C_in k k inputs; a 2x2 stride-2 transposed convolution's output pixel sees C_in
    (one tap of each input channel), hence the different fan-in.
    """
    state = {}
    for key, shape in shapes.items():
        name = key.rsplit(".", 1)[-1]
        if name == "weight" and len(shape) == 4:
            fan_in = shape[0] if ".up." in key else int(np.prod(shape[1:]))
            state[key] = (rng.standard_normal(shape) * np.sqrt(2 / fan_in)).astype(dtype)
        elif name == "num_batches_tracked":
            state[key] = np.zeros(shape, dtype=np.int64)
        elif name in ("weight", "running_var"):  # batch-norm scale and variance
            state[key] = np.ones(shape, dtype=dtype)
        else:  # biases, batch-norm shift and mean
            state[key] = np.zeros(shape, dtype=dtype)
    return state


def check_state(expected: dict, state: dict) -> None:
    """Raise a `UnetlabError` unless `state` has exactly the keys of `expected` with the same shapes.

    Args:
        expected: {key: shape}, from `state_shapes`.
        state: {key: array}, e.g. from `state_dict_to_numpy`.
    """
    problems = {
        "missing": [k for k in expected if k not in state],
        "unexpected": [k for k in state if k not in expected],
        "wrong shape": [
            f"{k} {tuple(state[k].shape)} instead of {shape}"
            for k, shape in expected.items()
            if k in state and tuple(state[k].shape) != tuple(shape)
        ],
    }
    if any(problems.values()):
        found = "; ".join(
            f"{label}: {', '.join(keys[:4])}{' ...' * (len(keys) > 4)}" for label, keys in problems.items() if keys
        )
        raise UnetlabError(
            f"the state dict does not fit this NumpyUNet ({found}); "
            "build the twin with the options of the model the weights come from"
        )


def state_dict_to_numpy(state_dict) -> dict[str, np.ndarray]:
    """{key: array} from a PyTorch state dict (tensors are detached and moved to the CPU) or a dict of arrays."""
    return {k: v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v) for k, v in state_dict.items()}
