import os
import re

import numpy as np
import pytest
from PIL import Image

from experiments.mask_figures import PATH_COLOURS, main, outline_grid
from rpx.segment.cache import save_masks


def test_outline_grid_draws_path_coloured_outlines():
    images = np.full((5, 8, 8, 3), 100, np.uint8)
    masks = np.zeros((5, 8, 8), bool)
    masks[:, 2:6, 2:6] = True
    grid = outline_grid(images, masks, np.array([0, 1, 2, 3, 0]), columns=2, scale=2, gap=1)
    assert grid.shape == (3 * 17, 2 * 17, 3)
    for i, colour in enumerate(PATH_COLOURS):
        r, c = divmod(i, 2)
        tile = grid[r * 17 : r * 17 + 16, c * 17 : c * 17 + 16]
        outline = (tile == colour).all(axis=-1)
        # The outline runs along the mask border (pixels 4..11 at scale 2), nowhere else.
        assert outline[4, 4:12].all() and outline[4:12, 4].all()
        assert not outline[:3].any() and not outline[6:10, 6:10].any()
    assert (grid[2 * 17 :, 17:] == 255).all()  # empty 6th slot stays white


def test_outline_grid_bad_input():
    with pytest.raises(ValueError, match="masks"):
        outline_grid(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8, 7), bool))
    with pytest.raises(ValueError, match="images"):
        outline_grid(np.zeros((2, 8, 8), np.uint8), np.zeros((2, 8, 8), bool))


def test_figures_command(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    masks = rng.random((5, 32, 32)) < 0.3
    np.savez(tmp_path / "images.npz", image=images)
    save_masks(str(tmp_path / "m.npz"), masks, np.array([0, 3, 1, 2, 0]), {"x": 1})
    out = tmp_path / "figs"
    args = ["--masks", str(tmp_path / "m.npz"), "--images", str(tmp_path / "images.npz")]
    assert main([*args, "--out", str(out), "--name", "toy", "--columns", "3"]) == 0
    grid = np.asarray(Image.open(out / "toy-grid.png").convert("RGB"))
    assert grid.shape == (2 * 66, 3 * 66, 3)
    assert sorted(os.listdir(out)) == ["toy-first96.png", "toy-fractions.png", "toy-grid.png"]


@pytest.mark.parametrize(
    "images, masks_file, message",
    [
        (dict(image=np.zeros((5, 32, 32, 3), np.uint8)), b"not a cache", "--masks .*not a mask"),
        (dict(picture=np.zeros((5, 32, 32, 3), np.uint8)), None, r"missing key\(s\) \['image'\]"),
        (dict(image=np.zeros((5, 16, 16, 3), np.uint8)), None, r"masks of \(32, 32\)"),
        (dict(image=np.zeros((9, 32, 32, 3), np.uint8)), None, "holds 5 masks"),
        (dict(image=np.zeros((5, 32, 32), np.uint8)), None, r"uint8 \[N, H, W, 3\]"),
    ],
)
def test_figures_command_bad_input_is_one_line(tmp_path, capsys, images, masks_file, message):
    np.savez(tmp_path / "images.npz", **images)
    masks = tmp_path / "m.npz"
    save_masks(str(masks), np.zeros((5, 32, 32), bool), None, {"x": 1})
    if masks_file is not None:
        masks.write_bytes(masks_file)
    args = ["--masks", str(masks), "--images", str(tmp_path / "images.npz")]
    assert main([*args, "--out", str(tmp_path / "figs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert not (tmp_path / "figs").exists()
