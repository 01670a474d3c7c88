"""Synthetic data: deterministic, the documented shapes and classes, touching cells split by thin gaps, and
cells that a global threshold cannot segment (so a network has something to learn)."""

import ast
import inspect

import numpy as np
import pytest

from unetlab import UnetlabError, errors
from unetlab.data import synthetic
from unetlab.data.synthetic import CHANNELS, CLASS_NAMES, generate, generate_cell_instances


@pytest.mark.parametrize("kind", synthetic.KINDS)
def test_generate_has_documented_shapes_dtypes_and_classes(kind):
    image, mask = generate(kind, 3, seed=1, size=96)
    assert image.shape == (CHANNELS[kind], 96, 96) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 1
    assert mask.shape == (96, 96) and mask.dtype == np.int64
    assert set(np.unique(mask)) <= set(range(len(CLASS_NAMES[kind])))


@pytest.mark.parametrize("kind", synthetic.KINDS)
def test_generate_is_deterministic_in_kind_index_seed_and_size(kind):
    a, b = generate(kind, 5, seed=2), generate(kind, 5, seed=2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    for other in (generate(kind, 6, seed=2), generate(kind, 5, seed=3)):
        assert not np.array_equal(a[0], other[0])


def test_shapes_holds_every_object_class_over_a_few_images():
    present = set().union(*(np.unique(generate("shapes", i)[1]) for i in range(6)))
    assert present == {0, 1, 2, 3}


def test_cell_instances_match_the_mask_and_touching_cells_are_split_by_a_gap():
    image, instances = generate_cell_instances(0)
    assert np.array_equal(image, generate("cells", 0)[0])
    assert np.array_equal(instances > 0, generate("cells", 0)[1] == 1)
    # No two different cells are 4-neighbours: a gap of background always separates them.
    for a, b in ((instances[:, :-1], instances[:, 1:]), (instances[:-1], instances[1:])):
        assert not ((a > 0) & (b > 0) & (a != b)).any()
    # ... and many cells do touch: different cells two pixels apart, across a gap.
    across = (instances[:, :-3] > 0) & (instances[:, 3:] > 0) & (instances[:, :-3] != instances[:, 3:])
    assert across.sum() > 50


def test_cells_are_not_segmented_by_a_global_threshold():
    images, masks = zip(*(generate("cells", i) for i in range(8)))
    images, masks = np.stack(images)[:, 0], np.stack(masks)
    best = max(
        2 * ((images > t) & (masks == 1)).sum() / ((images > t).sum() + masks.sum()) for t in np.linspace(0, 1, 51)
    )
    assert 0.6 < best < 0.88  # a threshold gets part of the way; the gaps, specks and uneven light need a network


def test_unknown_kind_and_bad_arguments_raise():
    with pytest.raises(UnetlabError, match="unknown synthetic kind 'dots'"):
        generate("dots", 0)
    with pytest.raises(UnetlabError, match="size >= 32 px; got index=0, seed=0, size=8"):
        generate("cells", 0, size=8)


def imports(module) -> set[str]:
    tree = ast.parse(inspect.getsource(module))
    imported = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    return imported | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}


def test_synthetic_module_imports_numpy_only():
    assert imports(synthetic) == {"numpy", "unetlab.errors"} and imports(errors) == set()
