"""Property-based tests of the prediction path: every registered model in a tiny configuration (base channels 2-4,
depth 1-3, every normalisation, padding and upsampling), images of any size from 1 x 1 px, any channels and dtype
(NaN included), and any tile, overlap, blend and batch size either predict an image-sized result or raise a
`UnetlabError`; never any other exception. A prediction also does not depend on how many windows go through the
network at once. `scripts/fuzz.py` runs thousands of such cases; this runs a few dozen.
"""

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unetlab import UnetlabError, create_model, list_models
from unetlab.inference.predictor import Predictor
from unetlab.models import model_options

MODELS: dict = {}  # tiny models by their options, built once: hypothesis draws the same ones again


def tiny(name: str, **kwargs):
    key = (name, tuple(sorted(kwargs.items())))
    if key not in MODELS:
        torch.manual_seed(len(MODELS))
        MODELS[key] = create_model(name, **kwargs).eval()
    return MODELS[key]


@st.composite
def models(draw):
    name = draw(st.sampled_from(list_models()))
    kwargs = {
        "in_channels": draw(st.integers(1, 3)),
        "num_classes": draw(st.integers(1, 3)),
        "base_channels": draw(st.integers(2, 4)),
        "depth": draw(st.integers(1, 3)),
        "norm": draw(st.sampled_from(["batch", "group", "instance", "none"])),
        "upsample": draw(st.sampled_from(["transpose", "bilinear"])),
    }
    if "padding" in model_options(name):
        kwargs["padding"] = draw(st.sampled_from(["same", "valid"]))
    return name, kwargs


SIDE = st.one_of(st.integers(1, 4), st.integers(1, 40))


@st.composite
def images(draw, in_channels: int):
    h, w = draw(SIDE), draw(SIDE)
    channels = draw(st.sampled_from([0, 1, 2, 3, 4, in_channels]))  # 0: an (H, W) image
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int16, np.int32, np.bool_]))
    shape = (h, w) if channels == 0 else (h, w, channels)
    top = {np.uint8: 255, np.uint16: 65535, np.int16: 40000, np.int32: 70000}.get(dtype, 1)  # some past 16 bits
    image = (np.random.default_rng(draw(st.integers(0, 2**16))).random(shape) * top).astype(dtype)
    if draw(st.booleans()) and np.issubdtype(dtype, np.floating):
        image.flat[0] = draw(st.sampled_from([np.nan, np.inf]))  # refused, naming the image
    return image


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=models(), data=st.data())
def test_any_model_image_and_tiling_predicts_or_says_why_not(model, data):
    name, kwargs = model
    network = tiny(name, **kwargs)
    image = data.draw(images(kwargs["in_channels"]), label="image")
    tile = data.draw(st.one_of(st.none(), st.integers(1, 8), st.integers(1, 64)), label="tile")
    options = {
        "tile": tile,
        "overlap": None if tile is None else data.draw(st.one_of(st.none(), st.integers(0, tile)), label="overlap"),
        "blend": data.draw(st.sampled_from(["gaussian", "constant"]), label="blend"),
        "batch_size": data.draw(st.integers(2, 5), label="batch_size"),
        "tta": data.draw(st.sampled_from([False, False, False, True]), label="tta"),
        "device": "cpu",
    }
    try:
        result = Predictor(network, **options)(image)
    except UnetlabError as exc:
        assert "\n" not in str(exc)
        return
    h, w = image.shape[:2]
    assert result.probs.shape == (kwargs["num_classes"], h, w) and result.classes.shape == (h, w)
    assert np.isfinite(result.probs).all() and 0 <= result.probs.min() and result.probs.max() <= 1
    if kwargs["num_classes"] > 1:
        np.testing.assert_allclose(result.probs.sum(axis=0), 1, rtol=1e-5)
    one_by_one = Predictor(network, **{**options, "batch_size": 1})(image)  # the windows through one at a time
    np.testing.assert_allclose(one_by_one.probs, result.probs, rtol=1e-5, atol=1e-6)
