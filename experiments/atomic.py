"""`write_atomic`: the one way experiments write a file (results.jsonl, appended, aside).

A crash, a kill or a full disk must leave either the old file or the new one whole,
never an empty or half-written table, figure or settings file: the content goes to a
temporary file beside the target, is flushed to disk, and is renamed over the target
(a rename within a folder is atomic). results.jsonl is the exception by design: it is
appended record by record, and experiments.store drops a line a kill cut short.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

FILE_MODE = 0o644  # mkstemp makes 0600 files; results are for everyone to read


def write_atomic(path: str, content: str | bytes | Callable[[str], object]) -> str:
    """Write `path` all at once; returns path.

    Args:
      path: the file to write (its folder is created); replaced only once the new
        content is complete and on disk.
      content: text (written as UTF-8), bytes, or a function called with a temporary
        path beside `path`, with the same extension, that writes the file there (np.savez,
        fig.savefig, PIL's save, rpx.plots' functions).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(path)[1]  # np.savez and savefig go by the extension
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    try:
        if callable(content):
            os.close(fd)
            fd = None  # closed: never close a number another file may have reused
            content(tmp)
            fd = os.open(tmp, os.O_RDONLY)
        else:
            data = content.encode() if isinstance(content, str) else content
            view = memoryview(data)
            while view:  # os.write may write less than asked
                view = view[os.write(fd, view) :]
        os.fsync(fd)
        os.close(fd)
        fd = None
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    # The rename itself reaches the disk with the folder's entry.
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path
