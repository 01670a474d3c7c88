"""NumpyUNet against the PyTorch UNet with the same weights: logits, loss, every gradient key by key, buffers.

Also: the state layout, the way back to torch, finite differences as a third witness, the errors for
configurations the twin does not implement, and that the twin's package never imports torch.
"""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_model
from twin_helpers import assert_twin_close

from unetlab import UnetlabError, create_model
from unetlab.models.unet import valid_output_size
from unetlab.twin import NumpyUNet
from unetlab.twin.bridge import to_torch, torch_forward
from unetlab.twin.losses import loss_and_grad
from unetlab.twin.sizes import valid_output_side

ROOT = Path(__file__).resolve().parents[1]

# (registered model, options, input side (H, W) or None for the smallest valid side above 30, train mode)
CONFIGS = [
    ("unet-classic", dict(depth=1, base_channels=2, in_channels=1, num_classes=2), None, True),
    ("unet-classic", dict(depth=2, base_channels=3, in_channels=2, num_classes=1), None, True),  # dropout 0.5
    ("unet-classic", dict(depth=3, base_channels=2, in_channels=1, num_classes=3), None, False),
    ("unet-classic", dict(depth=2, base_channels=2, in_channels=1, num_classes=2, norm="batch"), None, True),
    ("unet", dict(depth=1, base_channels=4, in_channels=3, num_classes=2), (9, 6), True),
    ("unet", dict(depth=2, base_channels=3, in_channels=1, num_classes=1, dropout=0.3), (13, 11), True),
    ("unet", dict(depth=3, base_channels=2, in_channels=2, num_classes=3), (17, 20), False),
    ("unet", dict(depth=4, base_channels=2, in_channels=1, num_classes=2), (16, 9), True),
    ("unet", dict(depth=2, base_channels=2, in_channels=1, num_classes=2, norm=None), (10, 7), True),
]


def config_id(config):
    name, options, _, training = config
    return f"{name}-d{options['depth']}-c{options['base_channels']}-{'train' if training else 'eval'}"


def make_pair(name, options, side, training, seed=0):
    """A float64 PyTorch UNet (non-trivial batch-norm state), its twin, and a batch that fits."""
    torch.manual_seed(seed)
    model = create_model(name, **options).double()
    with torch.no_grad():  # move batch norm away from identity, so that its parameters matter
        for key, tensor in model.state_dict().items():
            if key.endswith(("norm1.weight", "norm2.weight", "running_var")):
                tensor.uniform_(0.5, 1.5)
            elif key.endswith(("norm1.bias", "norm2.bias", "running_mean")):
                tensor.uniform_(-0.5, 0.5)
    model.train(training)
    if side is None:
        side = (model.valid_input_size(30),) * 2
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((2, model.in_channels, *side))
    out = tuple(model.output_size(s) for s in side)
    mask = rng.integers(0, max(model.num_classes, 2), (2, *out))
    return model, NumpyUNet.from_torch(model), image, mask


def torch_loss(logits, mask):
    target = torch.from_numpy(mask)
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], target.to(logits.dtype))
    return F.cross_entropy(logits, target)


@pytest.mark.parametrize("config", CONFIGS, ids=config_id)
def test_twin_matches_torch_logits_loss_every_gradient_and_buffer(config):
    model, twin, image, mask = make_pair(*config)
    x = torch.from_numpy(image).requires_grad_(True)
    logits, dropout_mask = torch_forward(model, x, seed=1)  # PyTorch's dropout mask, shared
    assert (dropout_mask is not None) == (model.training and model.dropout_p > 0)
    loss = torch_loss(logits, mask)
    loss.backward()

    twin_logits = twin.forward(image, dropout_mask)
    twin_loss, dlogits = loss_and_grad(twin_logits, mask, 0.0)
    grads = twin.backward(dlogits, input_grad=True)

    assert_twin_close(twin_logits, logits.detach().numpy(), "logits")
    assert_twin_close(twin_loss, loss.item(), "loss")
    assert_twin_close(twin.stage_grads["input"], x.grad.numpy(), "input gradient")
    params = dict(model.named_parameters())
    assert list(grads) == list(params), "gradients are keyed and ordered like the state_dict's parameters"
    for key, p in params.items():
        assert_twin_close(grads[key], p.grad.numpy(), key)
    for key, buffer in model.named_buffers():  # running estimates updated alike in train mode, untouched in eval
        assert_twin_close(twin.buffers[key], buffer.numpy(), key)


def test_twin_stage_gradient_sums_the_pool_and_the_skip():
    """encoders.0's output feeds the pool and the skip; its gradient is the sum, as autograd's at that tensor."""
    model, twin, image, mask = make_pair("unet", dict(depth=2, base_channels=2, num_classes=2), (8, 8), True)
    captured = {}

    def keep_gradient(module, inputs, output):
        output.register_hook(lambda g: captured.update(g=g))

    model.encoders[0].register_forward_hook(keep_gradient)
    torch_loss(model(torch.from_numpy(image)), mask).backward()
    twin.backward(loss_and_grad(twin.forward(image), mask, 0.0)[1])
    assert_twin_close(twin.stage_grads["encoders.0"], captured["g"].numpy(), "encoders.0 output gradient")


