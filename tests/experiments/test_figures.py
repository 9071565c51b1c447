"""experiments.figures: the paper's Figs. 3-5 as readable PNGs, records turned back into
adversarial images, and the example grid of a run."""

import numpy as np
import pytest

from experiments import figures
from tests.experiments.test_tables import rec
from tests.rpx.test_plots import cyan, read

pytestmark = pytest.mark.figures


def test_target_count_bars(tmp_path):
    shares = {
        (region, p): np.eye(10)[i + p]
        for i, region in enumerate(("original", "foreground", "background"))
        for p in (1, 3)
    }
    one = read(figures.target_count_bars({k: v for k, v in shares.items() if k[1] == 1},
                                       str(tmp_path / "a.png")))  # fmt: skip
    two = read(figures.target_count_bars(shares, str(tmp_path / "sub" / "b.png"), "Fig. 3"))
    assert two.shape[1] > 1.5 * one.shape[1]  # one panel per pixel count
    with pytest.raises(ValueError, match="shares"):
        figures.target_count_bars({}, str(tmp_path / "c.png"))


def test_heatmaps_grid(tmp_path):
    m = np.arange(100).reshape(10, 10)
    one = read(figures.class_pairs_heatmaps({("m", "original"): m}, str(tmp_path / "a.png")))
    grid = {(model, r): m for model in ("a", "b") for r in ("original", "background")}
    four = read(figures.class_pairs_heatmaps(grid, str(tmp_path / "b.png")))
    assert four.shape[0] > 1.5 * one.shape[0] and four.shape[1] > 1.5 * one.shape[1]
    with pytest.raises(ValueError, match="matrices"):
        figures.class_pairs_heatmaps({}, str(tmp_path / "c.png"))


def test_apply_pixels_sets_only_the_changed_pixels():
    image = np.zeros((4, 4, 3), np.uint8)
    r = {"positions": [[1, 2], [-1, -1]], "colors": [[255.0, 10.4, 0.0], [0.0, 0.0, 0.0]]}
    out = figures.apply_pixels(image, r)
    assert out[1, 2].tolist() == [255, 10, 0]
    out[1, 2] = 0
    assert not out.any() and not image.any()


def test_example_grid_outlines_each_attack_region(tmp_path):
    images = np.full((2, 32, 32, 3), 255, np.uint8)  # white: only circles and outlines show
    foreground = np.zeros((2, 32, 32), bool)
    foreground[:, 8:24, 8:24] = True
    extra = dict(num_classes=10, fitness_curve=[1.0, 0.5], colors=[[0.0, 0.0, 0.0]])
    recs = [
        rec(i, region, positions=[[12, 12] if region == "foreground" else [2, 2]], **extra)
        for i in (0, 1)
        for region in ("foreground", "background")
    ]
    get = lambda idx: (images[idx], np.full(len(idx), 3))  # noqa: E731
    calls = []

    def fg(idx, imgs):
        calls.append((idx.tolist(), imgs.shape))
        return foreground[idx]

    paths = figures.write_figures(str(tmp_path / "a"), recs, get, foreground=fg)
    examples = [p for p in paths if p.endswith("examples_allconv.png")]
    assert len(examples) == 1 and cyan(examples[0]).sum() > 50
    assert calls == [([0, 1, 0, 1], (4, 32, 32, 3))]  # masks of the shown images, with them
    paths = figures.write_figures(str(tmp_path / "b"), recs, get)  # no masks, no outline
    assert not cyan([p for p in paths if p.endswith("examples_allconv.png")][0]).any()
