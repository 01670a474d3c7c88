"""Safe writes (`unetlab.files`): whole files or none, nothing but regular files replaced, symlinks never followed,
and the machine's refusals raised as `OSError`s."""

import errno
import os
import re

import pytest
import torch
from special_files import special_files

from unetlab import UnetlabError
from unetlab.files import (
    atomic_write,
    check_destination,
    save_reporting_os_errors,
    special_kind,
    write_bytes_atomically,
)


def test_special_files_are_named_and_never_replaced(tmp_path):
    for kind, path in special_files(tmp_path).items():
        assert special_kind(path) == kind
        mode = os.lstat(path).st_mode
        message = f"--out {path} is {kind}, which unetlab never replaces; pass a file"
        with pytest.raises(UnetlabError, match=re.escape(message)):
            check_destination(path, "--out", "pass a file")
        with pytest.raises(UnetlabError, match="never replaces"):
            write_bytes_atomically(path, b"data")
        assert os.lstat(path).st_mode == mode, f"{kind} was replaced"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [], "no temporary file left"


def test_regular_files_and_symlinks_to_them_are_replaced_without_writing_through(tmp_path):
    (tmp_path / "target").write_bytes(b"keep me")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "old").write_bytes(b"old")
    for name in ("link", "dangling", "old", "new"):
        assert special_kind(tmp_path / name) is None
        write_bytes_atomically(tmp_path / name, name.encode())
        assert not (tmp_path / name).is_symlink() and (tmp_path / name).read_bytes() == name.encode()
    assert (tmp_path / "target").read_bytes() == b"keep me" and not (tmp_path / "nowhere").exists()
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o666 & ~umask, "an ordinary new file's mode"


def test_without_overwrite_an_existing_name_is_refused_even_when_it_appears_during_the_write(tmp_path):
    (tmp_path / "a").write_bytes(b"hand-made")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    for name in ("a", "link"):
        with pytest.raises(UnetlabError, match=f"{tmp_path / name} exists already; pass overwrite"):
            write_bytes_atomically(tmp_path / name, b"new", overwrite=False)
    with pytest.raises(UnetlabError, match="exists already"):
        with atomic_write(tmp_path / "b", overwrite=False) as tmp:
            tmp.write_bytes(b"new")
            (tmp_path / "b").write_bytes(b"appeared meanwhile")
    assert (tmp_path / "a").read_bytes() == b"hand-made" and (tmp_path / "b").read_bytes() == b"appeared meanwhile"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "link"]
    write_bytes_atomically(tmp_path / "c", b"new", overwrite=False)
    assert (tmp_path / "c").read_bytes() == b"new"


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    (tmp_path / "a").write_bytes(b"old")
    with pytest.raises(OSError) as caught:
        with atomic_write(tmp_path / "a") as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert caught.value.errno == errno.ENOSPC
    assert [p.name for p in tmp_path.iterdir()] == ["a"] and (tmp_path / "a").read_bytes() == b"old"


class FullDisk:
    """A file that takes `room` bytes, then does what a buffered file on a full disk does: a short count for the
    write that fills it, ENOSPC for the next one."""

    def __init__(self, room: int):
        self.room = room

    def write(self, data) -> int:
        if not self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        taken = min(self.room, len(memoryview(data).cast("B")))
        self.room -= taken
        return taken

    def flush(self):
        pass


def test_torch_saves_full_disk_is_raised_as_the_os_error():
    with pytest.raises(RuntimeError, match="unexpected pos"):  # what torch makes of it by itself
        torch.save({"w": torch.ones(1000)}, FullDisk(100))
    for room in (0, 100, 1000):
        with pytest.raises(OSError) as caught:
            save_reporting_os_errors(lambda f: torch.save({"w": torch.ones(1000)}, f), FullDisk(room))
        assert caught.value.errno == errno.ENOSPC
