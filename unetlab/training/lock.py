"""The run folder's lock: one training at a time in a run folder, for the whole life of the run.

`RUN/.lock` is created exclusively (O_EXCL) and holds the owner's process id, host and start time. A second training
into the same folder, or a `--resume` of it while it runs, gets an error that names the live run. A lock whose
process is gone (killed, the machine restarted) is stale and taken over; on another host the process cannot be
checked, so the lock is respected and the error says which host holds it.
"""

import json
import os
import socket
import time
from pathlib import Path

from unetlab.errors import UnetlabError

LOCK_NAME = ".lock"


class RunLock:
    """The lock of `run_dir`, taken by `acquire()` and given back by `release()` (also as a context manager)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.held = False

    def acquire(self) -> "RunLock":
        """Take the lock, or raise a `UnetlabError` naming the live run that holds it."""
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):  # a stale lock is removed once, then taken
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self.owner()
                if owner is not None and _alive(owner):
                    raise UnetlabError(in_use(self.path.parent, owner)) from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise UnetlabError(f"{self.path} could not be taken; another training may be starting in {self.path.parent}")

    def owner(self) -> dict | None:
        """The holder's {pid, host, started}, or None for a lock that cannot be read (taken as stale)."""
        try:
            owner = json.loads(self.path.read_text())
            return owner if isinstance(owner, dict) and isinstance(owner.get("pid"), int) else None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def live_owner(run_dir: str | Path) -> dict | None:
    """The live run holding `run_dir`'s lock, or None."""
    owner = RunLock(run_dir).owner() if (Path(run_dir) / LOCK_NAME).exists() else None
    return owner if owner is not None and _alive(owner) else None


def _alive(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname():
        return True  # another machine's process cannot be checked from here: respect its lock
    try:
        os.kill(owner["pid"], 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user
    return True


def in_use(run_dir: Path, owner: dict) -> str:
    where = "" if owner.get("host") == socket.gethostname() else f" on host {owner.get('host')}"
    return (
        f"{run_dir} is in use by another training (process {owner['pid']}{where}, started {owner.get('started')}); "
        "wait for it to end, or choose another run folder"
    )
