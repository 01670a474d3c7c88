"""`unetlab predict`: inputs from files, folders and globs; masks in the original values; probabilities, overlays;
one-line errors, and outputs kept when one file fails."""

import argparse
import errno
import os
import re
import resource
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetlab import UnetlabError, create_model
from unetlab.cli import main
from unetlab.data.info import DataInfo
from unetlab.data.io import read_image, read_mask, write_image
from unetlab.inference.outputs import collect_inputs, output_names, overlay, write_prediction
from unetlab.inference.predictor import Predictor
from unetlab.training.checkpoint import save_checkpoint


@pytest.fixture
def images(tmp_path):
    """A folder with an 8-bit grey, a 16-bit grey and a colour image of odd sizes."""
    folder = tmp_path / "images"
    rng = np.random.default_rng(0)
    write_image(folder / "a.png", rng.integers(0, 256, (37, 51), dtype=np.uint8))
    write_image(folder / "b.tif", rng.integers(0, 65536, (20, 9), dtype=np.uint16))
    write_image(folder / "c.png", rng.integers(0, 256, (3, 70, 3), dtype=np.uint8))
    return folder


def checkpoint(tmp_path, class_values, num_classes=1, name="unet"):
    model = create_model(name, base_channels=4, depth=2, in_channels=1, num_classes=num_classes)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, DataInfo(1, class_values), threshold=0.5 if num_classes == 1 else None)
    return path


def run(*argv) -> int:
    return main(["predict", *map(str, argv)])


@pytest.mark.parametrize("name", ["unet", "unet-classic"])
def test_predict_writes_masks_in_the_original_values(tmp_path, images, name):
    model = create_model(name, base_channels=4, depth=2, in_channels=1, num_classes=1)
    probs = Predictor(model, tile=64)(images / "a.png").probs[0]  # the bare model: the same scaling, no data info
    threshold = float(np.median(probs))  # half the pixels on each side: both values must appear
    save_checkpoint(tmp_path / "model.pt", model, DataInfo(1, [0, 255]), threshold=threshold)
    assert run(tmp_path / "model.pt", images, "--out", tmp_path / "out", "--tile", 64) == 0
    mask = read_mask(tmp_path / "out" / "a.png")
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    np.testing.assert_array_equal(mask, np.where(probs >= threshold, 255, 0))
    for stem, shape in [("b", (20, 9)), ("c", (3, 70))]:
        mask = read_mask(tmp_path / "out" / f"{stem}.png")
        assert mask.shape == shape and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}


def test_predict_mask_equals_the_python_api(tmp_path, images):
    ckpt = checkpoint(tmp_path, [3, 7, 9], num_classes=3)
    assert run(ckpt, images / "a.png", "--out", tmp_path / "out") == 0
    expected = Predictor(ckpt)(images / "a.png").mask
    assert np.array_equal(read_mask(tmp_path / "out" / "a.png"), expected)
    assert set(np.unique(expected)) <= {3, 7, 9}


def test_values_beyond_8_bits_are_written_as_tiff(tmp_path, images):
    ckpt = checkpoint(tmp_path, [0, 1000])
    assert run(ckpt, images / "b.tif", "--out", tmp_path / "out", "--threshold", 0.0) == 0
    mask = read_mask(tmp_path / "out" / "b.tif")
    assert mask.dtype == np.uint16 and (mask == 1000).all()


def test_probabilities_and_overlays(tmp_path, images):
    ckpt = checkpoint(tmp_path, [0, 255], num_classes=1)
    assert run(ckpt, images / "a.png", images / "c.png", "--out", tmp_path / "out", "--probs", "--overlay") == 0
    probs = read_image(tmp_path / "out" / "probs" / "a.tif")
    assert probs.shape == (37, 51) and probs.dtype == np.float32 and 0 <= probs.min() <= probs.max() <= 1
    assert read_image(tmp_path / "out" / "overlays" / "c.png").shape == (3, 70, 3)


