"""The committed runs under experiments/results/: their records are still read and checked
by the store, and the table code still writes their committed table.md byte for byte."""

import gzip
import os

import pytest

from experiments import store, tables

RESULTS = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "results")


@pytest.mark.parametrize(
    "run, count", [("cifar10-compact-cpu", 1090), ("cifar10-compact-h100", 6000)]
)
def test_committed_results_give_their_committed_table(tmp_path, run, count):
    folder = os.path.join(RESULTS, run)
    path = os.path.join(folder, "results.jsonl")
    if not os.path.exists(path):  # the large run is committed compressed
        path = str(tmp_path / "results.jsonl")
        with gzip.open(os.path.join(folder, "results.jsonl.gz")) as f, open(path, "wb") as out:
            out.write(f.read())
    records = store.ResultStore(path).records
    assert len(records) == count
    with open(os.path.join(folder, "table.md")) as f:
        committed = f.read()
    header = committed[: committed.index("\n\n## Table II")]
    written = tables.write_table(str(tmp_path), records, header, num_targets=9)
    with open(written) as f:
        assert f.read() == committed
