"""README's self-contained Python snippets (those that define their own `predict`) run."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "README.md")) as f:
    SNIPPETS = [b for b in re.findall(r"```python\n(.*?)```", f.read(), re.S) if "def predict" in b]


def test_there_are_snippets_to_run():
    assert len(SNIPPETS) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("code", SNIPPETS, ids=[f"snippet{i}" for i in range(len(SNIPPETS))])
def test_snippet_runs(code):
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
