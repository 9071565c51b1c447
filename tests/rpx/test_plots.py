"""rpx.plots: each figure is written as a readable PNG; bad input raises ValueError."""

import matplotlib.image as mpimg
import numpy as np
import pytest

from rpx import plots


def read(path):
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    return image


def test_target_count_bars(tmp_path):
    shares = {
        (region, p): np.eye(10)[i + p]
        for i, region in enumerate(("original", "foreground", "background"))
        for p in (1, 3)
    }
    one = read(plots.target_count_bars({k: v for k, v in shares.items() if k[1] == 1},
                                       str(tmp_path / "a.png")))  # fmt: skip
    two = read(plots.target_count_bars(shares, str(tmp_path / "sub" / "b.png"), "Fig. 3"))
    assert two.shape[1] > 1.5 * one.shape[1]  # one panel per pixel count
    with pytest.raises(ValueError, match="shares"):
        plots.target_count_bars({}, str(tmp_path / "c.png"))


def test_heatmaps_grid(tmp_path):
    m = np.arange(100).reshape(10, 10)
    one = read(plots.heatmaps({("m", "original"): m}, str(tmp_path / "a.png")))
    grid = {(model, r): m for model in ("a", "b") for r in ("original", "background")}
    four = read(plots.heatmaps(grid, str(tmp_path / "b.png")))
    assert four.shape[0] > 1.5 * one.shape[0] and four.shape[1] > 1.5 * one.shape[1]
    with pytest.raises(ValueError, match="matrices"):
        plots.heatmaps({}, str(tmp_path / "c.png"))


def test_fitness_plot_with_empty_panel(tmp_path):
    curves = {
        "original": np.linspace(1, 0, 11)[None].repeat(3, 0),
        "background": np.zeros((0, 0)),
    }
    read(plots.fitness_plot(curves, str(tmp_path / "f.png")))
    with pytest.raises(ValueError, match="curves"):
        plots.fitness_plot({}, str(tmp_path / "g.png"))


def test_adversarial_grid_circles_in_red(tmp_path):
    images = np.full((4, 32, 32, 3), 255, np.uint8)  # white images: only circles are red
    positions = np.array([[[5, 5]], [[20, 10]], [[-1, -1]], [[31, 31]]])
    path = plots.adversarial_grid(images, positions, ["a", "b", "c", "d"], str(tmp_path / "e.png"))
    image = read(path)[..., :3]
    red = (image[..., 0] > 0.8) & (image[..., 1] < 0.3) & (image[..., 2] < 0.3)
    assert red.sum() > 20
    no_circles = plots.adversarial_grid(
        images, np.full((4, 1, 2), -1), None, str(tmp_path / "n.png")
    )
    image = read(no_circles)[..., :3]
    assert not ((image[..., 0] > 0.8) & (image[..., 1] < 0.3) & (image[..., 2] < 0.3)).any()
    with pytest.raises(ValueError, match="positions"):
        plots.adversarial_grid(images, positions[:2], None, str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match="images"):
        plots.adversarial_grid(images[:0], positions[:0], None, str(tmp_path / "y.png"))


def cyan(path):
    image = read(path)[..., :3]
    return (image[..., 0] < 0.3) & (image[..., 1] > 0.7) & (image[..., 2] > 0.7)


def test_adversarial_grid_outlines_the_regions_in_cyan(tmp_path):
    images = np.full((2, 32, 32, 3), 255, np.uint8)
    positions = np.full((2, 1, 2), -1)
    half = np.zeros((2, 32, 32), bool)
    half[:, :, 16:] = True  # right half: a vertical boundary down the middle
    outlined = cyan(plots.adversarial_grid(images, positions, None, str(tmp_path / "a.png"),
                                           regions=half))  # fmt: skip
    assert outlined.sum() > 20
    # A whole-image or empty region, or none, draws no outline.
    whole = np.stack([np.ones((32, 32), bool), np.zeros((32, 32), bool)])
    assert not cyan(plots.adversarial_grid(images, positions, None, str(tmp_path / "b.png"),
                                           regions=whole)).any()  # fmt: skip
    assert not cyan(plots.adversarial_grid(images, positions, None, str(tmp_path / "c.png"))).any()
    with pytest.raises(ValueError, match="regions must be bool"):
        plots.adversarial_grid(images, positions, None, str(tmp_path / "d.png"), regions=half[:1])
    with pytest.raises(ValueError, match="regions must be bool"):
        plots.adversarial_grid(images, positions, None, str(tmp_path / "e.png"),
                               regions=half.astype(int))  # fmt: skip
