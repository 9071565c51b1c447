"""experiments.atomic.write_atomic: a file is replaced whole or not at all.

A full disk is simulated with RLIMIT_FSIZE in a child process (writes past the limit fail
with EFBIG, as they would with ENOSPC): the old file must survive untouched.
"""

import json
import os
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from experiments.atomic import write_atomic


@pytest.mark.parametrize("content", ["text é\n", b"\x00bytes"])
def test_text_and_bytes(tmp_path, content):
    path = tmp_path / "sub" / "f.md"
    assert write_atomic(str(path), content) == str(path)
    assert path.read_bytes() == (content.encode() if isinstance(content, str) else content)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert os.listdir(path.parent) == ["f.md"]


def test_a_writer_function_gets_a_path_with_the_same_extension(tmp_path):
    path = tmp_path / "a.npz"  # np.savez appends .npz to a path without it
    write_atomic(str(path), lambda tmp: np.savez(tmp, x=np.arange(3)))
    np.testing.assert_array_equal(np.load(path)["x"], np.arange(3))
    assert os.listdir(tmp_path) == ["a.npz"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "t.md"
    path.write_text("old")

    def fail(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomic(str(path), fail)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["t.md"]


CHILD = """
import resource, signal, sys
from experiments import store, tables
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, no kill
resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))  # "the disk is full" after 64 bytes
what, workdir = sys.argv[1:]
record = dict(model="m", pixels=1, attack="untargeted", target=None, label=3, image=0,
              region="original", restriction="table", success=True, generations=1,
              queries=10, confidence=0.6, predicted=5)
try:
    if what == "table.md":
        tables.write_table(workdir, [record], "# header")
    else:  # a new classifier's digest is added to the recorded settings
        store.check_settings(workdir, dict(budget="x" * 200), {"m": "digest"})
except OSError as err:
    print("refused:", err)
"""


@pytest.mark.parametrize("name", ["table.md", "settings.json"])
def test_a_full_disk_leaves_the_old_file_whole(tmp_path, name):
    old = json.dumps(dict(budget="x" * 200, models={}))  # settings.json reads it back
    (tmp_path / name).write_text(old)
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    code = textwrap.dedent(CHILD)
    run = subprocess.run(
        [sys.executable, "-c", code, name, str(tmp_path)], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert "refused" in run.stdout
    assert (tmp_path / name).read_text() == old
    assert sorted(os.listdir(tmp_path)) == [name]