def test_overlay_tints_classes_above_zero_only():
    image = np.full((2, 2), 100, dtype=np.uint16)  # flat: displayed as 0
    classes = np.array([[0, 1], [2, 0]])
    rgb = overlay(image, classes)
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[1, 1].tolist() == [0, 0, 0]
    assert rgb[0, 1, 0] > 0 and rgb[0, 1, 1] == 0 and rgb[1, 0, 1] > 0, "class 1 red, class 2 green"


def test_glob_and_duplicate_inputs(tmp_path, images):
    assert [p.name for p in collect_inputs([str(images / "*.png"), images / "a.png"])] == ["a.png", "c.png"]


def test_same_file_names_in_two_folders_keep_their_folders_under_out(tmp_path, images):
    write_image(tmp_path / "other" / "a.png", np.zeros((4, 4), dtype=np.uint8))
    inputs = [images / "a.png", images / "c.png", tmp_path / "other" / "a.png"]
    assert output_names(inputs) == ["images/a", "images/c", "other/a"]
    for name in ("a.png", "a.tif", "a_png.png"):  # a.png and a.tif become a_png and a_tif
        write_image(tmp_path / "clash" / name, np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(UnetlabError, match="a_png.png would both be written as a_png; rename one of them"):
        output_names(collect_inputs([tmp_path / "clash"]))
    out = tmp_path / "out"
    assert run(checkpoint(tmp_path, [0, 255]), str(tmp_path / "**" / "a.png"), "--out", out, "--probs") == 0
    assert read_mask(out / "other" / "a.png").shape == (4, 4) and read_mask(out / "images" / "a.png").shape == (37, 51)
    assert (out / "probs" / "other" / "a.tif").is_file()


def test_inputs_sharing_a_stem_get_distinct_outputs(tmp_path, images):
    write_image(images / "a.tif", np.zeros((6, 7), dtype=np.uint16))
    assert output_names(collect_inputs([images])) == ["a_png", "a_tif", "b", "c"]
    assert run(checkpoint(tmp_path, [0, 255]), images, "--out", tmp_path / "out") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_png.png", "a_tif.png", "b.png", "c.png"]
    assert read_mask(tmp_path / "out" / "a_tif.png").shape == (6, 7)


@pytest.mark.parametrize("extra", [[], ["--probs", "--overlay"]])
def test_outputs_that_would_overwrite_an_input_are_refused(tmp_path, images, capsys, extra):
    before = {p.name: p.read_bytes() for p in images.iterdir()}
    assert run(checkpoint(tmp_path, [0, 255]), images, "--out", images, *extra) == 2
    err = capsys.readouterr().err
    assert f"--out {images} would overwrite the input {images / 'a.png'} with a prediction; pass another" in err
    assert {p.name: p.read_bytes() for p in images.iterdir() if p.is_file()} == before
    overlays = tmp_path / "overlays"  # an input inside OUT/overlays/ would be overwritten by its overlay
    write_image(overlays / "a.png", np.zeros((4, 4), dtype=np.uint8))
    assert run(checkpoint(tmp_path, [0, 255]), overlays / "a.png", "--out", tmp_path, "--overlay") == 2


def test_multi_class_probabilities_are_planar_grey_channels(tmp_path, images):
    import tifffile

    assert run(checkpoint(tmp_path, [0, 1, 2], num_classes=3), images / "a.png", "--out", tmp_path, "--probs") == 0
    with tifffile.TiffFile(tmp_path / "probs" / "a.tif") as tiff:
        page, probs = tiff.pages[0], tiff.asarray()
    assert probs.shape == (3, 37, 51) and probs.dtype == np.float32
    assert page.photometric == tifffile.PHOTOMETRIC.MINISBLACK and page.planarconfig == tifffile.PLANARCONFIG.SEPARATE
    assert all(sample == tifffile.EXTRASAMPLE.UNSPECIFIED for sample in page.extrasamples), "no alpha channel"
    np.testing.assert_allclose(probs.sum(axis=0), 1, rtol=1e-5)


def test_amp_takes_the_train_vocabulary(tmp_path, images, capsys):
    ckpt = checkpoint(tmp_path, [0, 255])
    assert run(ckpt, images / "a.png", "--out", tmp_path / "out", "--amp", "none") == 0
    assert run(ckpt, images / "a.png", "--out", tmp_path / "out", "--amp", "fp16", "--device", "cpu") == 2
    assert "--amp fp16 needs a CUDA device" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(ckpt, images / "a.png", "--out", tmp_path / "out", "--no-amp")


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (["missing.png"], "input .*missing.png not found"),
        (["*.jpg"], "no image matches"),
        (["empty"], "folder .*empty holds no images"),
    ],
)
def test_bad_inputs_are_one_line_errors_with_exit_2(tmp_path, capsys, inputs, message):
    (tmp_path / "empty").mkdir()
    ckpt = checkpoint(tmp_path, [0, 255])
    assert run(ckpt, *[tmp_path / i for i in inputs], "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("unetlab predict: error: ")
    assert re.search(message, err)


def test_one_bad_file_keeps_the_other_outputs(tmp_path, images, capsys):
    (images / "broken.png").write_bytes(b"not a png")
    write_image(images / "five.tif", np.zeros((6, 6, 5), dtype=np.uint8))  # 5 channels cannot become 1
    ckpt = checkpoint(tmp_path, [0, 255])
    assert run(ckpt, images, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "broken.png could not be read" in err and "five.tif has 5 channels but the model takes 1" in err
    assert "2 of 5 images failed" in err and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "c.png"]


def test_images_past_pillows_pixel_limit_are_read(tmp_path, images, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # a 37 x 51 image is now a "decompression bomb" to Pillow
    ckpt = checkpoint(tmp_path, [0, 255])
    assert run(ckpt, images / "a.png", "--out", tmp_path / "out") == 0
    assert read_mask(tmp_path / "out" / "a.png").shape == (37, 51)
    assert Image.MAX_IMAGE_PIXELS == 100, "the limit is lifted only while unetlab opens a file"


def test_masks_come_back_as_palette_pngs_when_the_training_masks_were(tmp_path, images):
    model = create_model("unet", base_channels=4, depth=2, in_channels=1, num_classes=3)
    palette = [0, 0, 0, 255, 0, 0, 0, 0, 255]
    save_checkpoint(tmp_path / "p.pt", model, DataInfo(1, [0, 1, 2], palette=palette))
    assert run(tmp_path / "p.pt", images / "a.png", "--out", tmp_path / "out") == 0
    with Image.open(tmp_path / "out" / "a.png") as written:
        assert written.mode == "P" and written.getpalette()[:9] == palette
    np.testing.assert_array_equal(
        read_mask(tmp_path / "out" / "a.png"), Predictor(tmp_path / "p.pt")(images / "a.png").mask
    )


@pytest.mark.parametrize("out", ["a.png", "a.png/sub"])
def test_out_that_is_or_lies_under_a_file_is_refused_before_predicting(tmp_path, images, capsys, out):
    assert run(checkpoint(tmp_path, [0, 255]), images, "--out", images / out) == 2
    err = capsys.readouterr().err
    assert f"--out {images / out} " in err and "pass a folder" in err and "Traceback" not in err


@pytest.mark.parametrize("command", [["predict"], ["eval"], ["twin", "train"], ["twin", "check"], ["data", "check"]])
def test_help_states_each_default_once(command):
    from unetlab.cli import build_parser

    parser = build_parser()
    for name in command:  # down to the command's own parser
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    parser.format_help()
    helps = {a.dest: a.help for a in parser._actions if a.help}
    assert all(text.count("default") <= 1 for text in helps.values()), helps
    assert helps.get("batch_size", "(default: ").count("(default: ") == 1  # predict: 4, twin train: 8, ...
    assert "seed" not in helps or helps["seed"].endswith("(default: 0)")  # a zero is a default worth stating


def test_a_threshold_at_either_end_gets_a_note(tmp_path, images, capsys):
    assert run(checkpoint(tmp_path, [0, 255]), images / "a.png", "--out", tmp_path / "o", "--threshold", "0") == 0
    assert "note: threshold 0 marks every pixel as foreground" in capsys.readouterr().err
    assert read_mask(tmp_path / "o" / "a.png").min() == 255  # the note only: the prediction is as asked
    assert run(checkpoint(tmp_path, [0, 255]), images / "a.png", "--out", tmp_path / "p") == 0
    assert "note:" not in capsys.readouterr().err


def test_a_tiling_that_mostly_recomputes_gets_a_note(tmp_path, images, capsys):
    ckpt = checkpoint(tmp_path, [0, 255], name="unet-classic")
    assert run(ckpt, images / "b.tif", "--out", tmp_path / "o", "--tile", "10") == 0
    assert "window adds only 4 x 4 new px" in capsys.readouterr().err
    assert read_mask(tmp_path / "o" / "b.png").shape == (20, 9)


def test_a_full_disk_is_one_line_not_a_traceback(tmp_path, images, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "out" / "a.png"))

    monkeypatch.setattr("unetlab.inference.outputs.write_prediction", full)
    assert run(checkpoint(tmp_path, [0, 255]), images / "a.png", "--out", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert err == f"unetlab predict: error: [Errno 28] No space left on device: '{tmp_path / 'out' / 'a.png'}'\n"


def test_an_unexpected_os_error_keeps_its_traceback(tmp_path, images, monkeypatch):
    def bug(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", "/nowhere")

    monkeypatch.setattr("unetlab.inference.outputs.write_prediction", bug)
    with pytest.raises(FileNotFoundError):  # not the machine's refusal: maybe a bug, shown in full
        run(checkpoint(tmp_path, [0, 255]), images / "a.png", "--out", tmp_path / "out")


def test_existing_files_in_out_are_refused_before_predicting_unless_overwrite(tmp_path, images, capsys):
    out = tmp_path / "hand-made"
    for name in ("a.png", "b.png", "c.png", "probs/a.tif"):
        write_image(out / name, np.full((4, 4), 7, dtype=np.uint8))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    ckpt = checkpoint(tmp_path, [0, 255])
    assert run(ckpt, images, "--out", out, "--probs") == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1 and "Traceback" not in err and "predict:" not in captured.out, "refused before work"
    listed = f"{out / 'a.png'}, {out / 'probs' / 'a.tif'}, {out / 'b.png'}"  # in the order they would be written
    assert f"--out {out} holds 4 files that this run would replace ({listed}" in err
    assert ", ...); pass --overwrite to replace them, or pass another --out folder" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before, "nothing written"
    assert run(ckpt, images, "--out", out, "--probs", "--overwrite") == 0
    assert read_mask(out / "a.png").shape == (37, 51) and read_image(out / "probs" / "b.tif").shape == (20, 9)
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png", "probs"], "no temporary files"


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_a_symlink_planted_in_out_is_never_written_through(tmp_path, images, capsys, overwrite):
    (tmp_path / "precious.png").write_bytes(b"not to be touched")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").symlink_to(tmp_path / "precious.png")
    assert run(checkpoint(tmp_path, [0, 255]), images / "a.png", "--out", out, *overwrite) == (0 if overwrite else 2)
    assert (tmp_path / "precious.png").read_bytes() == b"not to be touched"
    if overwrite:  # the link itself is replaced by the mask
        assert not (out / "a.png").is_symlink() and read_mask(out / "a.png").shape == (37, 51)
    else:
        assert "holds 1 file that this run would replace" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["a.png", "probs"])
def test_special_files_and_symlinked_folders_in_out_are_refused_even_with_overwrite(tmp_path, images, capsys, where):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "elsewhere").mkdir()
    if where == "a.png":
        os.mkfifo(out / where)
    else:
        (out / where).symlink_to(tmp_path / "elsewhere")  # OUT/probs/ leading out of OUT
    ckpt = checkpoint(tmp_path, [0, 255])
    assert run(ckpt, images / "a.png", "--out", out, "--probs", "--overwrite") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out / where) in err and "pass another output folder" in err
    assert list((tmp_path / "elsewhere").iterdir()) == []
    assert stat.S_ISFIFO(os.lstat(out / where).st_mode) or (out / where).is_symlink()


