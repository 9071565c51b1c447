"""README's self-contained Python snippets (those that define their own `predict`) run."""

import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "README.md")) as f:
    SNIPPETS = [b for b in re.findall(r"```python\n(.*?)```", f.read(), re.S) if "def predict" in b]

# Each snippet runs as a script of its own (fresh globals, __name__ == "__main__") in one
# new Python process for all of them, in a scratch folder (a snippet writes runs/...):
# one interpreter start and one `import jax, rpx` instead of one per snippet.
DRIVER = """
import json, sys, traceback
snippets, out = json.load(open(sys.argv[1])), sys.argv[2]
errors = []
for code in snippets:
    try:
        exec(compile(code, "<README snippet>", "exec"), {"__name__": "__main__"})
        errors.append(None)
    except BaseException:
        errors.append(traceback.format_exc()[-3000:])
json.dump(errors, open(out, "w"))
"""


@pytest.fixture(scope="module")
def errors(tmp_path_factory):
    """[traceback or None per snippet]."""
    folder = tmp_path_factory.mktemp("readme")
    (folder / "snippets.json").write_text(json.dumps(SNIPPETS))
    path = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, "snippets.json", "errors.json"],
        capture_output=True, text=True, cwd=folder, timeout=600,
        env={**os.environ, "PYTHONPATH": path},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((folder / "errors.json").read_text())


def test_there_are_snippets_to_run():
    assert len(SNIPPETS) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(SNIPPETS)), ids=lambda i: f"snippet{i}")
def test_snippet_runs(errors, index):
    assert errors[index] is None, errors[index]
