"""DataInfo: image normalisation, channel conversion and the mask value <-> class index mapping."""

import numpy as np
import pytest

from unetlab import UnetlabError
from unetlab.data.info import IGNORE_INDEX, DataInfo, match_channels


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
    with pytest.raises(UnetlabError, match="scan.tif has 2 channels but the model takes 3"):
        match_channels(np.zeros((4, 5, 2), np.float32), 3, "scan.tif")
