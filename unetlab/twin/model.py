"""`NumpyUNet`: the U-Net of `unetlab.models.UNet` in NumPy, with a hand-written backward pass.

Ronneberger, Fischer & Brox (2015), "U-Net: Convolutional Networks for Biomedical Image Segmentation", Fig. 1.

- The same network as the PyTorch `UNet` with `upsample="transpose"` and `norm` None or "batch", i.e. the
  configurations of `unet-classic` (valid padding, no normalisation, dropout 0.5) and `unet` (same padding, batch
  norm), at any depth and width. Parameters and buffers are keyed and shaped exactly like its `state_dict()`.
- `forward` is written out stage by stage from the layer pairs of `layers.py` and keeps each layer's cache;
  `backward` runs the stages in reverse. An encoder output feeds both the next pool and a decoder's skip, so its
  gradient is the sum of both (the explicit `+=` in `backward`; docs/twin.md, "Fan-out").
- Stage names are the PyTorch module names (`encoders.0`, ..., `bottleneck`, `dropout`, `decoders.{depth - 1}`,
  ..., `decoders.0`, `head`); `stage_outputs` and `stage_grads` keep the last forward's outputs and backward's
  gradients per stage, for `unetlab twin check`.
"""

import numpy as np

from unetlab.errors import UnetlabError
from unetlab.options import TWIN_NORMS, TWIN_UPSAMPLINGS, check_model_options, refuse_option
from unetlab.twin.layers import (
    batchnorm_backward,
    batchnorm_forward,
    concat_backward,
    concat_forward,
    conv1x1_backward,
    conv1x1_forward,
    conv2d_backward,
    conv2d_forward,
    crop_backward,
    crop_forward,
    dropout_backward,
    dropout_forward,
    maxpool2x2_backward,
    maxpool2x2_forward,
    relu_backward,
    relu_forward,
    upconv2x2_backward,
    upconv2x2_forward,
)
from unetlab.twin.sizes import output_side
from unetlab.twin.weights import check_state, init_state, is_buffer, state_dict_to_numpy, state_shapes


