"""The U-Net's layers in NumPy, each a pair `<op>_forward(x, ...) -> (out, cache)` / `<op>_backward(dout, cache)`.

Every function is pure (batch-norm's running statistics aside, see `batchnorm_forward`), works on NCHW arrays and
keeps their dtype. A backward takes the gradient of the loss with respect to the forward's output and returns the
gradients with respect to its inputs and parameters, in the order the forward took them. The derivations are in
`docs/twin.md`; the tests compare each pair with PyTorch autograd in float64.

- Convolution is im2col + one matrix product (Chellapilla et al. 2006, "High performance convolutional neural
  networks for document processing"); its input gradient is the transposed convolution, computed the same way
  with the flipped kernel (Dumoulin & Visin 2016, "A guide to convolution arithmetic for deep learning", Sec. 4).
- The 2x2 transposed convolution (the decoder's up-convolution) is the adjoint of a 2x2 stride-2 convolution:
  each input pixel paints one 2x2 output block, so it is one matrix product and a reshape (ibid., Sec. 4.5).
- Batch normalisation follows Ioffe & Szegedy (2015), with PyTorch's running-statistic convention.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from unetlab.errors import UnetlabError

# ---------------------------------------------------------------------------------------------------------------------
# Convolutions


def im2col_correlate(x, w, padding):
    """Cross-correlation of x (N, C, H, W) with w (F, C, kh, kw) and zero padding: im2col + one matrix product.

    Returns the output (N, F, Ho, Wo) and the im2col matrix (C kh kw, N Ho Wo), whose rows are ordered (c, i, j)
    like w.reshape(F, -1) and whose columns are (n, y, x).
    """
    F, C, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding))) if padding else x  # (N, C, Hp, Wp)
    N, _, Hp, Wp = xp.shape
    Ho, Wo = Hp - kh + 1, Wp - kw + 1
    # sliding_window_view is a strided view with no copy: windows[n, c, y, x] is the patch xp[n, c, y:y+kh, x:x+kw].
    # The reshape below copies it into the im2col matrix; with the columns ordered (n, y, x) the innermost copy
    # runs along image rows, which keeps it fast.
    windows = sliding_window_view(xp, (kh, kw), axis=(2, 3))  # (N, C, Ho, Wo, kh, kw)
    cols = windows.transpose(1, 4, 5, 0, 2, 3).reshape(C * kh * kw, N * Ho * Wo)  # (C kh kw, N Ho Wo)
    out = w.reshape(F, -1) @ cols  # (F, N Ho Wo)
    return out.reshape(F, N, Ho, Wo).transpose(1, 0, 2, 3), cols  # (N, F, Ho, Wo)


def conv2d_forward(x, w, b=None, padding=0):
    """Cross-correlation with stride 1, as `torch.nn.functional.conv2d`, for a square kernel.

    Args:
        x: input (N, C, H, W).
        w: weights (F, C, k, k).
        b: bias (F,), or None.
        padding: zero padding on every side: 0 for "valid", 1 for a 3x3 "same" convolution.

    Returns:
        out (N, F, H + 2 padding - k + 1, W + 2 padding - k + 1) and the cache for `conv2d_backward`.
    """
    assert w.shape[2] == w.shape[3], f"square kernels only, got {w.shape}"
    out, cols = im2col_correlate(x, w, padding)  # (N, F, Ho, Wo)
    if b is not None:
        out = out + b[:, None, None]
    return out, (cols, w, padding, b is not None)


def conv2d_backward(dout, cache, need_dx=True):
    """Gradients of `conv2d_forward`: returns dx (N, C, H, W) (None unless `need_dx`), dw (F, C, k, k), db (F,) or None.

    dw correlates the input patches (the cached im2col matrix) with dout. dx is the adjoint of the forward, the
    transposed convolution: dout correlated with the kernel flipped in space and with its in/out channels swapped,
    padded by k - 1 - padding so that it comes back to x's size (docs/twin.md, "Convolution").
    """
    cols, w, padding, has_bias = cache
    F, C, k, _ = w.shape
    dout_mat = dout.transpose(1, 0, 2, 3).reshape(F, -1)  # (F, N Ho Wo), columns ordered like cols'
    dw = (dout_mat @ cols.T).reshape(w.shape)  # (F, C k k) -> (F, C, k, k)
    db = dout_mat.sum(axis=1) if has_bias else None  # (F,)
    if not need_dx:  # the input image's gradient, which training does not use
        return None, dw, db
    w_adjoint = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C, F, k, k): flipped, channels swapped
    dx, _ = im2col_correlate(dout, w_adjoint, k - 1 - padding)  # (N, C, H, W)
    return dx, dw, db


def conv1x1_forward(x, w, b=None):
    """A 1x1 convolution, x (N, C, H, W), w (F, C, 1, 1), b (F,) or None -> out (N, F, H, W) and the cache.

    A matrix product over channels at every pixel, so no im2col is needed.
    """
    out = np.tensordot(w[:, :, 0, 0], x, axes=([1], [1]))  # (F, N, H, W)
    if b is not None:
        out += b[:, None, None, None]
    return out.transpose(1, 0, 2, 3), (x, w, b is not None)  # (N, F, H, W)


def conv1x1_backward(dout, cache):
    """Gradients of `conv1x1_forward`: returns dx (N, C, H, W), dw (F, C, 1, 1) and db (F,) or None."""
    x, w, has_bias = cache
    dx = np.tensordot(dout, w[:, :, 0, 0], axes=([1], [0])).transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    dw = np.tensordot(dout, x, axes=([0, 2, 3], [0, 2, 3]))[:, :, None, None]  # (F, C, 1, 1)
    db = dout.sum(axis=(0, 2, 3)) if has_bias else None  # (F,)
    return dx, dw, db


def upconv2x2_forward(x, w, b):
    """The 2x2 transposed convolution with stride 2 (paper Fig. 1, "up-conv 2x2"), as `nn.ConvTranspose2d(.., 2, 2)`.

    x (N, C, H, W), w (C, F, 2, 2) in PyTorch's layout (input channels first), b (F,) -> out (N, F, 2H, 2W) and
    the cache. Output pixel (2i + a, 2j + b) is sum_c x[c, i, j] w[c, :, a, b]: the 2x2 blocks do not overlap,
    so this is one matrix product over channels.
    """
    N, C, H, W = x.shape
    F = w.shape[1]
    out = np.tensordot(x, w, axes=([1], [0]))  # (N, H, W, F, 2, 2)
    out += b[:, None, None]
    out = out.transpose(0, 3, 1, 4, 2, 5).reshape(N, F, 2 * H, 2 * W)  # (N, F, H, 2, W, 2) -> (N, F, 2H, 2W)
    return out, (x, w)


def upconv2x2_backward(dout, cache):
    """Gradients of `upconv2x2_forward`: returns dx (N, C, H, W), dw (C, F, 2, 2) and db (F,)."""
    x, w = cache
    N, C, H, W = x.shape
    F = w.shape[1]
    dout6 = dout.reshape(N, F, H, 2, W, 2)  # (N, F, H, a, W, b): output pixel (2i + a, 2j + b)
    dx = np.tensordot(dout6, w, axes=([1, 3, 5], [1, 2, 3])).transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    dw = np.tensordot(x, dout6, axes=([0, 2, 3], [0, 2, 4]))  # (C, F, a, b)
    db = dout.sum(axis=(0, 2, 3))  # (F,)
    return dx, dw, db


# ---------------------------------------------------------------------------------------------------------------------
# Element-wise maps


def relu_forward(x):
    """max(x, 0); returns out (same shape as x) and the cache."""
    positive = x > 0
    return x * positive, positive


def relu_backward(dout, cache):
    """dx = dout where x > 0, else 0 (PyTorch's choice at x = 0)."""
    return dout * cache  # (same shape as x)


def sigmoid(z):
    """The logistic function 1 / (1 + exp(-z)) without overflow for large |z|."""
    e = np.exp(-np.abs(z))  # in (0, 1]
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_forward(x):
    """1 / (1 + exp(-x)); returns out (same shape as x) and the cache."""
    out = sigmoid(x)
    return out, out


def sigmoid_backward(dout, cache):
    """dx = dout * s (1 - s), with s = sigmoid(x) kept by the forward."""
    return dout * cache * (1 - cache)  # (same shape as x)


def dropout_forward(x, p, keep):
    """Inverted dropout, as `F.dropout` in training mode: out = x * keep / (1 - p), and the cache.

    `keep` is a boolean mask of x's shape, True (with probability 1 - p) where the element is kept.
    """
    scale = keep / (1 - p)  # the same rounding as PyTorch: the mask is scaled first, then multiplied
    return x * scale, scale


def dropout_backward(dout, cache):
    """dx = dout * keep / (1 - p)."""
    return dout * cache  # (same shape as x)


# ---------------------------------------------------------------------------------------------------------------------
# Pooling, cropping, concatenation


def maxpool2x2_forward(x, ceil_mode=False):
    """2x2 max-pool with stride 2, as `nn.MaxPool2d(2, ceil_mode=ceil_mode)`.

    With `ceil_mode` an odd side gets one more output row (or column) from a window that overhangs the edge; the
    overhang is padded with -inf, so it never wins. Without it the odd last row is dropped.

    Returns:
        out (N, C, Ho, Wo), with Ho = ceil(H / 2) or floor(H / 2), and the cache.
    """
    N, C, H, W = x.shape
    Ho, Wo = ((H + 1) // 2, (W + 1) // 2) if ceil_mode else (H // 2, W // 2)
    if ceil_mode and (H % 2 or W % 2):
        xe = np.pad(x, ((0, 0), (0, 0), (0, 2 * Ho - H), (0, 2 * Wo - W)), constant_values=-np.inf)  # (.., 2Ho, 2Wo)
    else:
        xe = x[:, :, : 2 * Ho, : 2 * Wo]  # (N, C, 2Ho, 2Wo)
    windows = xe.reshape(N, C, Ho, 2, Wo, 2).transpose(0, 1, 2, 4, 3, 5).reshape(N, C, Ho, Wo, 4)  # row-major
    # argmax takes the first maximum in row-major window order, the element PyTorch routes the gradient to on ties
    # (common after a ReLU: a window of zeros).
    idx = windows.argmax(axis=-1)[..., None]  # (N, C, Ho, Wo, 1)
    out = np.take_along_axis(windows, idx, axis=-1)[..., 0]  # (N, C, Ho, Wo)
    return out, (x.shape, idx)


def maxpool2x2_backward(dout, cache):
    """The gradient goes to the maximum of each window; everything else (and a dropped odd row) gets 0."""
    (N, C, H, W), idx = cache
    _, _, Ho, Wo = dout.shape
    dwindows = np.zeros((N, C, Ho, Wo, 4), dtype=dout.dtype)  # (N, C, Ho, Wo, 4)
    np.put_along_axis(dwindows, idx, dout[..., None], axis=-1)  # one non-zero per window
    dxe = dwindows.reshape(N, C, Ho, Wo, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(N, C, 2 * Ho, 2 * Wo)
    dx = np.zeros((N, C, H, W), dtype=dout.dtype)  # (N, C, H, W)
    h, w = min(H, 2 * Ho), min(W, 2 * Wo)
    dx[:, :, :h, :w] = dxe[:, :, :h, :w]  # ceil mode: drop the overhang; floor mode: the odd row stays 0
    return dx


def crop_forward(x, top, left, size):
    """`x[..., top : top + h, left : left + w]` for `size = (h, w)`.

    The valid U-Net centre-crops the skip (top = (H - h) // 2, paper Fig. 1); the padded one crops the upsampled
    map at the top left (top = left = 0) to drop the ceil-mode overhang.
    """
    h, w = size
    return x[:, :, top : top + h, left : left + w], (x.shape, top, left)  # (N, C, h, w)


def crop_backward(dout, cache):
    """dx is dout placed back at (top, left) in zeros of x's shape: cropped-away pixels get no gradient."""
    shape, top, left = cache
    h, w = dout.shape[2:]
    dx = np.zeros(shape, dtype=dout.dtype)  # (N, C, H, W)
    dx[:, :, top : top + h, left : left + w] = dout  # (N, C, h, w)
    return dx


def concat_forward(xs):
    """Concatenation along channels, as `torch.cat(xs, dim=1)`; returns out (N, sum C_i, H, W) and the cache."""
    return np.concatenate(xs, axis=1), [x.shape[1] for x in xs]


def concat_backward(dout, cache):
    """Each input receives its own slice of channels: returns [dx_1, dx_2, ...], dx_i (N, C_i, H, W)."""
    return np.split(dout, np.cumsum(cache)[:-1], axis=1)


# ---------------------------------------------------------------------------------------------------------------------
# Batch normalisation


def batchnorm_forward(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
    """Batch normalisation over (N, H, W) per channel, as `nn.BatchNorm2d` (Ioffe & Szegedy 2015, Alg. 1).

    In training mode the batch's mean and biased variance normalise x, and the running estimates are updated
    in place, as PyTorch does: running = (1 - momentum) running + momentum batch, with the unbiased variance
    (divided by m - 1). In evaluation mode the running estimates normalise x and nothing changes.

    Args:
        x: input (N, C, H, W).
        gamma, beta: scale and shift (C,).
        running_mean, running_var: running estimates (C,), updated in place in training mode.
        training: use (and update) batch statistics.

    Returns:
        out (N, C, H, W) and the cache for `batchnorm_backward`.

    Raises:
        UnetlabError: in training mode with one value per channel (no variance to estimate), as PyTorch.
    """
    C = x.shape[1]
    m = x.size // C  # values per channel
    if training:
        if m < 2:
            raise UnetlabError(
                f"batch norm in training mode needs more than one value per channel, got input {x.shape}; "
                "use a batch of 2 or more images, or larger images"
            )
        mean = x.mean(axis=(0, 2, 3))  # (C,)
        xc = x - mean[:, None, None]  # (N, C, H, W)
        var = (xc * xc).mean(axis=(0, 2, 3))  # (C,), biased: the normalisation uses it
        running_mean[:] = (1 - momentum) * running_mean + momentum * mean
        running_var[:] = (1 - momentum) * running_var + momentum * var * m / (m - 1)  # unbiased
    else:
        xc, var = x - running_mean[:, None, None], running_var  # (N, C, H, W), (C,)
    inv_std = 1 / np.sqrt(var + eps)  # (C,)
    xhat = xc * inv_std[:, None, None]  # (N, C, H, W)
    out = xhat * gamma[:, None, None] + beta[:, None, None]  # (N, C, H, W)
    return out, (xhat, gamma, inv_std, training)


def batchnorm_backward(dout, cache):
    """Gradients of `batchnorm_forward`: returns dx (N, C, H, W), dgamma (C,) and dbeta (C,).

    In training mode the batch statistics depend on x, so (with dxhat = dout * gamma, sums over N, H, W)
        dx = inv_std / m * (m dxhat - sum(dxhat) - xhat sum(dxhat xhat));
    in evaluation mode they are constants and dx = dxhat * inv_std.
    """
    xhat, gamma, inv_std, training = cache
    dgamma = (dout * xhat).sum(axis=(0, 2, 3))  # (C,)
    dbeta = dout.sum(axis=(0, 2, 3))  # (C,)
    g = (gamma * inv_std)[:, None, None]  # (C, 1, 1)
    if not training:
        return dout * g, dgamma, dbeta  # (N, C, H, W)
    m = dout.size // dout.shape[1]
    # sum(dxhat) = gamma dbeta and sum(dxhat xhat) = gamma dgamma, so the sums above are reused.
    dx = g * (dout - dbeta[:, None, None] / m - xhat * (dgamma[:, None, None] / m))  # (N, C, H, W)
    return dx, dgamma, dbeta
