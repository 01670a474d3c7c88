"""Every layer and loss of the NumPy twin against PyTorch autograd, in float64, with a random upstream gradient.

For a layer f, autograd differentiates (f(x) * dout).sum(), whose gradient with respect to x is exactly the
vector-Jacobian product the twin's backward computes; outputs and every input gradient must agree.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from twin_helpers import assert_twin_close

from unetlab.models.blocks import AttentionGate
from unetlab.twin import layers as L
from unetlab.twin import losses
from unetlab.twin.attention import attention_gate_backward, attention_gate_forward

rng = np.random.default_rng(0)


def randn(*shape):
    return rng.standard_normal(shape)


def check_layer(forward, backward, torch_fn, *inputs):
    """Compare out = forward(*inputs) and backward(dout) with autograd of torch_fn on the same inputs."""
    tensors = [torch.from_numpy(a.copy()).requires_grad_(True) for a in inputs]
    expected = torch_fn(*tensors)
    dout = randn(*expected.shape)
    (expected * torch.from_numpy(dout)).sum().backward()
    out, cache = forward(*inputs)
    grads = backward(dout, cache)
    grads = list(grads) if isinstance(grads, (tuple, list)) else [grads]
    assert_twin_close(out, expected.detach().numpy(), "out")
    for i, t in enumerate(tensors):
        assert_twin_close(grads[i], t.grad.numpy(), f"gradient of input {i}")
    assert all(g is None for g in grads[len(tensors) :]), "a gradient for an absent parameter must be None"


@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_matches_autograd(padding, bias):
    x, w, b = randn(2, 3, 7, 6), randn(4, 3, 3, 3), randn(4)
    inputs = (x, w, b) if bias else (x, w)
    check_layer(
        lambda x, w, b=None: L.conv2d_forward(x, w, b, padding),
        L.conv2d_backward,
        lambda x, w, b=None: F.conv2d(x, w, b, padding=padding),
        *inputs,
    )


def test_conv2d_same_padding_keeps_the_size():
    out, _ = L.conv2d_forward(randn(1, 2, 5, 9), randn(3, 2, 3, 3), None, 1)
    assert out.shape == (1, 3, 5, 9)


@pytest.mark.parametrize("bias", [True, False])
def test_conv1x1_matches_autograd(bias):
    x, w, b = randn(2, 5, 4, 3), randn(3, 5, 1, 1), randn(3)
    inputs = (x, w, b) if bias else (x, w)
    check_layer(L.conv1x1_forward, L.conv1x1_backward, lambda x, w, b=None: F.conv2d(x, w, b), *inputs)


def test_upconv2x2_matches_autograd():
    x, w, b = randn(2, 4, 3, 5), randn(4, 3, 2, 2), randn(3)
    check_layer(
        L.upconv2x2_forward, L.upconv2x2_backward, lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2), x, w, b
    )


def test_relu_matches_autograd_including_exact_zeros():
    x = randn(2, 3, 4, 4)
    x[0, 0, 0, :2] = 0.0  # PyTorch's gradient at 0 is 0
    check_layer(L.relu_forward, L.relu_backward, F.relu, x)


def test_sigmoid_matches_autograd_and_saturates_without_overflow():
    check_layer(L.sigmoid_forward, L.sigmoid_backward, torch.sigmoid, randn(2, 1, 4, 5) * 5)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is the right answer
        assert L.sigmoid(np.array([-1000.0, 0.0, 1000.0])).tolist() == [0.0, 0.5, 1.0]


@pytest.mark.parametrize(
    ("ceil_mode", "shape"),
    [(False, (2, 3, 8, 6)), (False, (2, 3, 7, 5)), (True, (2, 3, 8, 6)), (True, (2, 3, 7, 5)), (True, (1, 2, 1, 3))],
)
def test_maxpool2x2_matches_autograd(ceil_mode, shape):
    check_layer(
        lambda x: L.maxpool2x2_forward(x, ceil_mode),
        L.maxpool2x2_backward,
        lambda x: F.max_pool2d(x, 2, ceil_mode=ceil_mode),
        randn(*shape),
    )


def test_maxpool2x2_routes_ties_like_pytorch():
    x = rng.integers(0, 2, (2, 3, 7, 7)).astype(np.float64)  # many windows hold equal maxima, as after a ReLU
    check_layer(
        lambda x: L.maxpool2x2_forward(x, True), L.maxpool2x2_backward, lambda x: F.max_pool2d(x, 2, ceil_mode=True), x
    )


@pytest.mark.parametrize(("top", "left", "size"), [(2, 1, (3, 4)), (0, 0, (5, 6))])
def test_crop_matches_autograd(top, left, size):
    check_layer(
        lambda x: L.crop_forward(x, top, left, size),
        L.crop_backward,
        lambda x: x[:, :, top : top + size[0], left : left + size[1]],
        randn(2, 3, 7, 7),
    )


def test_concat_matches_autograd():
    check_layer(
        lambda a, b: L.concat_forward([a, b]),
        L.concat_backward,
        lambda a, b: torch.cat([a, b], dim=1),
        randn(2, 3, 4, 5),
        randn(2, 2, 4, 5),
    )


def test_dropout_with_pytorchs_mask_matches_autograd():
    """The mask is PyTorch's own, recovered by reseeding and dropping out ones (as `unetlab.twin.bridge` does)."""
    x, p = randn(2, 4, 3, 3), 0.3
    torch.manual_seed(5)
    keep = (F.dropout(torch.ones(x.shape, dtype=torch.float64), p, training=True) != 0).numpy()
    assert 0 < keep.mean() < 1

    def torch_dropout(x):
        torch.manual_seed(5)
        return F.dropout(x, p, training=True)

    check_layer(lambda x: L.dropout_forward(x, p, keep), L.dropout_backward, torch_dropout, x)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_matches_autograd_and_updates_running_stats_like_pytorch(training):
    x, gamma, beta = randn(3, 4, 5, 2) * 2 + 1, randn(4), randn(4)
    running_mean, running_var = randn(4), rng.random(4) + 0.5
    rm_t, rv_t = torch.from_numpy(running_mean.copy()), torch.from_numpy(running_var.copy())
    check_layer(
        lambda x, g, b: L.batchnorm_forward(x, g, b, running_mean, running_var, training),
        L.batchnorm_backward,
        lambda x, g, b: F.batch_norm(x, rm_t, rv_t, g, b, training=training, momentum=0.1, eps=1e-5),
        x,
        gamma,
        beta,
    )
    # check_layer ran each forward once: the running estimates moved the same way (unbiased variance) or not at all.
    assert_twin_close(running_mean, rm_t.numpy(), "running_mean")
    assert_twin_close(running_var, rv_t.numpy(), "running_var")


