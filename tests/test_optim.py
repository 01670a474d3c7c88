"""Learning-rate schedules against hand-computed values and against torch.optim.lr_scheduler."""

import math

import pytest
import torch

from unetlab import UnetlabError
from unetlab.training.optim import Plateau, build_optimizer, get_lr


def torch_rates(scheduler_cls, steps: int, **kwargs) -> list[float]:
    """The rates a torch scheduler gives at steps 0 .. steps - 1 for a base rate of 1.0."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = scheduler_cls(optimizer, **kwargs)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_get_lr_cosine_matches_torch_cosine_annealing():
    ours = [get_lr(s, schedule="cosine", lr=1.0, total_steps=50, min_lr=0.01) for s in range(50)]
    reference = torch_rates(torch.optim.lr_scheduler.CosineAnnealingLR, 50, T_max=50, eta_min=0.01)
    assert ours == pytest.approx(reference, abs=1e-12)


def test_get_lr_poly_matches_torch_polynomial_lr():
    ours = [get_lr(s, schedule="poly", lr=1.0, total_steps=40) for s in range(40)]
    reference = torch_rates(torch.optim.lr_scheduler.PolynomialLR, 40, total_iters=40, power=0.9)
    assert ours == pytest.approx(reference, abs=1e-12)


def test_get_lr_step_matches_torch_step_lr():
    ours = [get_lr(s, schedule="step", lr=1.0, total_steps=30, step_size=7, gamma=0.5) for s in range(30)]
    reference = torch_rates(torch.optim.lr_scheduler.StepLR, 30, step_size=7, gamma=0.5)
    assert ours == pytest.approx(reference, abs=1e-12)


def test_get_lr_cosine_with_warmup_hand_computed():
    rates = [get_lr(s, schedule="cosine", lr=1.0, total_steps=10, warmup_steps=2) for s in range(11)]
    assert rates[:3] == [0.5, 1.0, 1.0]
    assert rates[6] == pytest.approx(0.5)
    assert rates[10] == pytest.approx(0.0)


def test_get_lr_onecycle_rises_to_peak_then_falls_to_a_ten_thousandth():
    rates = [get_lr(s, schedule="onecycle", lr=1.0, total_steps=100) for s in range(101)]
    assert rates[0] == pytest.approx(1 / 25) and max(rates) == rates[30] == pytest.approx(1.0)
    assert rates[100] == pytest.approx(1e-4)
    assert all(a <= b for a, b in zip(rates[:30], rates[1:31])) and all(a >= b for a, b in zip(rates[30:], rates[31:]))


def test_plateau_reduces_after_patience_evaluations_without_improvement():
    plateau = Plateau(mode="max", patience=2, gamma=0.5)
    for value in [0.5, 0.6, 0.6, 0.59, 0.55]:
        plateau.update(value)
    assert plateau.factor == 0.5 and plateau.best == 0.6 and plateau.bad_evals == 0
    plateau.update(0.7)
    assert plateau.factor == 0.5 and plateau.best == 0.7


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd"])
def test_build_optimizer_gives_the_named_optimizer(name):
    optimizer = build_optimizer(name, [torch.zeros(2, requires_grad=True)], lr=0.1, weight_decay=0.0, momentum=0.9)
    assert type(optimizer).__name__.lower() == name
    if name == "sgd":
        assert optimizer.defaults["nesterov"] and optimizer.defaults["momentum"] == 0.9


def test_build_optimizer_rejects_unknown_name_and_bad_lr():
    with pytest.raises(UnetlabError, match="optimizer 'lamb' is not valid: it must be one of adamw"):
        build_optimizer("lamb", [torch.zeros(1)], 0.1, 0.0, 0.9)
    with pytest.raises(UnetlabError, match="lr=-1"):
        build_optimizer("sgd", [torch.zeros(1)], -1, 0.0, 0.9)
    assert not math.isnan(get_lr(0, schedule="constant", lr=1.0, total_steps=1))


def test_build_optimizer_sgd_without_momentum_is_plain_sgd():
    optimizer = build_optimizer("sgd", [torch.zeros(2, requires_grad=True)], lr=0.1, weight_decay=0.0, momentum=0.0)
    assert not optimizer.defaults["nesterov"] and optimizer.defaults["momentum"] == 0.0
