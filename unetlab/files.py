"""Writing files safely: a new file appears whole or not at all, and nothing but a regular file is ever replaced.

- `check_destination` refuses a destination that exists and is not a regular file (a folder, a FIFO, a device
  node such as /dev/null, a socket, or a symlink to one of these), so that writing never replaces one.
- `atomic_write` hands out a temporary file beside the destination, then renames it over the destination: a
  failed or interrupted write (a full disk, a quota, a failing drive) leaves the destination as it was and removes
  the temporary file. A symlink planted at the destination is replaced by the new file, never written through.
  With `overwrite=False` an existing destination is never replaced, even one that appears while the file is
  written (a hard link, which fails when the name exists, publishes the file).
- A write that fails without saying why (numpy's `tofile`, which tifffile uses, reports only a short count) is
  asked the reason by writing one more byte, so that a full disk is an `OSError` with ENOSPC.
- `save_reporting_os_errors` runs a serialiser that writes to a Python file object (`torch.save`): torch wraps the
  `OSError` of a failed write in a `RuntimeError`; this gives the `OSError` back, which the CLI prints as one line.
"""

import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from unetlab.errors import UnetlabError

# What a destination that is not a regular file is, by its st_mode type bits.
KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def special_kind(path: str | Path) -> str | None:
    """What `path` is when it exists and is not a regular file ("a folder", "a FIFO (named pipe)", "a symlink to a
    character device", ...); None for a regular file, a symlink to one, a dangling symlink, or nothing."""
    try:
        mode = os.stat(path).st_mode  # follows symlinks
    except OSError:
        return None  # absent, or a dangling symlink: nothing would be written through it
    if stat.S_ISREG(mode):
        return None
    kind = KINDS.get(stat.S_IFMT(mode), "not a regular file")
    return f"a symlink to {kind}" if os.path.islink(path) else kind


def check_destination(path: str | Path, option: str, fix: str) -> None:
    """Raise a `UnetlabError` naming `option` and `path` when `path` exists and is not a regular file.

    Args:
        path: the file about to be written.
        option: how the user gave it, e.g. "--out".
        fix: what to do instead, e.g. "pass a file name such as model.onnx".
    """
    kind = special_kind(path)
    if kind is not None:
        raise UnetlabError(f"{option} {path} is {kind}, which unetlab never replaces; {fix}")


@contextmanager
def atomic_write(path: str | Path, overwrite: bool = True, option: str = "--out") -> Iterator[Path]:
    """A temporary file beside `path` to write, renamed over `path` when the block ends without an exception.

        with atomic_write(out / "a.png") as tmp:
            image.save(tmp)

    The temporary file is hidden (`.NAME.XXXXXXXX.tmp.SUFFIX`, keeping the suffix, which Pillow and tifffile read
    the format from) and has an ordinary new file's mode. It is flushed to the disk before the rename, and removed
    when the block or the rename fails.

    Args:
        path: the destination; its folder must exist.
        overwrite: replace an existing `path`; False raises a `UnetlabError` instead (checked again at the rename).
        option: how the user named the destination, for the error messages.

    Raises:
        UnetlabError: `path` is not a regular file (`check_destination`), or exists and `overwrite` is False.
        OSError: what the writing or the rename raised (a full disk, no permission, ...).
    """
    path = Path(path)
    fix = "remove it or pass another path"
    check_destination(path, option, fix)
    if not overwrite and os.path.lexists(path):
        raise _exists(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary new file (mkstemp makes it private)
        try:
            yield tmp
        except OSError as exc:
            if exc.errno is None:  # numpy's tofile (tifffile) reports a short write without its reason
                raise _refusal(tmp, path) or exc from None
            raise
        with open(tmp, "rb") as f:  # the writer may have closed its own handle: sync through a new one
            os.fsync(f.fileno())
        check_destination(path, option, fix)  # again: something may have appeared while the file was written
        if overwrite:
            os.replace(tmp, path)  # replaces a symlink itself, never its target
        else:
            _publish_without_replacing(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _refusal(tmp: Path, path: Path) -> OSError | None:
    """Why the machine refuses writes to `tmp` (a full disk, a quota, a failing drive), found by writing one more
    byte, as an `OSError` naming `path`; None when that byte is written."""
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b"\0")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        return OSError(exc.errno, exc.strerror, str(path))
    return None


def _publish_without_replacing(tmp: Path, path: Path) -> None:
    """Give the file `tmp` the name `path` unless that name exists, without a window in which it could be replaced."""
    try:
        os.link(tmp, path)  # fails with EEXIST when the name is taken, even by a dangling symlink
    except FileExistsError:
        raise _exists(path) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS):
            raise
        if os.path.lexists(path):  # a file system without hard links: check, then rename
            raise _exists(path) from None
        os.replace(tmp, path)


def _exists(path: Path) -> UnetlabError:
    from unetlab.settings import SettingError  # here: settings reads files through unetlab.data.io

    return SettingError(lambda n: f"{path} exists already; pass {n('overwrite')} to replace it, or write elsewhere",
                        ["overwrite"])  # fmt: skip


def write_bytes_atomically(path: str | Path, data: bytes, overwrite: bool = True, option: str = "--out") -> Path:
    """Write `data` to `path` through `atomic_write`; returns `path`."""
    with atomic_write(path, overwrite, option) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(path)


def save_reporting_os_errors(save: Callable[[BinaryIO], None], f: BinaryIO) -> None:
    """`save(f)`, raising the `OSError` of a failed write (ENOSPC, EDQUOT, EIO, ...) where `save` would hide it.

    `torch.save` writes through `f.write` from C++: a buffered file that fills the disk part-way through a write
    returns a short count, and torch reports it as a `RuntimeError` ("unexpected pos"), which hides the machine's
    refusal from the CLI. Here each write is completed, so the disk's refusal surfaces as the `OSError` it is, and
    that error is raised whatever torch makes of it.
    """
    failures: list[OSError] = []

    class Writer:
        def write(self, data) -> int:
            view = memoryview(data).cast("B")
            done = 0
            try:
                while done < len(view):
                    written = f.write(view[done:])
                    if not written:
                        raise OSError(errno.EIO, "the file took no more bytes")
                    done += written
            except OSError as exc:
                failures.append(exc)
                raise
            return done

        def flush(self) -> None:
            f.flush()

    try:
        save(Writer())
    except (RuntimeError, OSError):
        if failures:
            raise failures[0] from None
        raise