def test_twin_matches_finite_differences():
    """A third witness: central differences of the twin's own loss at random coordinates of every kind of tensor."""
    model, twin, image, mask = make_pair("unet", dict(depth=1, base_channels=2, num_classes=2), (6, 5), True)
    keep = np.random.default_rng(3).random((2, 4, 3, 3)) >= 0.5
    twin.dropout_p = 0.5  # the fixed mask makes dropout deterministic, so it can be differentiated too

    def loss_at(params):
        twin.params = params
        return loss_and_grad(twin.forward(image, keep), mask, 0.0)[0]

    params = twin.params
    grads = twin.backward(loss_and_grad(twin.forward(image, keep), mask, 0.0)[1])
    rng, h = np.random.default_rng(1), 1e-6
    for key in params:
        for _ in range(2):
            index = tuple(rng.integers(0, n) for n in params[key].shape)
            plus, minus = dict(params), dict(params)
            plus[key], minus[key] = params[key].copy(), params[key].copy()
            plus[key][index] += h
            minus[key][index] -= h
            numeric = (loss_at(plus) - loss_at(minus)) / (2 * h)
            # Central differences carry O(h^2) truncation and O(eps / h) rounding error, about 1e-10 here, so this
            # witness is held to 1e-6 relative, not to the twin-vs-autograd tolerance.
            assert numeric == pytest.approx(grads[key][index], rel=1e-6, abs=1e-9), (key, index)


@pytest.mark.parametrize("name", ["unet-classic", "unet"])
def test_state_shapes_equal_the_torch_state_dict_in_order(name):
    for depth, base in [(1, 2), (3, 5)]:
        model = create_model(name, depth=depth, base_channels=base, in_channels=3, num_classes=4)
        twin = NumpyUNet(**NumpyUNet.from_torch(model).config)
        expected = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
        assert [(k, v.shape) for k, v in twin.state_dict().items()] == expected


def test_from_torch_and_to_torch_round_trip_weights_mode_and_dtype():
    model, twin, image, _ = make_pair("unet", dict(depth=2, base_channels=2), (8, 8), False)
    back = to_torch(twin)
    assert not back.training and next(back.parameters()).dtype == torch.float64
    for key, value in model.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    with torch.no_grad():
        assert_twin_close(twin.forward(image), back(torch.from_numpy(image)).numpy(), "logits")
    twin.params["head.bias"] += 1.0  # to_torch copies: the twin and its torch model are independent
    assert not torch.equal(to_torch(twin).head.bias, back.head.bias)


def test_fresh_twin_is_he_initialised_and_float32_by_default():
    twin = NumpyUNet(base_channels=8, depth=2)
    w = twin.params["encoders.1.conv.conv2.weight"]  # (16, 16, 3, 3): fan-in 144
    assert w.dtype == np.float32 and abs(w.std() - np.sqrt(2 / 144)) < 0.01
    assert not twin.params["head.bias"].any() and (twin.params["encoders.0.norm1.weight"] == 1).all()
    assert twin.forward(np.zeros((1, 1, 8, 8), np.float32)).dtype == np.float32


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_valid_output_side_closed_form_agrees_with_the_models_walk(depth):
    for side in range(1, 700):
        assert valid_output_side(side, depth) == valid_output_size(side, depth), side


def test_twin_rejects_a_side_the_valid_net_cannot_take_and_names_the_nearest():
    twin = NumpyUNet(padding="valid", norm=None, depth=4, base_channels=2)
    with pytest.raises(UnetlabError, match="input side 190 px .* use 188 or 204 px"):
        twin.forward(np.zeros((1, 1, 190, 188)))
    with pytest.raises(UnetlabError, match=r"\(N, 1, H, W\)"):
        twin.forward(np.zeros((1, 3, 188, 188)))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (dict(norm="group"), "norm 'group' is not supported by the NumPy twin"),
        (dict(upsample="bilinear"), "upsample 'bilinear' is not supported"),
    ],
)
def test_twin_refuses_configurations_it_does_not_implement(options, match):
    with pytest.raises(UnetlabError, match=match):
        NumpyUNet(**options)
    with pytest.raises(UnetlabError, match=match):
        NumpyUNet.from_torch(create_model("unet", base_channels=2, depth=1, **options))


@pytest.mark.parametrize("name", ["attention-unet", "resnet18-unet"])
def test_from_torch_refuses_other_models(name):
    with pytest.raises(UnetlabError, match="mirrors plain U-Nets"):
        NumpyUNet.from_torch(tiny_model(name))


