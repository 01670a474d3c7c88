"""The additive attention gate of the Attention U-Net in NumPy, forward and backward.

Oktay et al. (2018), "Attention U-Net: Learning where to look for the pancreas", eq. 1 and Fig. 2:

    q = psi^T relu(W_x^T x + W_g^T g + b_g) + b_psi,    alpha = sigmoid(q),    out = alpha * x

with 1x1 convolutions for W_x, W_g and psi, as `unetlab.models.blocks.AttentionGate` (where g already has x's size).
The gate is composed from the layer pairs of `layers.py`; its backward runs them in reverse.
"""

from unetlab.twin.layers import (
    conv1x1_backward,
    conv1x1_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
)


def attention_gate_forward(x, g, w_x, w_g, b_g, w_psi, b_psi):
    """Gate the skip `x` with the signal `g`.

    Args:
        x: the encoder skip (N, C_x, H, W).
        g: the gating signal (N, C_g, H, W).
        w_x: W_x weights (C_int, C_x, 1, 1), no bias.
        w_g, b_g: W_g weights (C_int, C_g, 1, 1) and bias (C_int,).
        w_psi, b_psi: psi weights (1, C_int, 1, 1) and bias (1,).

    Returns:
        out = alpha * x (N, C_x, H, W) and the cache; `cache["alpha"]` holds the coefficients (N, 1, H, W).
    """
    a, cache_x = conv1x1_forward(x, w_x)  # (N, C_int, H, W)
    b, cache_g = conv1x1_forward(g, w_g, b_g)  # (N, C_int, H, W)
    r, cache_relu = relu_forward(a + b)  # (N, C_int, H, W)
    q, cache_psi = conv1x1_forward(r, w_psi, b_psi)  # (N, 1, H, W)
    alpha, cache_sigmoid = sigmoid_forward(q)  # (N, 1, H, W)
    cache = {"x": x, "alpha": alpha, "layers": (cache_x, cache_g, cache_relu, cache_psi, cache_sigmoid)}
    return x * alpha, cache  # (N, C_x, H, W): alpha broadcasts over channels


def attention_gate_backward(dout, cache):
    """Gradients of `attention_gate_forward`: returns dx, dg, dw_x, dw_g, db_g, dw_psi, db_psi."""
    x, alpha = cache["x"], cache["alpha"]
    cache_x, cache_g, cache_relu, cache_psi, cache_sigmoid = cache["layers"]
    dalpha = (dout * x).sum(axis=1, keepdims=True)  # (N, 1, H, W): alpha was broadcast over C_x
    dq = sigmoid_backward(dalpha, cache_sigmoid)  # (N, 1, H, W)
    dr, dw_psi, db_psi = conv1x1_backward(dq, cache_psi)  # (N, C_int, H, W), (1, C_int, 1, 1), (1,)
    ds = relu_backward(dr, cache_relu)  # (N, C_int, H, W); the sum a + b passes it to both terms
    dx, dw_x, _ = conv1x1_backward(ds, cache_x)  # (N, C_x, H, W), (C_int, C_x, 1, 1)
    dg, dw_g, db_g = conv1x1_backward(ds, cache_g)  # (N, C_g, H, W), (C_int, C_g, 1, 1), (C_int,)
    dx += dout * alpha  # fan-out: x is both gated (out = alpha x) and an input of W_x; (N, C_x, H, W)
    return dx, dg, dw_x, dw_g, db_g, dw_psi, db_psi
