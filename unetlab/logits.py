"""What a model's logits mean, decided once for every stage: one logit per pixel, or one per class.

- `num_classes == 1`: one logit per pixel for two classes; the sigmoid gives the foreground's probability p, and a
  pixel is foreground (class 1) where p >= threshold (`DEFAULT_THRESHOLD` unless validation chose another).
- `num_classes == K >= 2`: K logits, a softmax over them; a pixel takes the most probable class.

Losses, validation, prediction, evaluation, export and the NumPy twin all ask this module, so the convention has one
owner. No torch import: the functions take torch tensors (and `decide` NumPy arrays too) through their methods.
"""

DEFAULT_THRESHOLD = 0.5


def is_binary(num_classes: int) -> bool:
    """True for one logit per pixel (a sigmoid over two classes)."""
    return num_classes == 1


def num_labels(num_classes: int) -> int:
    """The classes the logits stand for: 2 for one logit, else K."""
    return 2 if is_binary(num_classes) else num_classes


def activation(num_classes: int) -> str:
    """ "sigmoid" or "softmax": what turns the logits into probabilities."""
    return "sigmoid" if is_binary(num_classes) else "softmax"


def output_channels(data_classes: int) -> tuple[int, ...]:
    """The `num_classes` a model may have for data of `data_classes` classes, the default first: one sigmoid logit
    for two classes (or 2 softmax logits, if asked for), else one logit per class."""
    return (1, 2) if data_classes == 2 else (data_classes,)


def probabilities(logits, dim: int = 1):
    """Logits (..., K, ...) along `dim` -> probabilities: the foreground's (K = 1, sigmoid) or the softmax (K >= 2)."""
    return logits.sigmoid() if logits.shape[dim] == 1 else logits.softmax(dim)


def decide(probs, threshold: float | None = None, dim: int = 1):
    """Probabilities (..., K, ...) along `dim` -> class indices (the dim removed): p >= threshold for one channel
    (the foreground's probability), the most probable class otherwise. Works on tensors and NumPy arrays alike."""
    if probs.shape[dim] == 1:
        return foreground(probs.squeeze(dim), DEFAULT_THRESHOLD if threshold is None else threshold)
    return probs.argmax(dim)


def foreground(probs, threshold: float):
    """The decision rule of binary models: foreground where the probability is >= `threshold` (the rule validation
    chooses its threshold under). The NumPy twin applies it to logits as logit >= 0, the same rule at 0.5."""
    return probs >= threshold
