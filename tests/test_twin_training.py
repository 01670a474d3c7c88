"""The twin's optimizers against torch.optim step by step, and 20 training steps of the twin and of PyTorch.

Dropout (0.5 in unet-classic) stays on: each PyTorch step's mask is recovered and given to the twin
(`unetlab.twin.torch_forward`), so the training-mode network is compared as it trains, dropout included.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from twin_helpers import assert_twin_close

from unetlab import create_model
from unetlab.evaluation import metrics
from unetlab.evaluation.metrics import confusion_counts
from unetlab.twin import SGD, Adam, NumpyUNet, softmax_ce_backward, softmax_ce_forward
from unetlab.twin.bridge import max_errors, torch_forward
from unetlab.twin.losses import loss_and_grad
from unetlab.twin.train import dice_score

OPTIMIZERS = {
    "sgd-momentum": (
        lambda: SGD(lr=0.05, momentum=0.9, weight_decay=1e-3),
        lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-3),
    ),
    "adam": (
        lambda: Adam(lr=1e-2, betas=(0.8, 0.99), eps=1e-8, weight_decay=1e-3),
        lambda params: torch.optim.Adam(params, lr=1e-2, betas=(0.8, 0.99), eps=1e-8, weight_decay=1e-3),
    ),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_matches_torch_optim_step_by_step(name):
    make_twin, make_torch = OPTIMIZERS[name]
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(5)}
    tensors = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    twin_opt, torch_opt = make_twin(), make_torch(list(tensors.values()))
    for step in range(10):
        grads = {k: rng.standard_normal(v.shape) * 10.0**-step for k, v in params.items()}  # shrinking, as in training
        for k, t in tensors.items():
            t.grad = torch.from_numpy(grads[k].copy())
        torch_opt.step()
        twin_opt.step(params, grads)
        for k, t in tensors.items():
            assert_twin_close(params[k], t.detach().numpy(), f"{k} after step {step + 1}")


# (registered model, options, input side or None for the smallest valid side above 30, optimizer)
RUNS = [
    ("unet-classic", dict(depth=2, base_channels=2, num_classes=2), None, "sgd-momentum"),
    ("unet", dict(depth=2, base_channels=3, num_classes=3), (12, 10), "adam"),
    ("unet", dict(depth=1, base_channels=2, num_classes=2), (9, 9), "sgd-momentum"),
]


@pytest.mark.parametrize("run", RUNS, ids=[f"{r[0]}-{r[3]}" for r in RUNS])
def test_twenty_training_steps_give_the_same_losses_as_pytorch(run):
    name, options, side, optimizer = run
    torch.manual_seed(0)
    model = create_model(name, **options).double().train()
    twin = NumpyUNet.from_torch(model)
    make_twin, make_torch = OPTIMIZERS[optimizer]
    twin_opt, torch_opt = make_twin(), make_torch(model.parameters())
    side = side or (model.valid_input_size(30),) * 2
    out = tuple(model.output_size(s) for s in side)
    rng = np.random.default_rng(0)
    torch_losses, twin_losses = [], []
    for step in range(20):
        image = rng.standard_normal((2, 1, *side))
        mask = rng.integers(0, model.num_classes, (2, *out))
        logits, dropout_mask = torch_forward(model, torch.from_numpy(image), seed=step)
        loss = F.cross_entropy(logits, torch.from_numpy(mask))
        torch_opt.zero_grad()
        loss.backward()
        torch_opt.step()
        torch_losses.append(loss.item())

        twin_loss, cache = softmax_ce_forward(twin.forward(image, dropout_mask), mask)
        twin_opt.step(twin.params, twin.backward(softmax_ce_backward(1.0, cache)))
        twin_losses.append(twin_loss)
    assert max_errors(twin_losses, torch_losses)[1] <= 1e-8, (twin_losses, torch_losses)
    np.testing.assert_allclose(twin_losses, torch_losses, rtol=1e-8, atol=0)  # every step, not only the largest
    assert torch_losses[-1] < torch_losses[0], "the runs must actually train"
    for key, value in model.state_dict().items():
        assert_twin_close(twin.state_dict()[key], value.numpy(), key)


def test_loss_and_grad_adds_dice_to_cross_entropy():
    rng = np.random.default_rng(0)
    logits, mask = rng.standard_normal((2, 2, 4, 4)), rng.integers(0, 2, (2, 4, 4))
    z = torch.from_numpy(logits.copy()).requires_grad_(True)
    p = torch.softmax(z, 1)[:, 1]
    t = torch.from_numpy(mask).double()
    dice_fg = (2 * (p * t).sum() + 1e-6) / (p.sum() + t.sum() + 1e-6)
    dice_bg = (2 * ((1 - p) * (1 - t)).sum() + 1e-6) / ((1 - p).sum() + (1 - t).sum() + 1e-6)
    expected = F.cross_entropy(z, torch.from_numpy(mask)) + 0.5 * (1 - (dice_fg + dice_bg) / 2)
    expected.backward()
    loss, dlogits = loss_and_grad(logits, mask, dice_weight=0.5)
    assert_twin_close(loss, expected.item(), "loss")
    assert_twin_close(dlogits, z.grad.numpy(), "dlogits")


def test_dice_score_equals_unetlab_metrics_per_class_dice_over_the_foreground():
    rng = np.random.default_rng(0)
    for classes in (1, 2, 4):
        k = max(classes, 2)
        pred, mask = rng.integers(0, k, (3, 8, 8)), rng.integers(0, k, (3, 8, 8))
        mask[mask == k - 1] = 0  # class k - 1 absent from the truth, still predicted
        counts = confusion_counts(torch.from_numpy(pred), torch.from_numpy(mask), k)
        expected = metrics.dice(*counts, reduction="per-class")[1:].nanmean().item()
        assert dice_score(pred, mask, classes) == pytest.approx(expected, rel=1e-12)


def test_dice_score_leaves_out_classes_absent_from_truth_and_prediction():
    mask = np.array([[[0, 1], [1, 1]]])
    assert dice_score(mask, mask, 3) == 1.0  # class 2 is undefined, not a perfect 1 nor a 0
    assert dice_score(np.array([[[0, 1], [0, 0]]]), mask, 1) == pytest.approx(2 * 1 / (2 * 1 + 2))
    assert np.isnan(dice_score(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), 2))
