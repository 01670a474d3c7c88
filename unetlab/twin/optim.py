"""SGD with momentum and Adam in NumPy, step for step the updates of `torch.optim.SGD` and `torch.optim.Adam`.

Both update a dict of parameter arrays in place from a dict of gradients with the same keys (`NumpyUNet.params`
and what `NumpyUNet.backward` returns), and keep their state per key.

- SGD with momentum as PyTorch writes it (Sutskever et al. 2013 in the form v = mu v + g, p -= lr v; the first
  step sets v = g), with L2 weight decay added to the gradient.
- Adam: Kingma & Ba (2015), Algorithm 1, with PyTorch's order of operations (eps added after the bias-corrected
  square root) so that float64 runs agree to rounding.
"""

import numpy as np


class SGD:
    """Stochastic gradient descent with momentum, as `torch.optim.SGD(params, lr, momentum, weight_decay=...)`.

    Args:
        lr: learning rate (may be changed between steps).
        momentum: momentum factor mu; 0 gives plain SGD.
        weight_decay: L2 penalty, added to the gradient as weight_decay * p.
    """

    def __init__(self, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.velocity = {}  # key -> momentum buffer v, shaped like the parameter

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """Update every parameter that has a gradient, in place."""
        for key, g in grads.items():
            p = params[key]
            if self.weight_decay:
                g = g + self.weight_decay * p
            if self.momentum:
                v = self.velocity.get(key)
                if v is None:
                    v = self.velocity[key] = np.array(g, copy=True)  # PyTorch starts the buffer at the gradient
                else:
                    v *= self.momentum
                    v += g
                g = v
            p -= self.lr * g


class Adam:
    """Adam, as `torch.optim.Adam(params, lr, betas, eps, weight_decay)` (L2 penalty in the gradient, not AdamW).

    Args:
        lr: learning rate (may be changed between steps).
        betas: decay rates (beta1, beta2) of the first and second moment estimates.
        eps: added to the bias-corrected root of the second moment.
        weight_decay: L2 penalty, added to the gradient as weight_decay * p.
    """

    def __init__(self, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.t = 0  # steps taken
        self.m, self.v = {}, {}  # key -> first and second moment estimates

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """Update every parameter that has a gradient, in place."""
        beta1, beta2 = self.betas
        self.t += 1
        bias_correction1 = 1 - beta1**self.t
        bias_correction2_sqrt = (1 - beta2**self.t) ** 0.5
        for key, g in grads.items():
            p = params[key]
            if self.weight_decay:
                g = g + self.weight_decay * p
            m = self.m.setdefault(key, np.zeros_like(p))
            v = self.v.setdefault(key, np.zeros_like(p))
            m += (1 - beta1) * (g - m)  # m = beta1 m + (1 - beta1) g, written as PyTorch's lerp
            v *= beta2
            v += (1 - beta2) * g * g
            denom = np.sqrt(v) / bias_correction2_sqrt + self.eps  # sqrt(v_hat) + eps
            p -= (self.lr / bias_correction1) * m / denom  # lr m_hat / (sqrt(v_hat) + eps)
