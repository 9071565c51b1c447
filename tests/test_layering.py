"""The package layering, read from the source: every import statement (at any depth,
lazy ones inside functions included) of every .py file under rpx/ and train/.

rpx never imports train/ or experiments/; train/ never imports rpx or experiments/;
rpx/segment imports nothing of rpx outside rpx.segment (it needs no classifier).
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def imports(path: str, root: str = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file at `path` (a relative
    import resolved against the file's package under `root`)."""
    package = os.path.relpath(os.path.dirname(path), root).replace(os.sep, ".").split(".")
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            out.append((node.lineno, module))
            # `from rpx import segment` imports rpx.segment: count the names too.
            out += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return out


def python_files(folder: str) -> list[str]:
    out = []
    for root, _, files in os.walk(os.path.join(ROOT, folder)):
        out += [os.path.join(root, f) for f in files if f.endswith(".py")]
    return sorted(out)


def top(module: str) -> str:
    return module.split(".")[0]


def violations(folder: str, allowed) -> list[str]:
    return [
        f"{os.path.relpath(path, ROOT)}:{line} imports {module}"
        for path in python_files(folder)
        for line, module in imports(path)
        if not allowed(module)
    ]


@pytest.mark.parametrize(
    "folder, forbidden",
    [
        ("rpx", {"train", "experiments", "benchmarks"}),
        ("train", {"rpx", "experiments", "benchmarks"}),
    ],
)
def test_a_layer_never_imports_the_layers_above_it(folder, forbidden):
    assert python_files(folder)
    assert violations(folder, lambda m: top(m) not in forbidden) == []


def test_segmentation_needs_nothing_of_rpx_outside_itself():
    def allowed(module):
        return top(module) not in {"rpx", "train", "experiments"} or (
            module == "rpx" or module.startswith("rpx.segment")
        )

    assert violations(os.path.join("rpx", "segment"), allowed) == []


def test_the_import_reader_sees_relative_lazy_and_from_imports(tmp_path):
    folder = tmp_path / "rpx" / "sub"
    folder.mkdir(parents=True)
    (folder / "m.py").write_text(
        "import numpy\nfrom . import sibling\nfrom ..segment import cache\n"
        "def f():\n    from train import datasets\n    import experiments.grid\n"
    )
    found = {module for _, module in imports(str(folder / "m.py"), str(tmp_path))}
    assert {"numpy", "rpx.sub.sibling", "rpx.segment.cache", "train.datasets"} <= found
    assert "experiments.grid" in found