def test_attention_gate_matches_the_pytorch_block():
    gate = AttentionGate(skip_channels=4, gate_channels=3, inter_channels=2).double()
    params = [gate.W_x.weight, gate.W_g.weight, gate.W_g.bias, gate.psi.weight, gate.psi.bias]
    arrays = [p.detach().numpy().copy() for p in params]
    x, g = randn(2, 4, 5, 3), randn(2, 3, 5, 3)

    def torch_gate(x, g, *weights):
        with torch.no_grad():
            for p, w in zip(params, weights):
                p.copy_(w)
        out, _ = gate(x, g)
        return out

    tensors = [torch.from_numpy(a.copy()).requires_grad_(True) for a in (x, g)]
    expected = torch_gate(*tensors, *[torch.from_numpy(a) for a in arrays])
    dout = randn(*expected.shape)
    (expected * torch.from_numpy(dout)).sum().backward()
    out, cache = attention_gate_forward(x, g, *arrays)
    dx, dg, *dparams = attention_gate_backward(dout, cache)
    assert_twin_close(out, expected.detach().numpy(), "out")
    assert_twin_close(dx, tensors[0].grad.numpy(), "dx")
    assert_twin_close(dg, tensors[1].grad.numpy(), "dg")
    for name, p, d in zip(["W_x", "W_g", "b_g", "psi", "b_psi"], params, dparams):
        assert_twin_close(d, p.grad.numpy(), name)
    assert_twin_close(cache["alpha"], gate(torch.from_numpy(x), torch.from_numpy(g))[1].detach().numpy(), "alpha")


