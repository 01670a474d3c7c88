"""DataInfo: image normalisation, channel conversion and the mask value <-> class index mapping."""

import numpy as np
import pytest
from folder_data import box_mask, write_pairs

from unetlab import UnetlabError
from unetlab.data import DataConfig, build_datasets
from unetlab.data.folders import canonical, scan_pairs
from unetlab.data.info import IGNORE_INDEX, DataInfo, match_channels, unit_range
from unetlab.data.io import write_image


def test_mask_to_classes_and_back_for_grey_values_with_ignore():
    info = DataInfo(in_channels=1, class_values=[0, 128, 255], ignore_values=[7])
    mask = np.array([[0, 128], [255, 7]], dtype=np.uint8)
    classes = info.mask_to_classes(mask)
    assert classes.tolist() == [[0, 1], [2, IGNORE_INDEX]] and classes.dtype == np.int64
    assert info.classes_to_mask(np.array([[0, 1], [2, 0]])).tolist() == [[0, 128], [255, 0]]


def test_mask_to_classes_for_colour_masks():
    info = DataInfo(in_channels=3, class_values=[[0, 0, 0], [255, 0, 0], [0, 0, 255]], ignore_values=[[9, 9, 9]])
    mask = np.array([[[0, 0, 0], [255, 0, 0]], [[0, 0, 255], [9, 9, 9]]], dtype=np.uint8)
    assert info.mask_to_classes(mask).tolist() == [[0, 1], [2, IGNORE_INDEX]]
    assert info.classes_to_mask(np.array([[2]])).tolist() == [[[0, 0, 255]]]


def test_mask_with_unknown_value_names_the_file_and_values():
    info = DataInfo(in_channels=1, class_values=[0, 255])
    with pytest.raises(UnetlabError, match=r"m\.png: mask values 3, 9 are not among the dataset's classes \(0, 255\)"):
        info.mask_to_classes(np.array([[0, 3], [9, 255]]), source="m.png")


def test_classes_to_mask_uses_16_bit_when_values_need_it():
    info = DataInfo(in_channels=1, class_values=[0, 1000])
    assert info.classes_to_mask(np.array([[1]])).dtype == np.uint16


def test_image_to_tensor_scales_by_bit_depth_and_normalises():
    info = DataInfo(in_channels=1, class_values=[0, 1], mean=[0.5], std=[0.25])
    x8 = info.image_to_tensor(np.full((2, 3), 255, np.uint8))
    x16 = info.image_to_tensor(np.full((2, 3), 65535, np.uint16))
    assert x8.shape == (1, 2, 3) and float(x8.max()) == float(x16.max()) == 2.0


def test_match_channels_converts_unambiguous_cases_and_refuses_others():
    grey = np.random.rand(4, 5, 1).astype(np.float32)
    assert match_channels(grey, 3).shape == (4, 5, 3)
    rgba = np.random.rand(4, 5, 4).astype(np.float32)
    assert match_channels(rgba, 3).shape == (4, 5, 3)
    np.testing.assert_allclose(match_channels(np.repeat(grey, 3, axis=2), 1), grey, rtol=1e-6)
    grey_alpha = np.concatenate([grey, np.ones_like(grey)], axis=2)  # (4, 5, 2): alpha is dropped for grey or RGB
    np.testing.assert_array_equal(match_channels(grey_alpha, 1), grey)
    np.testing.assert_array_equal(match_channels(grey_alpha, 3), np.repeat(grey, 3, axis=2))
    np.testing.assert_array_equal(match_channels(rgba, 3), rgba[..., :3])
    with pytest.raises(UnetlabError, match="scan.tif has 2 channels but the model takes 4"):
        match_channels(np.zeros((4, 5, 2), np.float32), 4, "scan.tif")
    with pytest.raises(UnetlabError, match="scan.tif has 5 channels but the model takes 3"):
        match_channels(np.zeros((4, 5, 5), np.float32), 3, "scan.tif")


def test_integer_images_in_the_16_bit_range_scale_like_uint16_and_others_are_refused():
    values = np.array([[0, 1000], [40000, 65535]])
    expected = unit_range(values.astype(np.uint16))
    for dtype in (np.int32, np.int64, np.uint32):
        np.testing.assert_array_equal(unit_range(values.astype(dtype)), expected)
    np.testing.assert_array_equal(
        unit_range(np.array([[0, 1000]], np.int16)), unit_range(np.array([[0, 1000]], np.uint16))
    )
    np.testing.assert_array_equal(unit_range(np.array([[0, 255]], np.uint8)), [[0.0, 1.0]])
    np.testing.assert_array_equal(unit_range(np.array([[False, True]])), [[0.0, 1.0]])
    with pytest.raises(UnetlabError, match="ct.tif is an image of int16 with values from -1000 to 3000; .* convert it"):
        unit_range(np.array([[-1000, 3000]], np.int16), "ct.tif")
    with pytest.raises(UnetlabError, match="wide.tif is an image of int32 with values from 0 to 70000"):
        unit_range(np.array([[0, 70000]], np.int32), "wide.tif")


