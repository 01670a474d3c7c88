"""The bridge between the NumPy twin and PyTorch: the way back to a torch model, and the side-by-side check.

The rest of `unetlab.twin` never imports torch; what needs torch lives here.

- `to_torch(twin)`: a PyTorch `UNet` with the twin's options, weights, buffers and train/eval mode.
- `check_twin(model, image, mask)`: one training (or evaluation) step of a PyTorch `UNet` and of its twin on the
  same batch, compared stage by stage (outputs and their gradients) and parameter by parameter; what
  `unetlab twin check` prints (`format_check`). Errors are `max_errors`: the largest absolute difference, and that
  divided by the largest magnitude of the PyTorch tensor (the error relative to the tensor's scale).
- Dropout is compared with the mask shared: `torch_forward` recovers the mask PyTorch drew, and the twin uses it.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from unetlab.device import available_memory
from unetlab.errors import UnetlabError
from unetlab.logits import is_binary
from unetlab.models import create_model
from unetlab.models.summary import training_step_bytes
from unetlab.twin import NumpyUNet
from unetlab.twin.losses import loss_and_grad


def to_torch(twin: NumpyUNet) -> torch.nn.Module:
    """A PyTorch `UNet` equal to the twin: same options, a copy of its state (in its dtype), and its module state
    (modes, batch-norm momentum and eps)."""
    model = create_model("unet-classic" if twin.padding == "valid" else "unet", **twin.config)
    model.to(torch.from_numpy(twin.params["head.weight"]).dtype)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in twin.state_dict().items()})
    model.train(twin.training)
    model.dropout.train(twin.dropout_training)
    for name, state in twin.norms.items():
        module = model.get_submodule(name)
        module.train(state["training"])
        module.momentum, module.eps = state["momentum"], state["eps"]
    return model


ROUNDING_ZERO = 1e-15  # float64: a reference tensor with every |entry| <= this is zero up to rounding


def max_errors(actual, expected) -> tuple[float, float]:
    """(max |actual - expected|, that / max |expected|), the error relative to the reference tensor's scale.

    The relative error is NaN when `expected` is zero up to rounding (every entry within `ROUNDING_ZERO`, e.g. a
    gradient that vanishes analytically, such as a bias followed by batch norm after a valid convolution): both
    sides are then rounding noise and only the absolute error means something (see `within_tolerance`).
    """
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"shapes differ: {actual.shape} vs {expected.shape}"
    err = float(np.abs(actual - expected).max(initial=0.0))
    scale = float(np.abs(expected).max(initial=0.0))
    return err, err / scale if scale > ROUNDING_ZERO else float("nan")


def within_tolerance(max_abs: float, max_rel: float, tol: float) -> bool:
    """max_rel <= tol, or, for a reference that is zero up to rounding, max_abs <= ROUNDING_ZERO."""
    return max_abs <= ROUNDING_ZERO if np.isnan(max_rel) else max_rel <= tol


def torch_forward(model: torch.nn.Module, image: torch.Tensor, seed: int) -> tuple[torch.Tensor, np.ndarray | None]:
    """`model(image)` with torch's generator seeded, and the dropout keep-mask it drew (None when no dropout ran).

    The U-Net draws random numbers only in its dropout, so reseeding and dropping out a tensor of ones like the
    dropout's input draws the same mask again (`torch.ones_like` keeps the memory format, hence the order of the
    draws). Reseeds torch's global generator.
    """
    captured = {}
    handle = model.dropout.register_forward_hook(lambda module, inputs, output: captured.update(x=inputs[0]))
    torch.manual_seed(seed)
    try:
        logits = model(image)
    finally:
        handle.remove()
    if not (model.dropout.training and model.dropout.p > 0):
        return logits, None
    torch.manual_seed(seed)
    noise = F.dropout(torch.ones_like(captured["x"]), model.dropout.p, training=True)
    return logits, (noise != 0).cpu().numpy()


@dataclass
class ErrorRow:
    section: str  # "forward", "backward", "gradient" or "buffer"
    name: str  # a stage name or a state_dict key
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float


def check_twin(model: torch.nn.Module, image: np.ndarray, mask: np.ndarray, seed: int = 0) -> dict:
    """Run `model` and its twin on one batch and compare everything, stage by stage and key by key.

    The loss is binary cross-entropy for one output channel and cross-entropy otherwise. The model is used in its
    own dtype and mode (train mode updates its batch-norm running estimates, and the twin's).

    Args:
        model: a PyTorch `UNet` (the twin's configurations: transposed upsampling, batch norm or none).
        image: (N, C, H, W) in the model's dtype.
        mask: (N, H', W') int64 class indices (0/1 for one output channel), H' the output size.
        seed: seeds the dropout mask.

    Returns:
        {"loss": (torch, twin), "rows": [ErrorRow, ...]}.
    """
    needed = 2 * training_step_bytes(model, image.shape[1:], image.shape[0])  # in the model's dtype: torch, twin
    available = available_memory(torch.device("cpu"))
    if available is not None and needed > available:
        raise UnetlabError(
            f"checking a batch of {'x'.join(map(str, image.shape))} needs about {needed / 2**30:,.1f} GiB (PyTorch and "
            f"the twin in float64), and this machine has {available / 2**30:,.1f} GiB free; use a smaller input or "
            "batch"
        )
    twin = NumpyUNet.from_torch(model)  # before the forward: batch norm will update both copies of the buffers
    outputs, grads = {}, {}

    def keep(name):
        def hook(module, inputs, output):
            outputs[name] = output.detach().cpu().numpy()
            output.register_hook(lambda g: grads.update({name: g.detach().cpu().numpy()}))

        return hook

    stages = [f"encoders.{i}" for i in range(model.depth)] + ["bottleneck", "dropout"]
    stages += [f"decoders.{i}" for i in reversed(range(model.depth))] + ["head"]
    hooks = [model.get_submodule(name).register_forward_hook(keep(name)) for name in stages]
    x = torch.from_numpy(image).requires_grad_(True)
    try:
        logits, dropout_mask = torch_forward(model, x, seed)
    finally:
        for h in hooks:
            h.remove()
    target = torch.from_numpy(mask)
    if is_binary(model.num_classes):
        loss = F.binary_cross_entropy_with_logits(logits[:, 0], target.to(logits.dtype))
    else:
        loss = F.cross_entropy(logits, target)
    model.zero_grad(set_to_none=True)
    loss.backward()
    grads["input"] = x.grad.numpy()

    twin_logits = twin.forward(image, dropout_mask)
    twin_loss, dlogits = loss_and_grad(twin_logits, mask, dice_weight=0.0)  # the same BCE or CE
    twin_grads = twin.backward(dlogits, input_grad=True)

    rows = [ErrorRow("forward", n, outputs[n].shape, *max_errors(twin.stage_outputs[n], outputs[n])) for n in stages]
    rows += [
        ErrorRow("backward", n, grads[n].shape, *max_errors(twin.stage_grads[n], grads[n])) for n in ["input", *stages]
    ]
    rows += [
        ErrorRow("gradient", k, tuple(p.shape), *max_errors(twin_grads[k], p.grad.cpu().numpy()))
        for k, p in model.named_parameters()
    ]
    rows += [
        ErrorRow("buffer", k, tuple(b.shape), *max_errors(twin.buffers[k], b.cpu().numpy()))
        for k, b in model.named_buffers()
    ]
    return {"loss": (loss.item(), twin_loss), "rows": rows}


SECTION_TITLES = {
    "forward": "forward: stage outputs",
    "backward": "backward: gradient of the loss at each stage's output (and at the input)",
    "gradient": "parameters: gradient of the loss",
    "buffer": "buffers: batch-norm running estimates after the step",
}


def format_check(report: dict) -> str:
    """The check as text: the loss, then one table per section with max abs and max rel errors."""
    torch_loss, twin_loss = report["loss"]
    abs_err, rel_err = max_errors(twin_loss, torch_loss)
    lines = [f"loss: torch {torch_loss:.12g}, twin {twin_loss:.12g}, abs err {abs_err:.1e}, rel err {rel_err:.1e}"]
    width = max(len(r.name) for r in report["rows"])
    for section, title in SECTION_TITLES.items():
        rows = [r for r in report["rows"] if r.section == section]
        if not rows:
            continue
        lines += ["", title, f"{'name':<{width}}  {'shape':<18}  {'max abs err':>11}  {'max rel err':>11}"]
        for r in rows:
            shape = "x".join(map(str, r.shape)) or "scalar"
            rel = "(zero)" if np.isnan(r.max_rel) else f"{r.max_rel:.1e}"
            lines.append(f"{r.name:<{width}}  {shape:<18}  {r.max_abs:>11.1e}  {rel:>11}")
    if any(np.isnan(r.max_rel) for r in report["rows"]):
        lines += [
            "",
            f"(zero): the PyTorch tensor is zero up to rounding (every |entry| <= {ROUNDING_ZERO:g}); the "
            f"absolute error is what counts there",
        ]
    return "\n".join(lines)