# ---------------------------------------------------------------------------------------------------------------------
# Losses: the loss value and dlogits (dloss = a random scalar) against autograd


def torch_dice(z, mask, w, eps=1e-6):
    """The soft Dice loss written independently in torch: sigmoid/softmax, one-hot, sums over N, H, W."""
    if z.shape[1] == 1:
        p, t = torch.sigmoid(z), mask[:, None].to(z.dtype)
    else:
        p, t = torch.softmax(z, 1), F.one_hot(mask, z.shape[1]).permute(0, 3, 1, 2).to(z.dtype)
    w = w[:, None]
    dice = (2 * (w * p * t).sum((0, 2, 3)) + eps) / ((w * p).sum((0, 2, 3)) + (w * t).sum((0, 2, 3)) + eps)
    return 1 - dice.mean()


TORCH_LOSSES = {
    "bce": lambda z, m, w: (F.binary_cross_entropy_with_logits(z[:, 0], m.to(z.dtype), reduction="none") * w).mean(),
    "ce": lambda z, m, w: (F.cross_entropy(z, m, reduction="none") * w).mean(),
    "dice": torch_dice,
}
TWIN_LOSSES = {
    "bce": (losses.sigmoid_bce_forward, losses.sigmoid_bce_backward),
    "ce": (losses.softmax_ce_forward, losses.softmax_ce_backward),
    "dice": (losses.soft_dice_forward, losses.soft_dice_backward),
}


@pytest.mark.parametrize(("loss", "classes"), [("bce", 1), ("ce", 2), ("ce", 4), ("dice", 1), ("dice", 2), ("dice", 3)])
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_matches_autograd(loss, classes, weighted):
    logits = randn(2, classes, 5, 4) * 3
    mask = rng.integers(0, max(classes, 2), (2, 5, 4))
    weight = rng.random((2, 5, 4)) * 2 if weighted else None
    z = torch.from_numpy(logits.copy()).requires_grad_(True)
    w = torch.ones(mask.shape, dtype=torch.float64) if weight is None else torch.from_numpy(weight)
    expected = TORCH_LOSSES[loss](z, torch.from_numpy(mask), w)
    dloss = float(randn(1)[0])
    (expected * dloss).backward()
    forward, backward = TWIN_LOSSES[loss]
    value, cache = forward(logits, mask, weight)
    assert_twin_close(value, expected.item(), "loss")
    assert_twin_close(backward(dloss, cache), z.grad.numpy(), "dlogits")


@pytest.mark.parametrize("loss", ["bce", "ce", "dice"])
def test_loss_is_finite_for_huge_logits(loss):
    classes = 2 if loss == "ce" else 1
    logits = np.array([1e4, -1e4, 0.0, 7e2])[None, None, None].repeat(classes, axis=1)
    logits[:, -1] *= -1  # for CE the two classes disagree
    mask = np.array([[[1, 0, 1, 0]]])
    forward, backward = TWIN_LOSSES[loss]
    with np.errstate(over="raise", invalid="raise"):
        value, cache = forward(logits, mask)
        assert np.isfinite(value) and np.isfinite(backward(1.0, cache)).all()


def test_soft_dice_known_answers():
    mask = np.array([[[0, 1], [1, 0]]])
    perfect = np.where(mask == 1, 50.0, -50.0)[:, None]  # (1, 1, 2, 2): sigmoid is 0 or 1 to rounding
    assert losses.soft_dice_forward(perfect, mask)[0] == pytest.approx(0.0, abs=1e-9)
    assert losses.soft_dice_forward(-perfect, mask)[0] == pytest.approx(1.0, abs=1e-6)
    half = np.where(np.array([[[1, 1], [0, 0]]]) == 1, 50.0, -50.0)[:, None]  # one of two cells right: Dice 1/2
    assert losses.soft_dice_forward(half, mask)[0] == pytest.approx(0.5, abs=1e-6)
