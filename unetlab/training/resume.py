"""Resuming a run: it keeps its own settings, and only the settings declared `resumable` may change.

The same rule holds from Python and from the command line: `train(cfg, resume=RUN)` checks `cfg` against the run's
saved settings (`check_resume`), and `unetlab train --resume RUN --epochs 150` layers the flags on the saved settings
(`resume_config`) before it calls `train`. Resumable settings are those whose change cannot make the weights
meaningless: the total of epochs, where the dataset now lies, how often to validate, the device, the progress bar,
... (`Spec.resumable` in `TrainConfig` and `DataConfig`).
"""

from pathlib import Path

from unetlab.settings import SettingError, spec_at
from unetlab.training.config import TrainConfig, absolute_paths, merge


def resumable_settings() -> list[str]:
    """The paths of the settings a resumed run may change, e.g. "epochs", "data.source"."""
    return sorted(p for p in _paths(TrainConfig().to_dict()) if spec_at(TrainConfig, p).resumable)


def check_resume(cfg: TrainConfig, saved: dict) -> None:
    """Raise a `SettingError` naming every setting of `cfg` that differs from the run's `saved` ones and may not
    change on resume (`out` left unset counts as the run's own folder)."""
    run = TrainConfig.from_dict(saved, "the run's settings").to_dict()  # settings added since: their defaults
    new = cfg.to_dict()
    if new["out"] is None:
        new["out"] = run["out"]
    paths = set(_paths(run)) | set(_paths(new))
    changed = sorted(p for p in paths if _at(run, p) != _at(new, p) and not _resumable(p))
    if changed:
        allowed = resumable_settings()
        raise SettingError(
            lambda n: (
                f"a resumed run keeps its settings; {', '.join(map(n, changed))} cannot change on resume "
                f"(only {', '.join(map(n, allowed))} can); start a new run for other settings"
            ),
            changed + allowed,
        )


def resume_config(saved: dict, overrides: dict, folder: Path | None = None) -> TrainConfig:
    """The run's `saved` settings with `overrides` (nested, e.g. {"epochs": 150}) layered on, checked by
    `check_resume`; relative paths in `overrides` start at `folder` (default: the working folder)."""
    if overrides.get("out") is not None:
        raise SettingError(
            lambda n: (
                f"{n('out')} cannot be combined with resuming: a resumed run continues in its own folder; leave "
                f"{n('out')} out, or start a new run there without resuming"
            ),
            ["out"],
        )
    merged = merge(saved, absolute_paths(overrides, folder or Path.cwd()))
    cfg = TrainConfig.from_dict(merged, "the run's settings + the changes")
    check_resume(cfg, saved)
    return cfg


def _paths(values: dict, prefix: str = "") -> list[str]:
    """The leaf paths of nested settings: "epochs", "data.patch_size", "model_kwargs.depth", ..."""
    paths = []
    for key, value in values.items():
        paths += _paths(value, f"{prefix}{key}.") if isinstance(value, dict) else [prefix + key]
    return paths


def _at(values: dict, path: str):
    for key in path.split("."):
        values = values.get(key) if isinstance(values, dict) else None
    return values


def _resumable(path: str) -> bool:
    spec = spec_at(TrainConfig, path)
    return spec is not None and spec.resumable
