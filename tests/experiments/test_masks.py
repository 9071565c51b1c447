"""python -m experiments.masks: building a dataset split's GrabCut mask cache."""

import os

import numpy as np
import pytest

from experiments.masks import main
from rpx.segment import GrabCutSettings
from rpx.segment.cache import MaskCache, data_identity, save_masks
from rpx.segment.synthetic import planted_discs


def _write_split(folder, count=5):
    images, _ = planted_discs(np.random.default_rng(2), count, 32, 1.0)
    labels = np.arange(count, dtype=np.uint8) % 10
    np.savez(os.path.join(folder, "cifar10-test.npz"), image=images, label=labels)
    return images


def test_cli_builds_and_reuses_cache(tmp_path, capsys):
    _write_split(tmp_path)
    out = str(tmp_path / "masks" / "cifar10-test.npz")
    args = ["--dataset=cifar10", "--split=test", f"--out={out}", "--data-dir", str(tmp_path)]
    assert main([*args, "--workers", "1", "--upscale", "2"]) == 0
    assert "images/s" in capsys.readouterr().out
    cache = MaskCache(out, GrabCutSettings(upscale=2))
    assert len(cache) == 5 and cache.meta["split"] == "test"
    assert main([*args, "--upscale", "2"]) == 0
    assert "up to date" in capsys.readouterr().out
    # Same file, other settings: refused without --force, rebuilt with it.
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--limit", "3", "--force", "--workers", "1"]) == 0
    assert len(MaskCache(out, GrabCutSettings())) == 3


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--margin", "0.7"], "margin"),
        (["--limit", "0"], "--limit"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_cli_bad_arguments(tmp_path, capsys, extra, message):
    _write_split(tmp_path, 2)
    out = str(tmp_path / "m.npz")
    args = ["--dataset=cifar10", "--split=test", f"--out={out}", "--data-dir", str(tmp_path)]
    assert main([*args, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not os.path.exists(out)


def test_cli_missing_data(tmp_path, capsys):
    out = str(tmp_path / "m.npz")
    args = ["--dataset=cifar10", "--split=train", f"--out={out}", "--data-dir", str(tmp_path)]
    assert main(args) == 2
    assert "cifar10-train.npz" in capsys.readouterr().err
    assert main(["--dataset=cifar10", "--split=test", "--out=x.txt"]) == 2
    assert "--out" in capsys.readouterr().err


def test_cli_refuses_a_cache_of_other_images(tmp_path, capsys):
    images = _write_split(tmp_path, 3)
    out = str(tmp_path / "masks.npz")
    args = ["--dataset=cifar10", "--split=test", f"--out={out}", "--data-dir", str(tmp_path)]
    assert main([*args, "--workers", "1"]) == 0
    capsys.readouterr()
    assert main(args) == 0
    assert "up to date" in capsys.readouterr().out
    built = open(out, "rb").read()
    # Other images, as many, in the same file: the cache is not theirs.
    images[0, 0, 0, 0] ^= 1
    np.savez(tmp_path / "cifar10-test.npz", image=images, label=np.arange(3, dtype=np.uint8))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "holds masks of other images" in err and "--force" in err
    assert open(out, "rb").read() == built
    assert main([*args, "--force", "--workers", "1"]) == 0
    assert MaskCache(out).meta["data"] == data_identity(images, np.arange(3))
    # A cache made before caches named their images is refused too.
    save_masks(out, MaskCache(out)[np.arange(3)], None, GrabCutSettings().to_dict())
    assert main(args) == 2
    assert "does not record which images" in capsys.readouterr().err
