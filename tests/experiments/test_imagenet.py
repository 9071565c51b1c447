"""python -m experiments.imagenet end to end: an image folder, a random U^2-Net-P, a tiny
classifier and budget."""

import json
import os

import cv2
import jax.numpy as jnp
import numpy as np
import pytest

import train
from experiments import imagenet, masks
from experiments.images import ResizedImages, folder_files
from rpx import segment
from tests.experiments.tiny import lock_held_by_another_process, snapshot, tiny_predict
from tests.rpx.segment.pth_writer import save_state_dict
from tests.rpx.segment.test_u2net import random_state_dict

CLASSES = 6


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Images of several sizes in class folders c0..c5, each filed under the class the
    tiny model predicts after the experiment's resize (so most are picked)."""
    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(1)
    predict = tiny_predict(CLASSES)
    for c in range(CLASSES):
        os.makedirs(root / "images" / f"c{c}")
    for i in range(14):
        size = (64, 64) if i % 2 else (48, 80)
        image = (rng.integers(0, 200, (1, 1, 3)) + rng.integers(0, 40, (*size, 3))).astype(np.uint8)
        image[16:40, 16:40] = rng.integers(0, 255, 3)
        small = cv2.resize(image, (32, 32), interpolation=cv2.INTER_AREA)
        label = int(np.asarray(predict(jnp.asarray(small[None], jnp.float32))).argmax())
        if i < 2:
            label = (label + 1) % CLASSES  # a wrongly classified one must not be picked
        cv2.imwrite(str(root / "images" / f"c{label}" / f"{i}.png"), image[..., ::-1])
    pth = str(root / "u2netp.pth")
    save_state_dict(pth, random_state_dict("u2netp"))
    return str(root / "images"), pth


def argv(folder, workdir, *extra):
    images, pth = folder
    return [
        "--models=tiny=/nowhere/tiny",
        f"--image-folder={images}",
        "--image-size=32",
        f"--u2net={pth}",
        "--u2net-size=32",
        f"--workdir={workdir}",
        "--samples=4",
        "--population=8",
        "--generations=2",
        *extra,
    ]


