"""build_datasets: synthetic and folder sources, layouts, splits, mask encodings, normalisation, patches."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from folder_data import box_mask, write_pairs
from PIL import Image

from unetlab import UnetlabError
from unetlab.data import IGNORE_INDEX, DataConfig, DataInfo, build_datasets
from unetlab.data.folders import common_channels
from unetlab.data.io import write_image

ISBI = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2012-membrane"
SMALL = {"num_train": 4, "num_val": 2, "image_size": 48, "patch_size": 32}


def folder(tmp_path, n=5, size=(20, 24)):
    """n pairs named 0..n-1, binary 0/255 masks with a box whose place depends on the index."""
    masks = {str(i): box_mask(*size, (i, 2, i + 6, 10)) for i in range(n)}
    return write_pairs(tmp_path / "ds", masks)


@pytest.mark.parametrize(("source", "channels", "classes"), [("synthetic-cells", 1, 2), ("synthetic-shapes", 3, 4)])
def test_synthetic_items_have_the_contracted_keys_shapes_and_dtypes(source, channels, classes):
    train, val, info = build_datasets(DataConfig(source=source, weight_map=True, **SMALL))
    assert (len(train), len(val), info.in_channels, info.num_classes) == (4, 2, channels, classes)
    item = train[0]
    assert set(item) == {"image", "mask", "weight"}
    assert item["image"].shape == (channels, 32, 32) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (32, 32) and item["mask"].dtype == torch.int64
    assert item["weight"].shape == (32, 32) and item["weight"].dtype == torch.float32
    assert val[1]["image"].shape == (channels, 48, 48) and val[1]["mask"].shape == (48, 48)
    assert info.class_names[0] == "background" and len(info.mean) == channels


def test_patches_are_reproducible_per_epoch_and_index_and_survive_pickling():
    train, _, _ = build_datasets(DataConfig(patches_per_image=2, **SMALL))
    assert len(train) == 8
    first = train[5]["image"]
    assert torch.equal(first, train[5]["image"])
    assert torch.equal(first, pickle.loads(pickle.dumps(train))[5]["image"])
    train.set_epoch(1)
    assert not torch.equal(first, train[5]["image"])
    train.set_epoch(0)
    assert torch.equal(first, train[5]["image"])


def test_dataloader_workers_give_the_same_patches_as_the_main_process():
    train, _, _ = build_datasets(DataConfig(**SMALL))
    train.set_epoch(3)
    loader = torch.utils.data.DataLoader(train, batch_size=4, num_workers=1)
    batch = next(iter(loader))
    assert torch.equal(batch["image"], torch.stack([train[i]["image"] for i in range(4)]))


def test_uncached_synthetic_data_is_generated_on_the_fly_identically():
    cached, _, info = build_datasets(DataConfig(**SMALL))
    fresh, val, fresh_info = build_datasets(DataConfig(cache=False, **SMALL))
    assert info == fresh_info and torch.equal(cached[2]["mask"], fresh[2]["mask"])
    assert len(list(val)) == 2  # iteration stops although the generator could go on


def test_training_split_is_normalised_to_zero_mean_unit_std(tmp_path):
    train, _, info = build_datasets(DataConfig(source=str(folder(tmp_path)), val_fraction=0.2, patch_size=8))
    pixels = torch.cat([info.image_to_tensor(train.load(i)[0]).flatten() for i in range(len(train))])
    assert abs(float(pixels.mean())) < 1e-5 and abs(float(pixels.std(unbiased=False)) - 1) < 1e-5


def test_fixed_normalisation_is_used_as_given(tmp_path):
    _, val, info = build_datasets(DataConfig(source=str(folder(tmp_path)), mean=[0.0], std=[1.0], patch_size=8))
    assert (info.mean, info.std) == ([0.0], [1.0])
    image = np.asarray(Image.open(val.source.pairs[0][0]), np.float32) / 255
    np.testing.assert_allclose(val[0]["image"][0].numpy(), image, rtol=1e-6)


def test_folder_binary_255_masks_become_classes_0_and_1_and_the_split_is_seeded(tmp_path):
    root = folder(tmp_path, n=10)
    train, val, info = build_datasets(DataConfig(source=str(root), val_fraction=0.3, patch_size=16, seed=4))
    assert info.class_values == [0, 255] and (len(train), len(val)) == (7, 3)
    assert set(val[0]["mask"].unique().tolist()) == {0, 1}
    names = sorted(p[0].name for p in train.source.pairs + val.source.pairs)
    assert names == sorted(f"{i}.png" for i in range(10))
    again = build_datasets(DataConfig(source=str(root), val_fraction=0.3, patch_size=16, seed=4))[1]
    assert again.source.pairs == val.source.pairs


def test_split_layout_mask_suffix_and_stray_files(tmp_path):
    root = tmp_path / "ds"
    write_pairs(root / "train", {f"a{i}": box_mask(16, 16, (2, 2, 8, 8), 1) for i in range(3)})
    write_pairs(root / "val", {"b": box_mask(16, 16, (2, 2, 8, 8), 1)})
    (root / "val" / "masks" / "b.png").rename(root / "val" / "masks" / "b_mask.png")
    (root / "train" / "images" / ".DS_Store").write_bytes(b"junk")
    (root / "train" / "masks" / "notes.txt").write_text("not an image")
    train, val, info = build_datasets(DataConfig(source=str(root), patch_size=16))
    assert (len(train), len(val), info.class_values) == (3, 1, [0, 1])
    assert val.source.pairs[0][1].name == "b_mask.png"


def test_explicit_folders_and_val_list(tmp_path):
    root = folder(tmp_path, n=4)
    (root / "images").rename(tmp_path / "raw")
    (root / "val.txt").write_text("1.png\n3\n")  # a relative val_list is looked for in the dataset folder too
    cfg = DataConfig(source=str(root), image_dir=str(tmp_path / "raw"), val_list="val.txt")
    train, val, _ = build_datasets(cfg)
    assert [p[0].name for p in val.source.pairs] == ["1.png", "3.png"] and len(train) == 2


def test_ignore_value_becomes_ignore_index_and_names_the_classes(tmp_path):
    mask = box_mask(12, 12, (0, 0, 6, 6), 1)
    mask[8:, 8:] = 255
    root = write_pairs(tmp_path / "ds", {"0": mask, "1": mask})
    cfg = DataConfig(source=str(root), ignore_values=[255], class_names=["bg", "fg"], val_fraction=0.5, patch_size=12)
    _, val, info = build_datasets(cfg)
    assert (info.class_values, info.ignore_values, info.class_names) == ([0, 1], [255], ["bg", "fg"])
    assert val[0]["mask"][10, 10] == IGNORE_INDEX and val[0]["mask"][0, 0] == 1


def test_named_void_class_is_ignored(tmp_path):
    root = write_pairs(tmp_path / "ds", {"0": np.array([[0, 1], [2, 2]], np.uint8), "1": np.zeros((2, 2), np.uint8)})
    names = ["bg", "cell", "void"]
    cfg = DataConfig(
        source=str(root), class_values=[0, 1, 2], class_names=names, ignore_values=["void"], val_fraction=0
    )
    train, _, info = build_datasets(cfg)
    assert (info.class_values, info.class_names, info.ignore_values) == ([0, 1], ["bg", "cell"], [2])
    assert train.load(0)[1].tolist() == [[0, 1], [IGNORE_INDEX, IGNORE_INDEX]]


def test_palette_masks_give_their_indices_as_classes(tmp_path):
    root = tmp_path / "ds"
    for i in range(2):
        write_image(root / "images" / f"{i}.png", np.full((4, 4), 100 * i, np.uint8))
        palette = Image.fromarray(np.array([[0, 1, 2, 2]] * 4, np.uint8), mode="P")
        palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        palette.save(root / "masks" / f"{i}.png")
    _, _, info = build_datasets(DataConfig(source=str(root), val_fraction=0, patch_size=4))
    assert info.class_values == [0, 1, 2]
    assert info.palette[:9] == [0, 0, 0, 255, 0, 0, 0, 255, 0], "kept, to write predictions as palette PNGs"
    assert DataInfo.from_dict(info.to_dict()) == info
    write_image(root / "masks" / "1.png", np.array([[0, 1, 2, 2]] * 4, np.uint8))  # one grey mask: no palette
    assert build_datasets(DataConfig(source=str(root), val_fraction=0, patch_size=4))[2].palette is None


def test_colour_masks_with_a_colour_table_and_rgb_16_bit_images(tmp_path):
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]], np.uint8)
    root = tmp_path / "ds"
    for i in range(3):
        write_image(root / "images" / f"{i}.tif", np.full((6, 5, 3), 20000 * i, np.uint16))
        write_image(root / "masks" / f"{i}.png", colours[np.array([[0, 1, 2, 1, 0]] * 6)])
    table = [[0, 0, 0], [0, 0, 255], [255, 0, 0]]  # the table's order sets the class indices
    train, _, info = build_datasets(DataConfig(source=str(root), class_values=table, val_fraction=0, patch_size=4))
    assert info.in_channels == 3 and info.is_colour_mask and info.class_values == table
    assert train.load(0)[1][0].tolist() == [0, 2, 1, 2, 0]
    discovered = build_datasets(DataConfig(source=str(root), val_fraction=0, patch_size=4))[2]
    assert discovered.class_values == [[0, 0, 0], [0, 0, 255], [255, 0, 0]]
    for given in ([[0, 0, 255]], [[0, 0, 255], (0, 0, 255)]):  # a colour ignore value, listed once or twice
        train, _, info = build_datasets(DataConfig(source=str(root), ignore_values=given, val_fraction=0, patch_size=4))
        assert info.class_values == [[0, 0, 0], [255, 0, 0]] and info.ignore_values == [[0, 0, 255]]
        assert train.load(0)[1][0].tolist() == [0, 1, IGNORE_INDEX, 1, 0]


def test_grey_and_rgb_images_mix_as_rgb(tmp_path):
    root = folder(tmp_path, n=2)
    write_image(root / "images" / "1.png", np.zeros((20, 24, 3), np.uint8))
    _, _, info = build_datasets(DataConfig(source=str(root), val_fraction=0, patch_size=8))
    assert info.in_channels == 3


@pytest.mark.parametrize(("mode", "channels"), [("RGBA", 3), ("LA", 1)])
def test_alpha_is_dropped_so_transparent_images_train_a_grey_or_rgb_model(tmp_path, mode, channels):
    root = folder(tmp_path, n=2)
    for path in (root / "images").iterdir():
        grey = np.asarray(Image.open(path))
        colour = np.stack([grey] * channels + [np.full_like(grey, 200)], axis=2)  # (H, W, channels + 1)
        Image.fromarray(colour, mode=mode).save(path)
    _, _, info = build_datasets(DataConfig(source=str(root), val_fraction=0, patch_size=8))
    assert info.in_channels == channels


def test_channel_counts_mix_only_grey_and_rgb():
    assert common_channels({4}) == 4 and common_channels({1, 3}) == 3 and common_channels({2}) == 2
    with pytest.raises(UnetlabError, match="the images have 1 and 4 channels; unetlab mixes only grey and RGB"):
        common_channels({1, 4})


def test_jpeg_masks_are_refused(tmp_path):
    root = write_pairs(tmp_path / "ds", {str(i): box_mask(16, 16, (0, 0, 8, 8)) for i in range(3)}, mask_suffix=".jpg")
    with pytest.raises(UnetlabError, match=r"0\.jpg is a JPEG: lossy compression changes mask values"):
        build_datasets(DataConfig(source=str(root)))


def test_masks_with_too_many_values_and_no_class_values_are_refused(tmp_path):
    ramp = (np.arange(100).reshape(10, 10)).astype(np.uint8)  # 100 distinct values: an image, not labels
    root = write_pairs(tmp_path / "ds", {"0": ramp, "1": ramp})
    with pytest.raises(
        UnetlabError, match="the masks hold 100 distinct values .* more than 64 classes; check that masks"
    ):
        build_datasets(DataConfig(source=str(root)))
    train, _, info = build_datasets(DataConfig(source=str(root), class_values=list(range(100)), val_fraction=0))
    assert info.num_classes == 100


def test_small_images_are_reflect_padded_to_the_patch(tmp_path):
    root = folder(tmp_path, n=2, size=(10, 13))
    train, _, _ = build_datasets(DataConfig(source=str(root), val_fraction=0, patch_size=32, foreground_fraction=0))
    original = train.load(0)[1]
    patch = train[0]["mask"].numpy()
    assert patch.shape == (32, 32)
    found = any(np.array_equal(patch[y : y + 10, x : x + 13], original) for y in range(32 - 9) for x in range(32 - 12))
    assert found


def test_foreground_oversampling_puts_foreground_in_every_patch(tmp_path):
    masks = {str(i): box_mask(64, 64, (50, 50, 53, 53), 255) for i in range(2)}
    root = write_pairs(tmp_path / "ds", masks)
    base = {"source": str(root), "val_fraction": 0, "patch_size": 16, "patches_per_image": 20}
    always = build_datasets(DataConfig(foreground_fraction=1, **base))[0]
    never = build_datasets(DataConfig(foreground_fraction=0, **base))[0]
    assert all(always[i]["mask"].any() for i in range(len(always)))
    assert sum(bool(never[i]["mask"].any()) for i in range(len(never))) < len(never) / 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda root: (root / "masks" / "2.png").unlink(), "2.png in .* has no mask"),
        (lambda root: (root / "masks" / "1.png").write_bytes(b"junk"), "1.png could not be read"),
        (lambda root: write_image(root / "masks" / "0.png", np.zeros((5, 5), np.uint8)), "0.png is 5 x 5 px but"),
    ],
)
def test_folder_problems_name_the_file_and_point_to_data_check(tmp_path, change, message):
    root = folder(tmp_path)
    change(root)
    with pytest.raises(UnetlabError, match=f"{message}.*unetlab data check"):
        build_datasets(DataConfig(source=str(root)))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"class_values": [0]}, "0.png has values 255 outside the classes 0"),
        ({"class_values": [0, 128]}, r"class value 128 occurs in no mask \(the masks hold 0, 255\)"),
        ({"class_values": [0, 0, 255]}, "class_values lists 0 more than once"),
        ({"class_values": [0, 255], "ignore_values": [255]}, "255 is in class_values and in ignore_values"),
        ({"class_names": ["a", "b", "c"]}, "class_names has 3 names for 2 classes"),
        ({"ignore_values": ["void"]}, "ignore value 'void' names no class"),
        ({"mean": [0.1, 0.2]}, "mean has 2 values but the images have 1 channel; give 1 value"),
        ({"val_fraction": 1.5}, r"val_fraction 1.5 is not valid: it must be in \[0, 1\)"),
        ({"val_list": "missing.txt"}, "val_list missing.txt not found"),
        ({"val_list": "."}, "val_list . is a folder; pass a text file"),
        ({"val_list": "empty.txt"}, "val_list .*empty.txt names no images"),
    ],
)
def test_bad_folder_options_raise_naming_the_option(tmp_path, options, message):
    root = folder(tmp_path)
    (root / "empty.txt").write_text("\n")
    with pytest.raises(UnetlabError, match=message):
        build_datasets(DataConfig(source=str(root), **options))


def test_bad_sources_raise_with_the_choices(tmp_path):
    with pytest.raises(
        UnetlabError, match="source 'synthetic-dots' is unknown; use synthetic-cells or synthetic-shapes"
    ):
        build_datasets(DataConfig(source="synthetic-dots"))
    with pytest.raises(UnetlabError, match="not found"):
        build_datasets(DataConfig(source=str(tmp_path / "nowhere")))
    with pytest.raises(UnetlabError, match="only the value"):
        empty = write_pairs(tmp_path / "e", {"0": np.zeros((4, 4), np.uint8), "1": np.zeros((4, 4), np.uint8)})
        build_datasets(DataConfig(source=str(empty)))


@pytest.mark.skipif(not ISBI.is_dir(), reason="ISBI 2012 data not in ../shared")
def test_isbi_folder_builds_with_binary_classes():
    train, val, info = build_datasets(DataConfig(source=str(ISBI), patch_size=256, cache=False))
    assert (len(train), len(val), info.in_channels, info.class_values) == (24, 6, 1, [0, 255])
    item = train[0]
    assert item["image"].shape == (1, 256, 256) and set(item["mask"].unique().tolist()) <= {0, 1}
