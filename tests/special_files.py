"""Files that are not regular files, to check that unetlab never writes over one."""

import os
import socket
import stat


def special_files(folder):
    """name -> a path in `folder` of each kind of file that is not a regular one (those this machine can make)."""
    os.mkfifo(folder / "fifo")
    (folder / "dir").mkdir()
    paths = {
        "a FIFO (named pipe)": folder / "fifo",
        "a folder": folder / "dir",
        "a symlink to a FIFO (named pipe)": folder / "link-to-fifo",
        "a symlink to a character device": folder / "link-to-null",
        "a symlink to a folder": folder / "link-to-dir",
    }
    (folder / "link-to-fifo").symlink_to(folder / "fifo")
    (folder / "link-to-null").symlink_to("/dev/null")
    (folder / "link-to-dir").symlink_to(folder / "dir")
    try:
        os.mknod(folder / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))  # /dev/null's numbers; needs root
        paths["a character device"] = folder / "null"
    except PermissionError:
        pass
    if len(str(folder / "sock")) < 100:  # the length limit of a socket's path
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(folder / "sock"))
        server.close()
        paths["a socket"] = folder / "sock"
    return paths
