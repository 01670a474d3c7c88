"""Checkpoint files: everything needed to rebuild a model, predict with it, and continue training.

A checkpoint is a dict of plain types and tensors, written atomically and read with
`torch.load(..., weights_only=True)`:

    format          "unetlab-checkpoint"
    format_version  FORMAT_VERSION (a newer file than this unetlab reads is refused with a clear error)
    unetlab_version the writer's version, for information
    model           {"name": registry name, "kwargs": create_model keyword arguments}
    state_dict      the model's weights
    data            DataInfo.to_dict(): channels, class values and names, normalisation (or None)
    threshold       decision threshold on the sigmoid for binary (1-logit) models, or None
    training        the trainer's resumable state (optimizer, scheduler, scaler, epoch, step, RNG, config, ...)
                    or None for a weights-only checkpoint

`load_checkpoint` checks everything before a model is built from it: an edited or damaged file, or one whose
training diverged (NaN weights or statistics, which would predict all-background masks), gets a one-line error
naming the file and the entry at fault. A full disk while saving leaves the previous file and raises the `OSError`.
"""

import numbers
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from unetlab import __version__
from unetlab.data.info import DataInfo
from unetlab.errors import UnetlabError
from unetlab.files import atomic_write, save_reporting_os_errors
from unetlab.models import create_model
from unetlab.models.blocks import state_dict_mismatch

FORMAT = "unetlab-checkpoint"
FORMAT_VERSION = 2  # 2: DataInfo may carry a palette (version 1 files read as before)
# kwargs that name files on the machine that trained the model; the weights are in the checkpoint already
MACHINE_KWARGS = ("encoder_weights",)


@dataclass
class Checkpoint:
    """A checkpoint file's contents (see the module docstring); `build_model` gives the trained model."""

    model_name: str
    model_kwargs: dict
    state_dict: dict
    data: DataInfo | None
    threshold: float | None
    training: dict | None
    path: Path | None = None

    def build_model(self, device: str | torch.device = "cpu") -> nn.Module:
        """The model with its trained weights, in eval mode, on `device`."""
        model = create_model(self.model_name, **self.model_kwargs)
        mismatch = state_dict_mismatch(model.state_dict(), self.state_dict)
        if mismatch:
            raise UnetlabError(
                f"checkpoint {self.path}: its weights do not fit the {self.model_name} {self.model_kwargs} it records "
                f"({mismatch}); the file was edited or damaged, so use the checkpoint as training wrote it"
            )
        model.load_state_dict(self.state_dict)
        return model.to(device).eval()


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    data: DataInfo | None = None,
    threshold: float | None = None,
    training: dict | None = None,
) -> None:
    """Write `model` (built by `create_model`) and its context to `path`, atomically.

    The file is written to a temporary name in the same folder and renamed, so a crash never leaves a broken file
    where a good one was.
    """
    model = _unwrap(model)
    spec = getattr(model, "spec", None)
    if spec is None:
        raise UnetlabError("only models built with unetlab.create_model can be checkpointed (they record their name)")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "unetlab_version": __version__,
        "model": {
            "name": spec["name"],
            "kwargs": {k: v for k, v in spec["kwargs"].items() if k not in MACHINE_KWARGS},
        },
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "data": data.to_dict() if data is not None else None,
        "threshold": threshold,
        "training": training,
    }
    atomic_save(payload, path)


