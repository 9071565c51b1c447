"""python -m experiments.corner_maps --certify: resumable certificates of the mapped images,
refusal of foreign batch files, and the report's certify section against brute force."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rpx
import train
from experiments.corner_maps import cert_analysis as corner_cert_analysis
from experiments.corner_maps import certify as corner_certify
from experiments.corner_maps import regions as corner_regions
from experiments.corner_maps.__main__ import main
from experiments.corner_maps.batches import BatchFolder
from experiments.corner_maps.study import mask_path
from tests.experiments.tiny import mock_cifar

KNOBS = ["--max-boxes=4", "--search-starts=1", "--search-steps=2", "--chunk-size=64"]


def planted(seed=0, scale=6.0, bump=16.0):
    """A tiny classifier only the top-left 8x8 pixels can move much: 8x8 block means
    through a random linear map, plus, per class, the largest tent (rise, then fall) of
    a random colour direction over those pixels, so a mid-cube colour can fool there."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    w = jax.random.normal(k1, (48, 10)) * scale
    u = jax.random.normal(k2, (3, 10))

    def predict(x):
        b = x.shape[0]
        blocks = x.reshape(b, 4, 8, 4, 8, 3).mean((2, 4)) / 255.0 - 0.5
        s = (x[:, :8, :8] / 255.0 - 0.5) @ u
        tent = jax.nn.relu(s + 0.2) - 2 * jax.nn.relu(s - 0.3)
        return jax.nn.softmax(blocks.reshape(b, 48) @ w + bump * tent.max((1, 2)), axis=-1)

    return predict


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Mock data labelled by the planted classifier (the first 2 wrong); one predict for
    every run, so each program compiles once."""
    folder = tmp_path_factory.mktemp("cert")
    data = str(folder / "mock.npz")
    images, _ = mock_cifar(data, n=10)
    predict = planted()
    labels = np.asarray(predict(jnp.asarray(images, jnp.float32))).argmax(1)
    labels[:2] = (labels[:2] + 1) % 10
    np.savez(data, image=images, label=labels.astype(np.uint8))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train, "load_classifier", lambda w: (predict, {"model": "planted"}))
        yield folder, data, images, labels, predict


def _argv(data, workdir, *extra):
    return [
        f"--data-file={data}",
        f"--workdir={workdir}",
        "--models=tiny=/nowhere",
        "--images=4",
        "--batch=2",
        "--resamples=100",
        *extra,
    ]


@pytest.mark.xla_optimised
def test_certify_resumes_refuses_foreign_batches_and_reports(setup, monkeypatch, capsys):
    folder, data, images, labels, predict = setup
    workdir = str(folder / "w")
    monkeypatch.setattr("experiments.corner_maps.report.figures", lambda *a: [])
    assert main(_argv(data, workdir)) == 0  # the maps first
    calls, certify = [], rpx.certify

    def counted(*a, **kw):
        calls.append(len(a[1]))
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed in the second batch
        return certify(*a, **kw)

    monkeypatch.setattr(rpx, "certify", counted)
    with pytest.raises(KeyboardInterrupt):
        main(_argv(data, workdir, "--certify", *KNOBS))
    tiny = os.path.join(workdir, "tiny")
    assert sorted(f for f in os.listdir(tiny) if f.startswith("cert-")) == ["cert-00000-00002.npz"]
    monkeypatch.setattr(rpx, "certify", certify)
    calls.clear()
    monkeypatch.setattr(
        rpx, "certify", lambda *a, **kw: calls.append(len(a[1])) or certify(*a, **kw)
    )
    assert main(_argv(data, workdir, "--certify", *KNOBS, "--stop-after=0")) == 0
    assert calls == []  # out of time before the first batch: nothing certified
    assert main(_argv(data, workdir, "--certify", *KNOBS)) == 0
    assert calls == [2]  # only the batch the kill lost
    assert main(_argv(data, workdir, "--certify", *KNOBS)) == 0 and calls == [2]

    # The batches hold what rpx.certify gives on the maps' images and labels.
    maps = BatchFolder(tiny).read()
    certs = corner_certify.read(tiny)
    assert certs.index.tolist() == maps.index[:4].tolist() == [2, 3, 4, 5]
    direct = certify(
        predict,
        images[2:6],
        labels[2:6].astype(np.int32),
        max_boxes=4,
        search_starts=1,
        search_steps=2,
        chunk_size=64,
        progress=False,
    )
    for key in ("safe", "fooled", "undecided", "witness"):
        np.testing.assert_array_equal(getattr(certs, key), np.asarray(getattr(direct, key)))
    assert certs.batches[0]["settings"]["max_boxes"] == 4
    assert {"wall_seconds", "cpu_seconds"} <= set(certs.batches[0])

    # Other knobs, other weights or other images: refused, nothing written.
    before = sorted(os.listdir(tiny))
    assert main(_argv(data, workdir, "--certify", *KNOBS, "--max-boxes=3")) == 2
    assert "other settings or weights" in capsys.readouterr().err
    path = os.path.join(tiny, "cert-00002-00004.npz")
    with np.load(path) as d:
        part = {k: d[k] for k in d.files}
    want = json.loads(str(part["settings"]))
    foreign = dict(part, settings=np.array(json.dumps(dict(want, parameters="other weights"))))
    np.savez(path, **foreign)
    assert main(_argv(data, workdir, "--certify", *KNOBS)) == 2
    assert "'parameters': ('other weights'" in capsys.readouterr().err
    np.savez(path, **part)
    with pytest.raises(ValueError, match="other data or another classifier"):
        corner_certify.read(tiny, maps.index[1:5])
    assert sorted(os.listdir(tiny)) == before and calls == [2]

    # The report's certify section, against plain loops over the stored arrays.
    assert main(["--report", f"--workdir={workdir}", "--resamples=100"]) == 0
    with open(os.path.join(workdir, "report.json")) as f:
        got = json.load(f)["nets"]["tiny"]["certify"]
    report = open(os.path.join(workdir, "report.md")).read()
    assert "## One pixel of any colour: certificates" in report and "### tiny: 4 images" in report
    cache = rpx.segment.MaskCache(
        mask_path(workdir),
        rpx.segment.GrabCutSettings(),
        json.load(open(os.path.join(workdir, "settings.json")))["data"],
    )
    regions = corner_regions.regions(cache[certs.index], certs.index, seed=0)
    assert list(got["regions"]) == list(corner_regions.REGIONS)
    for name, mask in regions.items():
        _check_region(got["regions"][name], certs, maps.classes[:4], maps.label[:4], mask)
    _check_witnesses(got["witnesses"]["all"], certs.witness[certs.fooled])
    for a, b in (("original", "foreground"), ("foreground", "background")):
        q = got["question"][f"{a}-{b}"]
        rows_a = _brute_region(certs, maps.classes[:4], maps.label[:4], regions[a])[0]
        rows_b = _brute_region(certs, maps.classes[:4], maps.label[:4], regions[b])[0]
        only_a = sum(x[0] and not y[0] for x, y in zip(rows_a, rows_b, strict=True))
        only_b = sum(y[0] and not x[0] for x, y in zip(rows_a, rows_b, strict=True))
        assert (q["any_colour"]["a_only"], q["any_colour"]["b_only"]) == (only_a, only_b)
        undecided = any(not r[0] and not r[1] for r in rows_a + rows_b)
        assert q["exact"] == (not undecided)
        assert f"{a} - {b}, any colour (paired)" in report
    assert got["images"] == 4 and got["timing"]["batches"] == 2


def _brute_region(certs, classes, labels, mask):
    """Per image (fooled, robust, corner-fooled) and pixel counts, by plain loops."""
    rows, px = [], dict(region=0, fooled=0, safe=0, undecided=0, corner=0, missed=0)
    for n in range(len(mask)):
        fooled = robust_ok = corner = False
        robust_ok = True
        for (i, j), inside in np.ndenumerate(mask[n]):
            if not inside:
                continue
            c = any(k >= 0 and k != labels[n] for k in classes[n, i, j])
            px["region"] += 1
            px["fooled"] += bool(certs.fooled[n, i, j])
            px["safe"] += bool(certs.safe[n, i, j])
            px["undecided"] += bool(certs.undecided[n, i, j])
            px["corner"] += c
            px["missed"] += bool(certs.fooled[n, i, j]) and not c
            fooled |= bool(certs.fooled[n, i, j])
            corner |= c
            robust_ok &= bool(certs.safe[n, i, j])
        rows.append((fooled, robust_ok, corner))
    return rows, px


def _check_region(g, certs, classes, labels, mask):
    rows, px = _brute_region(certs, classes, labels, mask)
    fooled = [r[0] for r in rows]
    assert g["any_colour"]["count"] == sum(fooled)
    assert g["corners"]["count"] == sum(r[2] for r in rows)
    assert g["robust"]["count"] == sum(r[1] for r in rows)
    assert g["undecided_images"] == sum(not r[0] and not r[1] for r in rows)
    assert g["missed_by_corners"] == dict(
        images=sum(r[0] and not r[2] for r in rows), pixels=px["missed"]
    )
    assert g["pixels"] == {k: px[k] for k in ("region", "fooled", "safe", "undecided", "corner")}
    assert g["density_any"] == pytest.approx(px["fooled"] / max(px["region"], 1))
    assert g["density_corners"] == pytest.approx(px["corner"] / max(px["region"], 1))
    assert g["corner_pixels_safe"] == 0  # a corner that fools is never proved safe


def _check_witnesses(w, colours):
    saturated = [sum(v in (0.0, 255.0) for v in c) for c in colours.tolist()]
    assert w["pixels"] == len(colours)
    assert w["saturated_channels"] == [saturated.count(k) for k in range(4)]
    far = [
        max(min(v, 255 - v) for v in c)
        for c, s in zip(colours.tolist(), saturated, strict=True)
        if s < 3
    ]
    if far:
        assert w["linf_to_corner"]["max"] == max(far)
        assert w["linf_to_corner"]["mean"] == pytest.approx(np.mean(far))
    else:
        assert w["linf_to_corner"] is None


def test_compare_with_de_against_brute_force():
    """Made-up certificates, maps and DE records: every count of `compare` by loops."""
    rng = np.random.default_rng(0)
    n, h, w = 12, 5, 5
    state = rng.choice(3, (n, h, w), p=[0.85, 0.05, 0.1])  # safe, fooled, undecided
    state[:3] = 0  # three robust images
    fooled = state == 1
    witness = np.where(fooled[..., None], rng.integers(0, 256, (n, h, w, 3)), np.nan)
    witness[fooled & (rng.random((n, h, w)) < 0.5)] = [0, 255, 255]  # some at a corner
    labels = np.zeros(n, int)
    classes = np.zeros((n, h, w, 8), int)
    classes[..., 3] = np.where(fooled & (rng.random((n, h, w)) < 0.5), 2, 0)  # corner fools
    batch = dict(start=0, stop=n, finished="t", settings={}, wall_seconds=1.0, cpu_seconds=1.0)
    certs = corner_certify.Certs(
        np.arange(100, 100 + n),
        labels,
        state == 0,
        fooled,
        state == 2,
        witness.astype(np.float32),
        np.ones((n, h, w), np.int32),
        [batch],
    )
    mask = np.zeros((n, h, w), bool)
    mask[:, 1:4, 1:4] = True
    de = {}
    for i in range(0, n, 2):  # DE ran on every other image, at its first fooled pixel
        hit = np.argwhere(fooled[i] & mask[i])
        pos = hit[0].tolist() if len(hit) and i % 4 else [0, 0]
        de[100 + i] = dict(success=bool(len(hit)) and bool(i % 4), positions=[pos])
    got = corner_cert_analysis.compare(
        certs, classes, labels, {"r": mask, "all": ~mask | mask}, {"r": de}
    )
    for name, m in (("r", mask), ("all", np.ones_like(mask))):
        _check_region(got["regions"][name], certs, classes, labels, m)
    d = got["regions"]["r"]["de"]
    rows, _ = _brute_region(certs, classes, labels, mask)
    seen = list(range(0, n, 2))
    assert d["images"] == len(seen)
    assert d["de"]["count"] == sum(de[100 + i]["success"] for i in seen)
    assert d["any_colour"]["count"] == sum(rows[i][0] for i in seen)
    assert d["missed_by_de"] == sum(rows[i][0] and not de[100 + i]["success"] for i in seen)
    assert d["de_not_vulnerable"] == 0 and d["de_at_safe_pixel"] == 0
    assert "de" not in got["regions"]["all"]
    _check_witnesses(got["witnesses"]["all"], witness[fooled])
    corner_any = classes[..., 3] == 2
    _check_witnesses(got["witnesses"]["no_corner_fools"], witness[fooled & ~corner_any])
    assert got["witnesses"]["all"]["corner"] >= 1
    none = corner_cert_analysis.witnesses(np.zeros((0, 3), np.float32))  # nothing fooled
    assert none == dict(
        pixels=0, corner=0, saturated_channels=[0, 0, 0, 0], linf_to_corner=None, l2_to_corner=None
    )


def test_bad_certify_flags_exit_2(setup, capsys):
    _, data, _, _, _ = setup
    for flag, message in {
        "--max-boxes=0": "--max-boxes must be >= 1",
        "--search-steps=-1": "--search-steps must be >= 0",
    }.items():
        assert main(["--certify", f"--data-file={data}", "--workdir=/nowhere/x", flag]) == 2
        assert message in capsys.readouterr().err
