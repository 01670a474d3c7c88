"""Segmentation losses in NumPy, each a pair `<loss>_forward(logits, mask, weight) -> (loss, cache)` /
`<loss>_backward(dloss, cache) -> dlogits`.

Losses take logits, never probabilities, so that the sigmoid or softmax and the log stay fused and stable, and
the backward is the short closed form (llm.c `crossentropy_softmax_backward`).

- `sigmoid_bce`: one logit per pixel (num_classes = 1), as `F.binary_cross_entropy_with_logits`.
- `softmax_ce`: K >= 2 logits per pixel, as `F.cross_entropy`.
- `loss_and_grad`: cross-entropy + weighted soft Dice and the summed gradient, for training loops.
- `soft_dice`: 1 - mean over classes of the soft Dice coefficient (Milletari et al. 2016, "V-Net", eq. 1 without
  the squares), on sigmoid or softmax probabilities.

`weight` is an optional per-pixel weight map (N, H, W), e.g. the U-Net paper's border weights (Ronneberger et
al. 2015, eq. 1-2). The cross-entropies average w * loss over all N H W pixels; the Dice sums weight every term.
"""

import numpy as np

from unetlab.twin.layers import sigmoid


def _weights(mask, weight, dtype):
    return np.ones(mask.shape, dtype=dtype) if weight is None else weight.astype(dtype, copy=False)  # (N, H, W)


def sigmoid_bce_forward(logits, mask, weight=None):
    """Binary cross-entropy on one logit per pixel.

    Args:
        logits: (N, 1, H, W).
        mask: targets (N, H, W), 0 or 1 (probabilities in [0, 1] work too).
        weight: optional per-pixel weights (N, H, W).

    Returns:
        The mean over pixels of w * (softplus(z) - t z), a float, and the cache.
    """
    z = logits[:, 0]  # (N, H, W)
    t = mask.astype(z.dtype)
    w = _weights(mask, weight, z.dtype)
    per_pixel = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))  # softplus(z) - t z, stable; (N, H, W)
    return float((w * per_pixel).mean()), (z, t, w)


def sigmoid_bce_backward(dloss, cache):
    """dlogits = dloss * w (sigmoid(z) - t) / (N H W), shape (N, 1, H, W)."""
    z, t, w = cache
    return (dloss / z.size * w * (sigmoid(z) - t))[:, None]  # (N, 1, H, W)


def log_softmax(logits):
    """log softmax over the class axis 1, stable (the maximum is subtracted first)."""
    shifted = logits - logits.max(axis=1, keepdims=True)  # (N, K, H, W)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_ce_forward(logits, mask, weight=None):
    """Cross-entropy of a softmax over K classes.

    Args:
        logits: (N, K, H, W).
        mask: class indices (N, H, W), int in [0, K).
        weight: optional per-pixel weights (N, H, W).

    Returns:
        The mean over pixels of w * -log softmax(z)[mask], a float, and the cache.
    """
    logp = log_softmax(logits)  # (N, K, H, W)
    w = _weights(mask, weight, logits.dtype)
    nll = -np.take_along_axis(logp, mask[:, None].astype(np.intp), axis=1)[:, 0]  # (N, H, W): -log p of the truth
    return float((w * nll).mean()), (logp, mask, w)


def softmax_ce_backward(dloss, cache):
    """Fused softmax + cross-entropy backward: dlogits = dloss * w (softmax(z) - onehot(mask)) / (N H W)."""
    logp, mask, w = cache
    idx = mask[:, None].astype(np.intp)  # (N, 1, H, W)
    dlogits = np.exp(logp)  # (N, K, H, W): the probabilities
    np.put_along_axis(dlogits, idx, np.take_along_axis(dlogits, idx, axis=1) - 1, axis=1)  # softmax - onehot
    return dlogits * (dloss * w / mask.size)[:, None]  # (N, K, H, W)


def soft_dice_forward(logits, mask, weight=None, eps=1e-6):
    """Soft Dice loss, 1 - mean_k (2 sum(w p t) + eps) / (sum(w p) + sum(w t) + eps), sums over N, H, W.

    With one logit per pixel p = sigmoid(z) and t = mask (the foreground's Dice); with K >= 2 logits
    p = softmax(z), t = onehot(mask), and the mean runs over all K classes.

    Args:
        logits: (N, K, H, W), K = 1 or more.
        mask: (N, H, W): 0/1 for K = 1, class indices for K >= 2.
        weight: optional per-pixel weights (N, H, W).
        eps: smoothing, so that an empty class that is also predicted empty scores a Dice of 1.

    Returns:
        The loss, a float, and the cache.
    """
    K = logits.shape[1]
    if K == 1:
        p = sigmoid(logits)  # (N, 1, H, W)
        t = mask[:, None].astype(logits.dtype)  # (N, 1, H, W)
    else:
        p = np.exp(log_softmax(logits))  # (N, K, H, W)
        t = (mask[:, None] == np.arange(K)[None, :, None, None]).astype(logits.dtype)  # one-hot (N, K, H, W)
    w = _weights(mask, weight, logits.dtype)[:, None]  # (N, 1, H, W)
    inter = (w * p * t).sum(axis=(0, 2, 3))  # (K,)
    total = (w * p).sum(axis=(0, 2, 3)) + (w * t).sum(axis=(0, 2, 3)) + eps  # (K,)
    dice = (2 * inter + eps) / total  # (K,)
    return float(1 - dice.mean()), (p, t, w, inter, total, eps)


def soft_dice_backward(dloss, cache):
    """Gradients of `soft_dice_forward`: returns dlogits (N, K, H, W).

    With D_k = (2 I_k + eps) / S_k: dD_k/dp = w (2 t S_k - (2 I_k + eps)) / S_k^2, then through the sigmoid
    (dz = dp p (1 - p)) or the softmax (dz = p (dp - sum_k p dp)).
    """
    p, t, w, inter, total, eps = cache
    K = p.shape[1]
    ddice = -dloss / K  # dloss / dD_k, the same for every class
    s = total[None, :, None, None]  # (1, K, 1, 1)
    dp = ddice * w * (2 * t * s - (2 * inter + eps)[None, :, None, None]) / s**2  # (N, K, H, W)
    if K == 1:
        return dp * p * (1 - p)  # (N, 1, H, W)
    return p * (dp - (p * dp).sum(axis=1, keepdims=True))  # (N, K, H, W): softmax Jacobian-vector product


def loss_and_grad(logits: np.ndarray, mask: np.ndarray, dice_weight: float) -> tuple[float, np.ndarray]:
    """Cross-entropy (binary for K = 1) + dice_weight * soft Dice, and its gradient at the logits, in one call.

    Args:
        logits: (N, K, H, W).
        mask: (N, H, W) int: 0/1 for K = 1, class indices for K >= 2.
        dice_weight: weight of the soft Dice term; 0 leaves the cross-entropy alone.

    Returns:
        The loss (a float) and dlogits (N, K, H, W).
    """
    ce_forward, ce_backward = (
        (sigmoid_bce_forward, sigmoid_bce_backward)
        if logits.shape[1] == 1
        else (softmax_ce_forward, softmax_ce_backward)
    )
    loss, cache = ce_forward(logits, mask)
    dlogits = ce_backward(1.0, cache)  # (N, K, H, W)
    if dice_weight:
        dice_loss, dice_cache = soft_dice_forward(logits, mask)
        loss += dice_weight * dice_loss
        dlogits += soft_dice_backward(dice_weight, dice_cache)  # the two losses' gradients add
    return loss, dlogits