def atomic_save(obj, path: str | Path) -> None:
    """`torch.save` to a temporary file beside `path`, then rename it over `path` (`unetlab.files.atomic_write`).

    A failed write (a full disk, a quota, a failing drive) leaves the file that was at `path` and no temporary file,
    and raises the `OSError` itself (torch wraps it in a `RuntimeError`), which the CLI prints as one line.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, option="checkpoint") as tmp, open(tmp, "wb") as f:
        save_reporting_os_errors(lambda writer: torch.save(obj, writer), f)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a unetlab checkpoint and check everything in it before anything is built from it.

    Raises:
        UnetlabError: naming the file, when it is missing or unreadable, is not a unetlab checkpoint, was written
            by a newer format version than this unetlab reads, or is damaged: an entry missing or of the wrong type,
            model options that are not valid or ask for a model past `MAX_MODEL_BYTES` (refused before it is
            built), weights that do not fit the model, NaN or infinite weights or normalisation (named by their
            first key), or a threshold that is not a probability.
    """
    path = Path(path)
    payload = _read_payload(path, map_location)
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UnetlabError(
            f"checkpoint {path} has format version {version}, newer than this unetlab ({__version__}) reads "
            f"(up to {FORMAT_VERSION}); upgrade unetlab"
        )
    data, threshold = payload.get("data"), payload.get("threshold")
    try:
        model, state_dict = payload["model"], payload["state_dict"]
        if not isinstance(model["name"], str) or not isinstance(state_dict, dict):
            raise TypeError("model name or state_dict of the wrong type")
        kwargs = dict(model["kwargs"])
        if not all(isinstance(k, str) for k in kwargs) or not all(torch.is_tensor(v) for v in state_dict.values()):
            raise TypeError("model kwargs or state_dict entries of the wrong type")
        if threshold is not None and not _probability(threshold):
            raise ValueError(f"threshold {threshold!r} is not a probability in [0, 1]")
        checkpoint = Checkpoint(
            model_name=model["name"],
            model_kwargs=kwargs,
            state_dict=state_dict,
            data=DataInfo.from_dict(data) if data is not None else None,
            threshold=None if threshold is None else float(threshold),
            training=payload.get("training"),
            path=path,
        )
    except (KeyError, TypeError, ValueError) as exc:  # an entry missing or of the wrong type: edited or damaged
        raise _damaged(path, exc) from None
    _check_model(checkpoint)
    bad = next((k for k, v in state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise UnetlabError(
            f"checkpoint {path} holds NaN or infinite weights, first in {bad!r}: its training diverged or the file "
            "is damaged, and it would predict nothing; use an earlier checkpoint, or train again with a lower "
            "learning rate"
        )
    return checkpoint


def is_checkpoint(path: str | Path) -> bool:
    """True when `path` is a file with the unetlab checkpoint marker, whatever else is in it (nothing is checked)."""
    try:
        _read_payload(Path(path), "cpu")
    except UnetlabError:
        return False
    return True


def _read_payload(path: Path, map_location) -> dict:
    """The dict in the checkpoint file `path`, after checking that it is one (its marker), and nothing more."""
    if path.is_dir():
        example = path / "best.pt" if path.name == "checkpoints" else path / "checkpoints" / "best.pt"
        raise UnetlabError(f"{path} is a folder; pass a checkpoint file such as {example}")
    if not path.is_file():
        raise UnetlabError(f"checkpoint {path} not found; pass the .pt file that `unetlab train` wrote")
    exported = _exported_format(path)
    if exported:
        raise UnetlabError(
            f"{path} is an exported {exported} model, for deployment; unetlab reads the training checkpoint "
            "(RUN/checkpoints/best.pt) that it was exported from"
        )
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a corrupt or foreign file can raise many types
        raise UnetlabError(
            f"checkpoint {path} could not be read ({type(exc).__name__}); is it a unetlab .pt file?"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UnetlabError(
            f"{path} is not a unetlab checkpoint (no '{FORMAT}' marker); pass a file written by `unetlab train`"
        )
    return payload


def _check_model(checkpoint: Checkpoint) -> None:
    """Refuse model options that are not valid or ask for too large a model, and weights that do not fit the
    model, on the meta device: nothing is allocated for a model that will not be built."""
    path, name, kwargs = checkpoint.path, checkpoint.model_name, checkpoint.model_kwargs
    machine = sorted(set(kwargs) & set(MACHINE_KWARGS))
    if machine:  # `save_checkpoint` drops them: a file of the machine that reads the checkpoint would be loaded
        raise _damaged(path, f"it names {', '.join(machine)}, a file that training read")
    try:
        with torch.device("meta"):  # shapes only: `create_model` refuses a model too large to build for real
            model = create_model(name, **kwargs)
    except (UnetlabError, TypeError, ValueError, RuntimeError, OverflowError) as exc:
        raise _damaged(path, exc) from None
    mismatch = state_dict_mismatch(model.state_dict(), checkpoint.state_dict)
    if mismatch:
        raise UnetlabError(
            f"checkpoint {path}: its weights do not fit the {name} {kwargs} it records ({mismatch}); the file was "
            "edited or damaged, so use the checkpoint as training wrote it"
        )


def _probability(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 <= value <= 1.0


def _damaged(path: Path, reason) -> UnetlabError:
    if isinstance(reason, Exception) and not isinstance(reason, UnetlabError):
        reason = f"{type(reason).__name__}: {reason}"
    return UnetlabError(f"checkpoint {path} is damaged ({reason}); use a file as `unetlab train` wrote it")


def load_training_checkpoint(run_or_path: str | Path) -> Checkpoint:
    """The resumable checkpoint of a run: `RUN/checkpoints/last.pt` for a run folder, or the file named."""
    path = Path(run_or_path)
    path = path / "checkpoints" / "last.pt" if path.is_dir() else path
    ckpt = load_checkpoint(path)
    if not ckpt.training or "optimizer" not in ckpt.training:
        raise UnetlabError(f"{path} holds weights only, not a resumable training state; resume from last.pt")
    return ckpt


def _exported_format(path: Path) -> str | None:
    """ "ONNX" or "TorchScript" when `path` is such an export (as `unetlab export` writes), else None."""
    if path.suffix.lower() == ".onnx":
        return "ONNX"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(name.split("/", 1)[-1].startswith("code/") for name in archive.namelist()):
                return "TorchScript"  # torch.jit.save stores the model's code; torch.save does not
    return None


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a DistributedDataParallel or torch.compile wrapper."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)
