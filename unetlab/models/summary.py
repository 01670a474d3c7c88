"""`summarize(model, input_shape)`: what each stage of a model outputs, holds and costs, per image.

For each stage (enc1 ... bottleneck ... dec1, head; or stem, layer1 ... for ResNet encoders):
- output shape;
- parameters;
- FLOPs of its convolutions and linear layers, 2 per multiply-add, from the textbook formulas below (the tests
  check them against `torch.utils.flop_counter`); normalisation, activations and pooling are not counted;
- activation memory: the bytes of the tensors autograd keeps for backward while training, each storage counted
  once, which is the memory that batch size multiplies and gradient checkpointing saves (batch norm's per-batch
  mean and inverse std, 2 x C floats per layer whatever the image size, are left out).

The model is never run on real data: a copy on PyTorch's meta device (tensors with shapes but no memory) takes a
batch of two images in training mode, and FLOPs and activation bytes are halved to per-image figures. Two, because
batch norm in training needs more than one value per channel, which one image cannot give on 1 x 1 maps; the meta
device, so that any input size, 100,000 px a side included, costs no memory. The model itself (weights, batch-norm
statistics, mode) is left as it was.
"""

import copy
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef

BATCH = 2  # images in the dry run; the figures reported are per image


@dataclass
class Stage:
    name: str
    output_shape: tuple[int, ...] = ()
    params: int = 0
    flops: int = 0
    activation_bytes: int = 0


@dataclass
class Summary:
    model_name: str
    input_shape: tuple[int, ...]  # (C, H, W)
    output_shape: tuple[int, ...]  # (K, H', W')
    stages: list[Stage]
    params: int  # all parameters of the model
    notes: list[str] = field(default_factory=list)

    @property
    def flops(self) -> int:
        return sum(s.flops for s in self.stages)

    @property
    def activation_bytes(self) -> int:
        return sum(s.activation_bytes for s in self.stages)


def layer_flops(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    """FLOPs of one conv, transposed conv or linear layer (2 per multiply-add; bias adds not counted)."""
    if isinstance(module, nn.Conv2d):
        # every output element is a dot product over C_in / groups x kh x kw inputs
        kh, kw = module.kernel_size
        return 2 * output.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.ConvTranspose2d):
        # every input element is scattered onto C_out / groups x kh x kw outputs
        kh, kw = module.kernel_size
        return 2 * inputs[0].numel() * (module.out_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return 2 * output.numel() * module.in_features
    return 0


def summarize(model: nn.Module, input_shape: tuple[int, int, int], name: str | None = None) -> Summary:
    """Account for every stage of `model` on one image of `input_shape = (C, H, W)` in training mode.

    A meta-device copy of the model runs a batch of `BATCH` images (see the module docstring); `model` is untouched.
    """
    meta = copy.deepcopy(model).to("meta").train()
    stages = [
        Stage(stage_name, params=sum(p.numel() for p in module.parameters()))
        for stage_name, module in meta.named_stages()
    ]
    current = [stages[0]]
    # Storages are told apart by identity (meta tensors have no data pointer); parameters are not activations.
    seen: set[StorageWeakRef] = {StorageWeakRef(p.untyped_storage()) for p in meta.parameters()}
    for stage, (_, module) in zip(stages, meta.named_stages()):
        module.register_forward_pre_hook(lambda _m, _i, stage=stage: current.__setitem__(0, stage))
        module.register_forward_hook(lambda _m, _i, out, stage=stage: setattr(stage, "output_shape", out.shape[1:]))
    for module in meta.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            module.register_forward_hook(
                lambda m, i, out: setattr(current[0], "flops", current[0].flops + layer_flops(m, i, out))
            )

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if StorageWeakRef(storage) not in seen:
            seen.add(StorageWeakRef(storage))
            current[0].activation_bytes += storage.nbytes()
        return tensor

    dtype = next((p.dtype for p in meta.parameters()), torch.float32)
    image = torch.empty(BATCH, *input_shape, device="meta", dtype=dtype)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        output = meta(image)
    for stage in stages:  # per image
        stage.output_shape = tuple(stage.output_shape)
        stage.flops //= BATCH
        stage.activation_bytes //= BATCH
    summary = Summary(
        name or type(model).__name__,
        tuple(input_shape),
        tuple(output.shape[1:]),
        stages,
        sum(p.numel() for p in model.parameters()),
    )
    if model.padding == "valid":
        step = model.reduction
        h = input_shape[1]
        near = model.valid_input_sizes(h - 2 * step, h + 2 * step)
        pairs = ", ".join(f"{s} -> {model.output_size(s)}" for s in near)
        summary.notes.append(f"valid input sides near {h} (input -> output): {pairs}")
    return summary


def training_step_bytes(model: nn.Module, input_shape: tuple[int, int, int], batch: int) -> int:
    """The memory one training step of `batch` images of `input_shape` takes, about: the activations autograd keeps
    (float32, as `summarize` counts them) and the weights with their gradients and two Adam moments."""
    params = sum(p.numel() for p in model.parameters())
    return batch * summarize(model, input_shape).activation_bytes + 16 * params


def format_summary(summary: Summary) -> str:
    """The summary as a plain-text table with totals and notes."""
    rows = [("stage", "output shape", "params", "GFLOPs", "activations MiB")]
    for s in summary.stages:
        shape = " x ".join(map(str, s.output_shape))
        rows.append((s.name, shape, f"{s.params:,}", f"{s.flops / 1e9:.3f}", f"{s.activation_bytes / 2**20:.1f}"))
    shape = " x ".join(map(str, summary.output_shape))
    rows.append(
        ("total", shape, f"{summary.params:,}", f"{summary.flops / 1e9:.3f}", f"{summary.activation_bytes / 2**20:.1f}")
    )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]

    def line(r):
        return "  ".join(
            [r[0].ljust(widths[0]), r[1].ljust(widths[1])] + [c.rjust(w) for c, w in zip(r[2:], widths[2:])]
        )

    rule = "-" * len(line(rows[0]))
    head = f"{summary.model_name}: input {' x '.join(map(str, summary.input_shape))} (C x H x W); figures per image"
    body = [head, rule, line(rows[0]), rule, *map(line, rows[1:-1]), rule, line(rows[-1])]
    body.append("GFLOPs: convolutions, 2 per multiply-add. Activations: float32 tensors kept for backward in training.")
    return "\n".join(body + summary.notes)