class NumpyUNet:
    """The U-Net in NumPy: forward, hand-written backward, parameters keyed like the PyTorch `state_dict`.

    Args:
        in_channels: channels C of the input image (N, C, H, W).
        num_classes: output channels K (1 = a sigmoid logit, >= 2 = softmax logits).
        base_channels: channels of the first stage; stage i has `base_channels * 2**i`.
        depth: number of 2x2 poolings, 1 to `options.MAX_DEPTH` (8), as the PyTorch `UNet`.
        padding: "same" (output size = input size, any size; ceil-mode pooling) or "valid" (the paper).
        norm: None (convs with bias) or "batch" (batch norm after every 3x3 conv, convs without bias).
        upsample: "transpose" only (the paper's 2x2 up-convolution).
        dropout: dropout probability after the bottleneck (the paper: 0.5), in [0, 1).
        seed: seeds the initial weights and the dropout masks.
        dtype: floating dtype of the initial weights (the computation follows the dtype of the inputs).

    Raises:
        UnetlabError: for an invalid option, or one the twin does not implement (group or instance norm, bilinear
            upsampling), naming it.
    """

    # The options, named as the keyword arguments of `unetlab.models.UNet` (the twin keeps dropout in `dropout_p`).
    CONFIG = ("in_channels", "num_classes", "base_channels", "depth", "padding", "norm", "upsample", "dropout")

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        base_channels: int = 64,
        depth: int = 4,
        padding: str = "same",
        norm: str | None = "batch",
        upsample: str = "transpose",
        dropout: float = 0.0,
        seed: int = 0,
        dtype=np.float32,
    ):
        # The PyTorch UNet's rules (depth 1 to 8, ...), so that `unetlab.twin.bridge.to_torch` can build every twin.
        norm = check_model_options(
            in_channels=in_channels,
            num_classes=num_classes,
            base_channels=base_channels,
            depth=depth,
            padding=padding,
            norm=norm,
            upsample=upsample,
            dropout=dropout,
        )["norm"]
        for option, value, implemented in (("norm", norm, TWIN_NORMS), ("upsample", upsample, TWIN_UPSAMPLINGS)):
            if value not in implemented:
                names = " and ".join("none" if c is None else repr(c) for c in implemented)
                raise refuse_option(option, value, f"by the NumPy twin; it implements {names} (unet-classic and unet)")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.base_channels, self.depth = base_channels, depth
        self.padding, self.norm, self.upsample, self.dropout_p = padding, norm, upsample, dropout
        self.rng = np.random.default_rng(seed)
        self.shapes = state_shapes(in_channels, num_classes, base_channels, depth, norm)
        state = init_state(self.shapes, self.rng, dtype)
        self.params = {k: v for k, v in state.items() if not is_buffer(k)}  # trained: what `backward` returns
        self.buffers = {k: v for k, v in state.items() if is_buffer(k)}  # batch-norm running statistics
        # Module state, by the PyTorch module's name: each batch norm's train/eval mode, momentum (None: a cumulative
        # average, as torch) and eps, and the dropout's mode; `from_torch` reads them from the modules themselves.
        norms = [k.removesuffix(".running_mean") for k in self.buffers if k.endswith(".running_mean")]
        self.norms = {name: {"training": True, "momentum": 0.1, "eps": 1e-5} for name in norms}
        self.dropout_training = self.training = True
        self.stage_outputs, self.stage_grads = {}, {}
        self._tape = None  # the layer caches of the last forward, freed by backward

    @classmethod
    def from_torch(cls, model) -> "NumpyUNet":
        """A twin of a PyTorch `unetlab.models.UNet`: its options, a copy of its weights, and the state of its
        modules as they are now (the dropout's p and mode; each batch norm's mode, momentum and eps).

        torch is not imported: the model's attributes are read, and its state dict converted with `.numpy()`.

        Raises:
            UnetlabError: if the model is not a plain U-Net (`architecture == "unet"`: no attention gates, no deep
                supervision) or uses options the twin does not implement.
        """
        if getattr(model, "architecture", None) != "unet" or getattr(model, "deep_supervision", False):
            raise UnetlabError(
                f"the NumPy twin mirrors plain U-Nets (unet-classic, unet), not {type(model).__name__}"
                f"{' with deep supervision' if getattr(model, 'deep_supervision', False) else ''}; build the model "
                "with create_model('unet-classic', ...) or create_model('unet', ...)"
            )
        options = {k: getattr(model, k) for k in cls.CONFIG if k != "dropout"}
        twin = cls(**options, dropout=model.dropout.p)
        twin.load_state_dict(state_dict_to_numpy(model.state_dict()))
        twin.training, twin.dropout_training = model.training, model.dropout.training
        for name, state in twin.norms.items():
            module = model.get_submodule(name)
            if not (module.affine and module.track_running_stats):
                raise UnetlabError(f"{name}: the twin mirrors batch norms with affine parameters and running estimates")
            state.update(training=module.training, momentum=module.momentum, eps=module.eps)
        return twin

    @property
    def config(self) -> dict:
        """The options as keyword arguments of `unetlab.models.UNet` (see `unetlab.twin.to_torch`)."""
        return {k: getattr(self, "dropout_p" if k == "dropout" else k) for k in self.CONFIG}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers, keyed and ordered like PyTorch's `UNet.state_dict()` (arrays, not copies)."""
        return {k: self.params[k] if k in self.params else self.buffers[k] for k in self.shapes}

    def load_state_dict(self, state: dict) -> None:
        """Copy `state` ({key: array}) in after checking that its keys and shapes are exactly the twin's."""
        check_state(self.shapes, state)
        for k in self.shapes:
            (self.buffers if is_buffer(k) else self.params)[k] = np.array(state[k], copy=True)

    def train(self, mode: bool = True) -> "NumpyUNet":
        """Training mode for every layer: batch statistics in batch norm (running estimates updated), dropout on."""
        self.training = self.dropout_training = mode
        for state in self.norms.values():
            state["training"] = mode
        return self

    def eval(self) -> "NumpyUNet":
        """Evaluation mode: running estimates in batch norm, dropout off."""
        return self.train(False)

    def output_size(self, side: int) -> int:
        """Output side for an input side; raises `UnetlabError` for a side a valid-padding twin cannot take."""
        return output_side(side, self.depth, self.padding)

    # -----------------------------------------------------------------------------------------------------------------
    # Forward

    def forward(self, image: np.ndarray, dropout_mask: np.ndarray | None = None) -> np.ndarray:
        """Logits for a batch of images, keeping what `backward` needs.

        Args:
            image: (N, in_channels, H, W), float.
            dropout_mask: optional boolean keep-mask for the dropout after the bottleneck (training mode, dropout
                > 0), shaped like the bottleneck's output; by default it is drawn from `self.rng`. The tests and
                `unetlab twin check` pass PyTorch's mask here.

        Returns:
            logits (N, num_classes, H', W'), H' = H for "same" padding and `output_size(H)` for "valid".
        """
        if image.ndim != 4 or image.shape[1] != self.in_channels:
            raise UnetlabError(f"the twin takes images (N, {self.in_channels}, H, W); got shape {image.shape}")
        for side in image.shape[2:]:
            self.output_size(side)
        tape, skips, out = {}, [], self.stage_outputs
        x = image
        for i in range(self.depth):
            name = f"encoders.{i}"
            x, tape[name] = self._double_conv_forward(f"{name}.", x) if i == 0 else self._down_forward(f"{name}.", x)
            skips.append(x)  # (N, C_i, H_i, W_i), used again by decoders[i]
            out[name] = x
        x, tape["bottleneck"] = self._down_forward("bottleneck.", x)  # (N, C_depth, h, w)
        out["bottleneck"] = x
        x, tape["dropout"] = self._dropout_forward(x, dropout_mask)
        out["dropout"] = x
        for i in reversed(range(self.depth)):  # the deepest decoder first
            name = f"decoders.{i}"
            x, tape[name] = self._up_forward(f"{name}.", x, skips[i])  # (N, C_i, ...)
            out[name] = x
        logits, tape["head"] = conv1x1_forward(x, self.params["head.weight"], self.params["head.bias"])
        out["head"] = logits
        self._tape = tape
        return logits  # (N, num_classes, H', W')

    def _conv_norm_relu_forward(self, key, x, i):
        """conv{i} -> norm{i} -> ReLU of the DoubleConv at `key`; batch norm updates its running estimates."""
        p, pad = self.params, 1 if self.padding == "same" else 0
        x, conv_cache = conv2d_forward(x, p[f"{key}conv{i}.weight"], p.get(f"{key}conv{i}.bias"), pad)
        norm_cache = None
        if self.norm == "batch":
            n, b = f"{key}norm{i}.", self.buffers
            state = self.norms[f"{key}norm{i}"]
            momentum = state["momentum"]
            if state["training"]:
                b[n + "num_batches_tracked"] += 1  # PyTorch counts batches too; a cumulative average uses the count
                momentum = 1 / float(b[n + "num_batches_tracked"]) if momentum is None else momentum
            x, norm_cache = batchnorm_forward(
                x,
                p[n + "weight"],
                p[n + "bias"],
                b[n + "running_mean"],
                b[n + "running_var"],
                state["training"],
                momentum,
                state["eps"],
            )
        x, relu_cache = relu_forward(x)  # (N, C_out, H', W'), H' = H - 2 for valid padding
        return x, (conv_cache, norm_cache, relu_cache)

    def _double_conv_forward(self, key, x):
        x, cache1 = self._conv_norm_relu_forward(key, x, 1)
        x, cache2 = self._conv_norm_relu_forward(key, x, 2)
        return x, (cache1, cache2)

    def _down_forward(self, key, x):
        x, pool_cache = maxpool2x2_forward(x, ceil_mode=self.padding == "same")  # (N, C, ceil or floor H/2, ..)
        x, conv_cache = self._double_conv_forward(f"{key}conv.", x)  # (N, 2C, ...)
        return x, (pool_cache, conv_cache)

    def _dropout_forward(self, x, keep):
        if not self.dropout_training or self.dropout_p == 0:
            return x, None
        if keep is None:
            keep = self.rng.random(x.shape) >= self.dropout_p  # kept with probability 1 - p
        if keep.shape != x.shape:
            raise UnetlabError(f"dropout_mask has shape {keep.shape}; the bottleneck output has {x.shape}")
        return dropout_forward(x, self.dropout_p, keep)

    def _up_forward(self, key, x, skip):
        x, up_cache = upconv2x2_forward(x, self.params[f"{key}up.weight"], self.params[f"{key}up.bias"])  # 2h, 2w
        if self.padding == "valid":
            h, w = x.shape[2:]
            top, left = (skip.shape[2] - h) // 2, (skip.shape[3] - w) // 2
            skip, crop_cache = crop_forward(skip, top, left, (h, w))  # (N, C, 2h, 2w): the paper's centre crop
        else:
            x, crop_cache = crop_forward(x, 0, 0, skip.shape[2:])  # (N, C, H, W): drop the ceil-mode overhang
        x, concat_cache = concat_forward([skip, x])  # (N, 2C, H, W): [skip, x], as the PyTorch Up
        x, conv_cache = self._double_conv_forward(f"{key}conv.", x)  # (N, C, H', W')
        return x, (up_cache, crop_cache, concat_cache, conv_cache)

    # -----------------------------------------------------------------------------------------------------------------
    # Backward

    def backward(self, dlogits: np.ndarray, input_grad: bool = False) -> dict[str, np.ndarray]:
        """Gradients of a loss with respect to every parameter, given its gradient with respect to the logits.

        Args:
            dlogits: (N, num_classes, H', W'), the gradient of the loss with respect to `forward`'s output.
            input_grad: also compute the gradient at the input image (`stage_grads["input"]`), one more full-size
                transposed convolution; like an image tensor without `requires_grad`, it is skipped by default.

        Returns:
            {state_dict key: gradient} for every trained parameter (not the batch-norm buffers), in state_dict
            order, shaped like the parameter. `stage_grads` also gets the gradient at each stage's output.
        """
        if self._tape is None:
            raise RuntimeError("NumpyUNet.backward needs a forward first, and runs once per forward")
        tape, grads, dout = self._tape, {}, self.stage_grads
        dout["head"] = dlogits
        dx, grads["head.weight"], grads["head.bias"] = conv1x1_backward(dlogits, tape["head"])  # (N, C_0, H, W)
        dskips = [None] * self.depth
        for i in range(self.depth):  # decoders[0] ran last, so its backward runs first
            dout[f"decoders.{i}"] = dx
            dx, dskips[i] = self._up_backward(f"decoders.{i}.", dx, tape[f"decoders.{i}"], grads)
        dout["dropout"] = dx  # (N, C_depth, h, w)
        if tape["dropout"] is not None:
            dx = dropout_backward(dx, tape["dropout"])
        dout["bottleneck"] = dx
        dx = self._down_backward("bottleneck.", dx, tape["bottleneck"], grads)  # (N, C_{depth-1}, H, W)
        for i in reversed(range(self.depth)):
            # Fan-out: encoder i's output fed both the next pool (dx) and the skip of decoders[i] (dskips[i]).
            dx += dskips[i]  # (N, C_i, H_i, W_i)
            dout[f"encoders.{i}"] = dx
            if i == 0:
                dx = self._double_conv_backward("encoders.0.", dx, tape["encoders.0"], grads, input_grad)  # image
            else:
                dx = self._down_backward(f"encoders.{i}.", dx, tape[f"encoders.{i}"], grads)  # (N, C_{i-1}, ..)
        dout["input"] = dx  # (N, C_in, H, W), or None without input_grad
        self._tape = None
        return {k: grads[k] for k in self.params}

    def _double_conv_backward(self, key, dx, cache, grads, input_grad=True):
        for i in (2, 1):
            conv_cache, norm_cache, relu_cache = cache[i - 1]
            dx = relu_backward(dx, relu_cache)  # (N, C_out, H', W')
            if norm_cache is not None:
                dx, grads[f"{key}norm{i}.weight"], grads[f"{key}norm{i}.bias"] = batchnorm_backward(dx, norm_cache)
            need_dx = input_grad or i == 2
            dx, grads[f"{key}conv{i}.weight"], db = conv2d_backward(dx, conv_cache, need_dx)  # (N, C_in, H, W)
            if db is not None:
                grads[f"{key}conv{i}.bias"] = db  # (C_out,)
        return dx

    def _down_backward(self, key, dx, cache, grads):
        pool_cache, conv_cache = cache
        dx = self._double_conv_backward(f"{key}conv.", dx, conv_cache, grads)  # (N, C, H/2, W/2)
        return maxpool2x2_backward(dx, pool_cache)  # (N, C, H, W)

    def _up_backward(self, key, dx, cache, grads):
        """Returns the gradients at the block's two inputs: the map from below (N, 2C, h, w) and the skip."""
        up_cache, crop_cache, concat_cache, conv_cache = cache
        dx = self._double_conv_backward(f"{key}conv.", dx, conv_cache, grads)  # (N, 2C, H, W)
        dskip, dx = concat_backward(dx, concat_cache)  # (N, C, H, W) each
        if self.padding == "valid":
            dskip = crop_backward(dskip, crop_cache)  # (N, C, H_skip, W_skip): zero outside the crop
        else:
            dx = crop_backward(dx, crop_cache)  # (N, C, 2h, 2w): zero on the overhang
        dx, grads[f"{key}up.weight"], grads[f"{key}up.bias"] = upconv2x2_backward(dx, up_cache)  # (N, 2C, h, w)
        return dx, dskip
