"""Settings shared by the experiments' tests."""

import pytest

from experiments import figures


@pytest.fixture(autouse=True)
def _no_figures_of_runs(request, monkeypatch):
    """A grid run inside a test draws no figures (`experiments.figures.write_figures`, a
    sixth of these modules' time: 27 s of 157 s) unless the test is marked `figures`.
    Module-scoped fixtures are set up before this one, so the full runs whose figures
    tests/experiments/test_cifar.py and grid/test_methods.py read still draw them."""
    if request.node.get_closest_marker("figures") is None:
        monkeypatch.setattr(figures, "write_figures", lambda *args, **kwargs: [])