@pytest.mark.figures
def test_imagenet_end_to_end_and_rerun(tmp_path, folder, monkeypatch):
    monkeypatch.setattr(train, "load_classifier", lambda w: (tiny_predict(CLASSES), {}))
    workdir = str(tmp_path / "w")
    assert imagenet.main(argv(folder, workdir)) == 0
    with open(os.path.join(workdir, "results.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    assert len(lines) == 4 * 3
    assert {r["region"] for r in lines} == {"original", "foreground", "background"}
    assert all(r["attack"] == "untargeted" and len(r["clean_top"]) == 5 for r in lines)
    files = folder_files(folder[0])[0]
    assert not {r["image"] for r in lines} & {
        i for i, f in enumerate(files) if os.path.basename(f) in ("0.png", "1.png")
    }
    cache = segment.MaskCache(os.path.join(workdir, "masks-u2net.npz"))
    assert sorted(cache.meta["index"]) == sorted({r["image"] for r in lines})
    assert cache.shape == (4, 32, 32) and cache.meta["method"] == "u2net"
    with open(os.path.join(workdir, "settings.json")) as f:
        settings = json.load(f)
    assert settings["u2net"].startswith("u2netp.pth, sha256 ") and set(settings["models"]) == {
        "tiny"
    }
    table = open(os.path.join(workdir, "table.md")).read()
    assert "## Table III" in table and "| Conf.-Decrease-top5(unsucc) |" in table
    assert "## Table IV" in table
    assert os.path.exists(os.path.join(workdir, "figures", "fig6_fitness_tiny.png"))
    assert imagenet.main(argv(folder, workdir)) == 0
    with open(os.path.join(workdir, "results.jsonl")) as f:
        assert len(f.readlines()) == len(lines)


def test_imagenet_bad_input(tmp_path, folder, monkeypatch, capsys):
    monkeypatch.setattr(train, "load_classifier", lambda w: (tiny_predict(CLASSES), {}))
    assert imagenet.main(argv(folder, str(tmp_path), "--u2net=/no/such.pth")) == 2
    assert "--u2net" in capsys.readouterr().err
    assert imagenet.main(argv((str(tmp_path / "none"), folder[1]), str(tmp_path))) == 2
    assert "--image-folder" in capsys.readouterr().err
    assert imagenet.main(argv(folder, str(tmp_path), "--image-size=4")) == 2
    assert "--image-size" in capsys.readouterr().err


def test_an_unreadable_image_file_is_a_clear_error(tmp_path, folder, monkeypatch, capsys):
    broken = tmp_path / "images"
    os.makedirs(broken / "c0")
    (broken / "c0" / "a.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot read .*a\.png as an image"):
        ResizedImages(32, str(broken))(np.array([0]))
    monkeypatch.setattr(train, "load_classifier", lambda w: (tiny_predict(CLASSES), {}))
    assert imagenet.main(argv((str(broken), folder[1]), str(tmp_path / "w"))) == 2
    assert "cannot read" in capsys.readouterr().err


def test_a_decompression_bomb_is_refused_before_it_is_decoded(tmp_path):
    from PIL import Image

    bomb = tmp_path / "images" / "c0" / "bomb.png"
    os.makedirs(bomb.parent)
    # 10,000 x 10,000 pixels in a few KB: cv2 would decode it to 300 MB.
    Image.new("1", (10_000, 10_000)).save(bomb)
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ValueError, match=r"bomb\.png declares more than 89,478,485 pixels"):
        ResizedImages(32, str(tmp_path / "images"))(np.array([0]))


def test_images_from_an_npz_data_dir_are_resized(tmp_path):
    arrays = np.arange(3 * 40 * 40 * 3, dtype=np.uint32).reshape(3, 40, 40, 3) % 251
    np.savez(tmp_path / "imagenet2012-validation.npz", image=arrays.astype(np.uint8),
             label=np.array([7, 8, 9]))  # fmt: skip
    get = ResizedImages(20, None, "validation", str(tmp_path))
    assert get.total == 3
    out, labels = get(np.array([2, 0]))
    assert out.shape == (2, 20, 20, 3) and out.dtype == np.uint8
    assert labels.tolist() == [9, 7]
    expected = cv2.resize(arrays[2].astype(np.uint8), (20, 20), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(out[0], expected)


def test_imagenet_workdir_in_use_is_refused(tmp_path, folder, monkeypatch, capsys):
    monkeypatch.setattr(train, "load_classifier", lambda w: (tiny_predict(CLASSES), {}))
    workdir = str(tmp_path / "w")
    with lock_held_by_another_process(workdir) as pid:
        assert imagenet.main(argv(folder, workdir)) == 2
        assert f"--workdir {workdir} is in use by another run (process {pid}" in (
            capsys.readouterr().err
        )
        assert snapshot(workdir) == {"run.lock": f"{pid}\n".encode()}


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--u2net-size=48", "--u2net-size must be a positive multiple of 32"),
        ("--image-size=4", "--image-size must be >= 8"),
        ("--u2net=/no/such.pth", "--u2net must name"),
        ("--seed=-2", "--seed"),
        ("--restriction=all", "--restriction must be table, restore or both"),
    ],
)
def test_imagenet_flags_are_checked_before_anything(tmp_path, folder, monkeypatch, capsys,
                                                    flag, message):  # fmt: skip
    def load(workdir):
        raise AssertionError("a classifier was loaded before the flags were checked")

    monkeypatch.setattr(train, "load_classifier", load)
    assert imagenet.main(argv(folder, str(tmp_path / "w"), flag)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_u2net_masks_are_tied_to_their_images(tmp_path, folder):
    cache = str(tmp_path / "masks-u2net.npz")
    foreground = masks.u2net_masks(folder[1], cache, 32)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    first = foreground(np.array([4, 7, 9]), images)
    again = masks.u2net_masks(folder[1], cache, 32)
    np.testing.assert_array_equal(again(np.array([9, 4]), images[[2, 0]]), first[[2, 0]])
    changed = images.copy()
    changed[1, 0, 0, 0] ^= 1  # image 7 is no longer the image its mask was made of
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match="masks-u2net.npz holds masks of other images at .*7"):
        again(np.array([4, 7]), changed[:2])
    assert snapshot(tmp_path) == before
    settings = segment.MaskCache(cache).settings  # a cache that does not say whose masks
    segment.save_masks(cache, np.zeros((1, 32, 32), bool), None, settings)
    with pytest.raises(ValueError, match="records no image indices and digests"):
        again(np.array([4]), images[:1])
    other = masks.u2net_masks(folder[1], cache, 64)  # masks at another U^2-Net input size
    with pytest.raises(ValueError, match="not a U\\^2-Net mask cache of this run"):
        other(np.array([4]), images[:1])
    with open(cache, "wb") as f:
        f.write(b"half a zip")
    with pytest.raises(ValueError, match="is not a U\\^2-Net mask cache"):
        again(np.array([4]), images[:1])


@pytest.mark.parametrize(
    "index, digests",
    [
        ([4, 4], ["a" * 64] * 2),  # one index twice: which mask is image 4's?
        ([4], ["a" * 64] * 2),  # fewer indices than masks
        ([4, -1], ["a" * 64] * 2),
        ([4, "7"], ["a" * 64] * 2),
        ([4, 7], ["a" * 64, 5]),
    ],
)
def test_a_u2net_cache_whose_indices_do_not_fit_its_masks_is_refused(tmp_path, folder, index,
                                                                      digests):  # fmt: skip
    cache = str(tmp_path / "masks-u2net.npz")
    foreground = masks.u2net_masks(folder[1], cache, 32)
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    foreground(np.array([4, 7]), images)
    settings = segment.MaskCache(cache).settings
    segment.save_masks(cache, np.zeros((2, 32, 32), bool), None, settings, method="u2net",
                       index=index, image_sha256=digests)  # fmt: skip
    with pytest.raises(ValueError, match="does not record one distinct image index and SHA-256"):
        foreground(np.array([4]), images[:1])
