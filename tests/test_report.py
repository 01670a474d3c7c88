"""`unetlab eval`: scores of a checkpoint on a labelled folder, against scikit-learn on the same predictions."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from unetlab import create_model
from unetlab.cli import main
from unetlab.data.info import DataInfo
from unetlab.data.synthetic import generate
from unetlab.inference.predictor import Predictor
from unetlab.training.checkpoint import save_checkpoint

sklearn_metrics = pytest.importorskip("sklearn.metrics")


@pytest.fixture
def labelled(tmp_path):
    """A checkpoint of a binary model with masks 0/255, and a folder of 3 labelled images of different sizes."""
    model = create_model("unet", base_channels=4, depth=2, num_classes=1)
    ckpt = tmp_path / "model.pt"
    info = DataInfo(1, [0, 255], ["background", "cell"])
    save_checkpoint(ckpt, model, data=info, threshold=0.5)
    # an untrained model's probabilities sit near 0.5: cut at their median so that both classes are predicted
    probs = Predictor(ckpt)((generate("cells", 0, size=40)[0][0] * 255).astype(np.uint8)).probs
    save_checkpoint(ckpt, model, data=info, threshold=float(np.median(probs)))
    for name in ("images", "masks"):
        (tmp_path / "data" / name).mkdir(parents=True)
    for i, size in enumerate((40, 48, 56)):
        image, mask = generate("cells", i, size=size)
        Image.fromarray((image[0] * 255).astype(np.uint8)).save(tmp_path / "data" / "images" / f"c{i}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(tmp_path / "data" / "masks" / f"c{i}.png")
    return ckpt, tmp_path / "data"


def test_eval_scores_equal_sklearn_on_the_same_predictions(labelled, tmp_path, capsys):
    ckpt, data = labelled
    assert main(["eval", str(ckpt), str(data), "--out", str(tmp_path / "report")]) == 0
    assert "foreground mean" in capsys.readouterr().out
    predictor = Predictor(ckpt)
    preds, truths, per_image = [], [], []
    for i in range(3):
        pred = predictor(data / "images" / f"c{i}.png").classes.ravel()
        truth = (np.asarray(Image.open(data / "masks" / f"c{i}.png")) == 255).ravel()
        preds.append(pred)
        truths.append(truth)
        per_image.append(sklearn_metrics.f1_score(truth, pred, zero_division=np.nan))
    summary = json.loads((tmp_path / "report" / "report.json").read_text())
    truth, pred = np.concatenate(truths), np.concatenate(preds)
    assert summary["images"] == 3
    assert summary["dice"] == pytest.approx(sklearn_metrics.f1_score(truth, pred), abs=1e-12)
    assert summary["iou/background"] == pytest.approx(sklearn_metrics.jaccard_score(truth, pred, pos_label=0))
    assert summary["precision"] == pytest.approx(sklearn_metrics.precision_score(truth, pred))
    assert 0 < pred.mean() < 1  # both classes predicted: every score is defined
    with open(tmp_path / "report" / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == ["c0.png", "c1.png", "c2.png"]
    for row, expected in zip(rows, per_image):
        assert (float(row["dice"]) if row["dice"] else np.nan) == pytest.approx(expected, nan_ok=True)


@pytest.mark.parametrize(("damage", "message"), [
    (lambda d: (d / "masks" / "c1.png").unlink(), "c1.png in .*images has no mask"),
    (lambda d: Image.fromarray(np.full((48, 48), 7, np.uint8)).save(d / "masks" / "c1.png"),
     "c1.png: mask values 7 are not among the dataset's classes"),
    (lambda d: Image.fromarray(np.zeros((10, 10), np.uint8)).save(d / "masks" / "c1.png"),
     "c1.png is 10 x 10 px but its image"),
])  # fmt: skip
def test_eval_bad_folder_exits_2_naming_the_file(labelled, capsys, damage, message):
    ckpt, data = labelled
    damage(data)
    assert main(["eval", str(ckpt), str(data)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert __import__("re").search(message, err), err


def test_eval_split_must_exist(labelled, capsys):
    ckpt, data = labelled
    assert main(["eval", str(ckpt), str(data), "--split", "test"]) == 2
    assert "--split test" in capsys.readouterr().err


def test_eval_skips_a_test_split_without_masks_for_val(labelled, tmp_path, capsys):
    ckpt, data = labelled
    split = tmp_path / "split"
    split.mkdir()
    data.rename(split / "val")
    (split / "test" / "images").mkdir(parents=True)  # images only: nothing to score against
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(split / "test" / "images" / "t.png")
    assert main(["eval", str(ckpt), str(split)]) == 0
    assert f"3 images of {split / 'val' / 'images'}" in capsys.readouterr().out


def test_eval_ignore_values_leave_pixels_out_of_the_scores(labelled, tmp_path, capsys):
    ckpt, data = labelled
    mask = np.asarray(Image.open(data / "masks" / "c0.png")).copy()
    mask[:20] = 128  # a "difficult" region: unscored
    Image.fromarray(mask).save(data / "masks" / "c0.png")
    assert main(["eval", str(ckpt), str(data)]) == 2
    assert "values 128 are not among" in capsys.readouterr().err
    assert main(["eval", str(ckpt), str(data), "--ignore-values", "128", "--out", str(tmp_path / "r")]) == 0
    pred = Predictor(ckpt)(data / "images" / "c0.png").classes[20:].ravel()
    with open(tmp_path / "r" / "report.csv") as f:
        row = next(csv.DictReader(f))
    expected = sklearn_metrics.f1_score(mask[20:].ravel() == 255, pred)  # the rows below the region only
    assert float(row["dice"]) == pytest.approx(expected, abs=1e-12)
    assert main(["eval", str(ckpt), str(data), "--ignore-values", "255"]) == 2
    assert "--ignore-values 255 is class 1 of the checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("out", ["c0.png", "c0.png/sub"])
def test_eval_out_that_is_or_lies_under_a_file_is_refused_before_predicting(labelled, capsys, out):
    ckpt, data = labelled
    target = data / "images" / out
    assert main(["eval", str(ckpt), str(data), "--out", str(target)]) == 2
    captured = capsys.readouterr()
    assert f"--out {target} " in captured.err and "Traceback" not in captured.err
    assert "eval:" not in captured.out  # refused before any prediction