def test_load_state_dict_names_missing_and_misshapen_keys():
    twin = NumpyUNet(base_channels=2, depth=1)
    state = dict(twin.state_dict())
    del state["head.bias"]
    state["head.weight"] = np.zeros((3, 2, 1, 1))
    with pytest.raises(UnetlabError, match=r"missing: head.bias; wrong shape: head.weight \(3, 2, 1, 1\)"):
        twin.load_state_dict(state)


def test_batchnorm_training_on_one_value_per_channel_is_refused():
    twin = NumpyUNet(base_channels=2, depth=1)
    with pytest.raises(UnetlabError, match="more than one value per channel"):
        twin.forward(np.zeros((1, 1, 1, 1)))


def test_eval_mode_is_deterministic_and_leaves_buffers_alone():
    twin = NumpyUNet(base_channels=2, depth=2, dropout=0.5).eval()
    before = {k: v.copy() for k, v in twin.buffers.items()}
    image = np.random.default_rng(0).standard_normal((2, 1, 9, 9))
    np.testing.assert_array_equal(twin.forward(image), twin.forward(image))
    assert all(np.array_equal(before[k], v) for k, v in twin.buffers.items())


def test_twin_package_never_imports_torch_outside_its_bridge():
    """No import of torch in the source (but for `bridge.py`, the way to and from PyTorch), and `import unetlab.twin`
    works with torch made unimportable."""
    for path in sorted((ROOT / "unetlab" / "twin").glob("*.py")):
        if path.name == "bridge.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "torch" for n in names), f"{path.name} imports torch"
    script = """
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
import numpy as np
from unetlab.twin import Adam, NumpyUNet, softmax_ce_backward, softmax_ce_forward
from unetlab.twin.train import TwinTrainConfig, train_twin
twin = NumpyUNet(base_channels=2, depth=2, dtype=np.float64)
loss, cache = softmax_ce_forward(twin.forward(np.ones((2, 1, 9, 9))), np.zeros((2, 9, 9), dtype=np.int64))
Adam().step(twin.params, twin.backward(softmax_ce_backward(1.0, cache)))
assert not any(name.split(".")[0] == "torch" for name in sys.modules if sys.modules[name] is not None)
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_backward_skips_the_input_gradient_unless_asked():
    twin = NumpyUNet(base_channels=2, depth=2, dtype=np.float64)
    image, dlogits = np.ones((2, 1, 9, 9)), np.random.default_rng(0).standard_normal((2, 2, 9, 9))
    twin.forward(image)
    grads = twin.backward(dlogits)
    assert twin.stage_grads["input"] is None
    twin.forward(image)
    for key, value in twin.backward(dlogits, input_grad=True).items():
        np.testing.assert_array_equal(value, grads[key], err_msg=key)
    assert twin.stage_grads["input"].shape == image.shape


def test_backward_runs_once_per_forward():
    twin = NumpyUNet(base_channels=2, depth=1, dtype=np.float64)
    logits = twin.forward(np.ones((2, 1, 6, 6)))
    twin.backward(np.ones_like(logits))
    with pytest.raises(RuntimeError, match="needs a forward first"):
        twin.backward(np.ones_like(logits))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(depth=9), "depth 9 is not valid: it must be from 1 to 8"),
        (dict(depth=0), "depth 0 is not valid"),
        (dict(dropout=1.0), r"dropout 1.0 is not valid: it must be in \[0, 1\)"),
        (dict(dropout="half"), "dropout 'half' is not valid: it must be a number in"),
    ],
)
def test_twin_and_torch_unet_share_one_set_of_option_rules(options, message):
    with pytest.raises(UnetlabError, match=message):
        NumpyUNet(**options)
    with pytest.raises(UnetlabError, match=message):
        create_model("unet", **options)


def test_the_twin_mirrors_the_modules_as_they_are_not_as_they_were_built():
    """A dropout switched off by hand, a batch norm frozen in eval mode while the model trains, another momentum and
    eps: the twin takes each from the module itself, and its forward and buffers follow PyTorch's."""
    model, _, image, _ = make_pair("unet-classic", dict(depth=2, base_channels=3, norm="batch"), None, True)
    model.dropout.p = 0.0  # built with the paper's 0.5
    model.encoders[0].norm1.eval()  # frozen statistics while the rest trains
    model.decoders[0].conv.norm2.momentum, model.decoders[0].conv.norm2.eps = 0.3, 1e-3
    model.bottleneck.conv.norm1.momentum = None  # torch's cumulative average
    twin = NumpyUNet.from_torch(model)
    assert twin.dropout_p == 0.0 and not twin.norms["encoders.0.norm1"]["training"]
    logits = model(torch.from_numpy(image))
    assert_twin_close(twin.forward(image), logits.detach().numpy(), "logits")
    for key, buffer in model.named_buffers():
        assert_twin_close(twin.buffers[key], buffer.numpy(), key)
    back = to_torch(twin)
    assert back.dropout.p == 0.0 and not back.encoders[0].norm1.training and back.decoders[0].conv.norm2.eps == 1e-3
    assert back.bottleneck.conv.norm1.momentum is None