def test_float_images_with_nan_or_inf_are_refused_naming_the_file():
    info = DataInfo(in_channels=1, class_values=[0, 1])
    for bad in (np.nan, np.inf):
        with pytest.raises(UnetlabError, match="scan.tif has NaN or infinite pixels"):
            info.image_to_tensor(np.array([[0.5, bad]], np.float32), "scan.tif")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"class_values": [0, 255.7]}, r"class_values entry 255\.7 is not a mask value; .* whole numbers"),
        ({"class_values": [0, float("nan")]}, "class_values entry nan is not a mask value"),
        ({"class_values": [0, "x"]}, "class_values entry 'x' is not a mask value"),
        ({"class_values": [False, True]}, "class_values entry False is not a mask value"),
        ({"class_values": [[0, 0, 0], [255, 0]]}, r"class_values entry \[255, 0\] is not a colour"),
        ({"class_values": [[0, 0, 0], [256, 0, 0]]}, r"\[256, 0, 0\] is not a colour; .* from 0 to 255"),
        ({"class_values": [0, [255, 0, 0]]}, "mix grey values and"),
        ({"class_values": []}, "class_values is empty"),
        ({"class_values": 255}, "class_values=255 is not valid; give a list"),
        ({"ignore_values": [[1, 2]]}, r"ignore_values entry \[1, 2\] is not a colour"),
        ({"ignore_values": [0.5]}, r"ignore_values entry 0\.5 is not a mask value"),
        ({"in_channels": 0}, "in_channels=0 is not valid"),
        ({"class_names": ["a"]}, "give one name per class value"),
        ({"mean": [float("nan")]}, r"mean=\[nan\] is not a valid normalisation; give 1 finite numbers"),
        ({"std": [0.0]}, r"std=\[0.0\] is not a valid normalisation; give 1 positive numbers"),
        ({"std": [1.0, 1.0]}, "give 1 positive numbers, one per channel"),
        ({"palette": [0, 0]}, "palette is not a PNG palette"),
        ({"palette": [0, 0, 300]}, "palette is not a PNG palette"),
    ],
)
def test_data_info_refuses_values_no_dataset_gives(fields, message):
    with pytest.raises(UnetlabError, match=message):
        DataInfo(**{"in_channels": 1, "class_values": [0, 255], **fields})


def test_data_info_keeps_whole_numbers_of_any_type_as_plain_ints():
    info = DataInfo(1, [np.uint8(0), 255.0, np.int64(3)], ignore_values=[np.float32(7.0)])
    assert info.class_values == [0, 255, 3] and info.ignore_values == [7]
    assert all(type(v) is int for v in info.class_values + info.ignore_values)
    colours = DataInfo(3, [(0, 0, 0), np.array([255, 0, 0], np.uint8)])
    assert colours.class_values == [[0, 0, 0], [255, 0, 0]] and colours.is_colour_mask


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (np.array([[0.0, 0.5]]), "not whole numbers, such as 0.5"),
        (np.array([[255.0, -3.7]]), "such as -3.7"),
        (np.array([[0.0, np.nan]]), "NaN or infinite values"),
        (np.array([[0, 2**63]], np.uint64), "values from 0 to 9223372036854775808"),
        (np.array([[0, 1 + 1j]]), "values of type complex128"),
    ],
)
def test_mask_to_classes_refuses_values_that_are_not_class_values(mask, message):
    info = DataInfo(in_channels=1, class_values=[0, 255])
    with pytest.raises(UnetlabError, match=f"^m.tif (has|holds) .*{message}"):
        info.mask_to_classes(mask, source="m.tif")
    assert info.mask_to_classes(np.array([[255.0, 0.0]])).tolist() == [[1, 0]]


def test_a_float_mask_in_a_dataset_is_a_problem_naming_the_file(tmp_path):
    root = write_pairs(tmp_path, {"0": box_mask(8, 8, (1, 1, 5, 5)), "1": box_mask(8, 8, (2, 2, 6, 6))})
    write_image(root / "masks" / "1.tif", box_mask(8, 8, (2, 2, 6, 6)).astype(np.float32) / 2)  # 127.5
    (root / "masks" / "1.png").unlink()
    pairs = [
        (root / "images" / "0.png", root / "masks" / "0.png"),
        (root / "images" / "1.png", root / "masks" / "1.tif"),
    ]
    scan = scan_pairs(pairs)
    assert [r.mask.name for r in scan.records] == ["0.png"]
    assert len(scan.problems) == 1 and scan.problems[0].startswith(f"{root / 'masks' / '1.tif'} has values that")


@pytest.mark.parametrize("value", [255.7, -0.5, float("inf"), "x", [1, 2], True])
def test_a_class_value_that_is_not_a_whole_number_is_refused_never_truncated(tmp_path, value):
    root = write_pairs(tmp_path, {"0": box_mask(8, 8, (1, 1, 5, 5)), "1": box_mask(8, 8, (2, 2, 6, 6))})
    with pytest.raises(UnetlabError, match=r"class_values/ignore_values entry .* is not a (mask value|colour)"):
        canonical(value, colour=False)
    with pytest.raises(UnetlabError, match="class_values"):  # 255.7 trained as class 255 before
        build_datasets(DataConfig(source=str(root), class_values=[0, value]))
    assert canonical(255.0, colour=True) == (255, 255, 255) and canonical([0, 0, 255], colour=True) == (0, 0, 255)


@pytest.mark.parametrize("damaged", ["image", "mask"])
def test_a_tiny_tiff_in_a_dataset_is_a_problem_naming_it(tmp_path, damaged):
    root = write_pairs(tmp_path, {"0": box_mask(8, 8, (1, 1, 5, 5)), "1": box_mask(8, 8, (2, 2, 6, 6))})
    folder = root / ("images" if damaged == "image" else "masks")
    (folder / "1.png").unlink()
    (folder / "1.tif").write_bytes(b"II*\0\x08\0\0\0")  # an IndexError in `data check` and `train` before
    pairs = [(root / "images" / "0.png", root / "masks" / "0.png")]
    pairs.append(
        (folder / "1.tif", root / "masks" / "1.png")
        if damaged == "image"
        else (root / "images" / "1.png", folder / "1.tif")
    )
    scan = scan_pairs(pairs)
    assert len(scan.records) == 1 and len(scan.problems) == 1
    assert scan.problems[0].startswith(f"{folder / '1.tif'} could not be read as an image")
