"""rpx.plots: each figure is written as a readable PNG; bad input raises ValueError;
matplotlib is imported only when a figure is drawn."""

import subprocess
import sys
import types

import matplotlib.image as mpimg
import numpy as np
import pytest

from rpx import plots


def read(path):
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    return image


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


def test_heatmap_figure_columns_take_numpy_integers_and_refuse_bools(tmp_path):
    fitness = np.linspace(0, 1, 3 * 8 * 8, dtype=np.float32).reshape(3, 8, 8)
    scan = types.SimpleNamespace(fitness=fitness, fooled=fitness > 0.9)
    images = np.full((3, 8, 8, 3), 128, np.uint8)
    read(plots.heatmap_figure(images, scan, None, str(tmp_path / "a.png"), columns=np.int64(2)))
    for bad in (True, 0, 2.0):
        with pytest.raises(ValueError, match="columns must be an integer >= 1"):
            plots.heatmap_figure(images, scan, None, str(tmp_path / "b.png"), columns=bad)


def test_matplotlib_is_imported_only_when_a_figure_is_drawn(tmp_path):
    code = (
        "import sys, numpy as np, rpx, rpx.plots\n"
        "assert not [m for m in sys.modules if m.startswith('matplotlib')], 'imported'\n"
        "rpx.plots.fitness_plot({'a': np.zeros((1, 3))}, sys.argv[1])\n"
        "assert 'matplotlib' in sys.modules and 'matplotlib.pyplot' not in sys.modules\n"
    )
    path = str(tmp_path / "f.png")
    done = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    read(path)


def test_certificate_figure_paints_the_three_states(tmp_path):
    safe = np.zeros((1, 4, 4), bool)
    fooled, undecided = safe.copy(), safe.copy()
    safe[0, :2], fooled[0, 2], undecided[0, 3] = True, True, True
    cert = types.SimpleNamespace(safe=safe, fooled=fooled, undecided=undecided)
    images = np.full((1, 4, 4, 3), 128, np.uint8)
    path = plots.certificate_figure(images, cert, str(tmp_path / "c.png"))
    pixels = mpimg.imread(path)[..., :3].reshape(-1, 3)
    for color in plots.CERTIFICATE_COLORS.values():  # every state's colour is drawn
        assert (np.abs(pixels - np.asarray(color)).max(1) < 0.02).any()
    with pytest.raises(ValueError, match="certificate must be of images"):
        plots.certificate_figure(images[:, :3], cert, str(tmp_path / "d.png"))