@pytest.mark.parametrize(
    "content",
    [b"II*\0", b"II*\0\x08\0\0\0", b"MM\0*\0\0\0\x08", b"", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"],
    ids=["4-byte-tiff", "8-byte-tiff", "big-endian-tiff-header", "empty", "png-header-only"],
)
def test_a_tiny_or_truncated_file_is_reported_and_the_others_are_written(tmp_path, images, capsys, content):
    suffix = ".png" if content.startswith(b"\x89PNG") else ".tif"
    (images / f"x{suffix}").write_bytes(content)
    assert run(checkpoint(tmp_path, [0, 255]), images, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert f"{images / f'x{suffix}'} could not be read as an image" in err and "Traceback" not in err
    assert "1 of 4 images failed" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "c.png"]


def test_a_full_disk_while_writing_leaves_no_partial_file(tmp_path, images, capsys, monkeypatch):
    def full(path, array, palette=None):
        Path(path).write_bytes(b"half an image")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("unetlab.inference.outputs.write_image", full)
    assert run(checkpoint(tmp_path, [0, 255]), images / "a.png", "--out", tmp_path / "out") == 1
    assert capsys.readouterr().err == "unetlab predict: error: [Errno 28] No space left on device\n"
    assert list((tmp_path / "out").iterdir()) == []


def test_write_prediction_never_replaces_a_file_when_told_not_to(tmp_path):
    prediction = Predictor(create_model("unet", base_channels=4, depth=2, in_channels=1))(np.zeros((5, 6), np.uint8))
    write_prediction(tmp_path, "a", prediction, probs=True, overwrite=False)
    (tmp_path / "a.png").write_bytes(b"edited by hand since")
    with pytest.raises(UnetlabError, match=f"{tmp_path / 'a.png'} exists already; pass overwrite"):
        write_prediction(tmp_path, "a", prediction, probs=True, overwrite=False)
    assert (tmp_path / "a.png").read_bytes() == b"edited by hand since"
    assert write_prediction(tmp_path, "a", prediction, overwrite=True)[0] == tmp_path / "a.png"
    assert read_mask(tmp_path / "a.png").shape == (5, 6)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.png", "a.tif", "probs"], "no temporary files"


def test_a_write_the_kernel_refuses_is_an_os_error_with_its_reason(tmp_path):
    """tifffile writes through numpy's `tofile`, which reports a short write without its errno: a file-size limit
    (EFBIG here, ENOSPC on a full disk) must still come back as that errno, naming the file, with nothing left over."""
    prediction = Predictor(create_model("unet", base_channels=4, depth=2, in_channels=1))(np.zeros((64, 64), np.uint8))
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))  # the mask fits, the probabilities (32 KB) do not
    try:
        with pytest.raises(OSError) as caught:
            write_prediction(tmp_path, "a", prediction, probs=True)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert caught.value.errno == errno.EFBIG and caught.value.filename == str(tmp_path / "probs" / "a.tif")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.png", "probs"], "no partial or temporary file"


def test_max_image_gib_sets_every_readers_limit(tmp_path, images, capsys):
    from unetlab.data.io import DEFAULT_MAX_IMAGE_BYTES, max_image_bytes

    ckpt = checkpoint(tmp_path, [0, 255])
    assert run(ckpt, images / "a.png", "--out", tmp_path / "o", "--max-image-gib", "0.000001") == 2
    assert "raise the limit: --max-image-gib" in capsys.readouterr().err
    assert max_image_bytes() == int(0.000001 * 2**30)
    assert run(ckpt, images / "a.png", "--out", tmp_path / "p") == 0  # the default again for the next command
    assert max_image_bytes() == DEFAULT_MAX_IMAGE_BYTES
