"""benchmarks/search_quality.py: the scan as a stopping search, and the report's numbers."""

import json

import numpy as np
import pytest

import rpx
from benchmarks import search_quality, search_quality_report
from tests.experiments.tiny import tiny_predict


def test_scan_rows_count_the_pairs_up_to_the_first_fooling_one():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    predict = tiny_predict()
    labels = np.asarray(predict(images.astype(np.float32))).argmax(1)
    region = np.zeros((3, 32, 32), bool)
    region[:, 4:20, 6:30] = True
    region[2] = False  # an empty region: no success, no queries
    success, queries = search_quality.scan_rows(predict, images, labels, region)
    classes = np.asarray(rpx.pixel_map(predict, images, labels, region).classes)
    for n in range(3):
        tried = [classes[n, y, x, c] for y in range(32) for x in range(32) for c in range(8)
                 if region[n, y, x]]  # fmt: skip
        fooled = [i for i, k in enumerate(tried) if k != labels[n]]
        assert success[n] == bool(fooled)
        assert queries[n] == (fooled[0] + 1 if fooled else len(tried))
    assert not success[2] and queries[2] == 0


def rows(method, spent, max_queries):
    return [
        dict(model="m", pixels=1, region="original", method=method, population=4,
             generations=1, seed=0, image=i, success=q is not None,
             queries=max_queries if q is None else q, max_queries=max_queries)
        for i, q in enumerate(spent)
    ]  # fmt: skip


def test_report_success_at_thresholds_and_median(tmp_path):
    de = rows("de", [500, 3_000, None, None], 4_100)
    scan = rows("scan", [6_000, None, 100, None], 8_192)
    s = search_quality_report.summary(de)
    assert s["at"] == [0.25, 0.5, None, None]  # above its budget: not reported
    assert (s["final"], s["max_queries"], s["median_queries"]) == (0.5, 4_100, 1_750.0)
    assert search_quality_report.summary(scan)["at"] == [0.25, 0.25, 0.5, 0.5]
    table = search_quality_report.markdown(de + scan)
    assert "| m | 1 | original | DE | 4 | 25.0% | 50.0% | - | - | 50.0% (4,100) | 1,750 |" in table
    path = search_quality_report.figure(de + scan, str(tmp_path / "f.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def _row(image, **changes):
    return {"model": "m", "region": "original", "pixels": 1, "method": "de", "population": 4,
            "generations": 1, "seed": 0, "image": image, "success": False, "queries": 8,
            "max_queries": 8} | changes  # fmt: skip


def test_rows_resume_after_a_cut_line_and_corruption_is_refused(tmp_path):
    path = str(tmp_path / "rows.jsonl")
    search_quality.append_rows(path, [_row(0), _row(1)])
    with open(path, "a") as f:
        f.write('{"image": 2, "succ')  # a kill in the middle of a line
    read = search_quality_report.read_rows
    assert read(path) == [_row(0), _row(1)]
    search_quality.append_rows(path, [_row(2)])  # the cut line goes, nothing merges
    assert read(path) == [_row(0), _row(1), _row(2)]
    with open(path, "a") as f:
        f.write("garbage\n")
    search_quality.append_rows(path, [_row(3)])
    with pytest.raises(ValueError, match=r"line 4: not a row"):
        read(path)


@pytest.mark.parametrize(
    "line, message",
    [
        ("not json", "line 2: not a row"),
        ('{"image": 1}', "field 'model' holds None"),
        (json.dumps(_row(1, success="yes")), "field 'success' holds 'yes'"),
        (json.dumps(_row(1, queries=-3)), "a negative count"),
        (json.dumps(_row(1, method="ga")), "field 'method' holds 'ga'"),
        ("[1, 2]", "a row is a JSON object"),
    ],
)
def test_the_report_refuses_a_bad_line_in_one_line_with_status_2(tmp_path, capsys, line, message):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(_row(0)) + "\n" + line + "\n")
    assert search_quality_report.main([str(path), "--figure", str(tmp_path / "f.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}, line 2: not a row") and message in err, err
    assert err.count("\n") == 1 and not (tmp_path / "f.png").exists()


@pytest.mark.parametrize("content", [None, ""])
def test_the_report_of_a_missing_or_empty_file_is_one_line(tmp_path, capsys, content):
    path = tmp_path / "rows.jsonl"
    if content is not None:
        path.write_text(content)
    assert search_quality_report.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and err.count("\n") == 1


def test_mask_cache_refuses_other_images_at_the_same_indices(tmp_path, monkeypatch):
    import rpx.segment

    calls = []

    def fake_grabcut(images, workers=1):
        calls.append(len(images))
        return [im[..., 0] > 100 for im in images]

    monkeypatch.setattr(rpx.segment, "grabcut", fake_grabcut)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    path = str(tmp_path / "masks.npz")
    first = search_quality.foreground_masks(path, images[:2], np.array([5, 9]))
    again = search_quality.foreground_masks(path, images[:3], np.array([5, 9, 11]))
    assert calls == [2, 1]  # only the new image is segmented
    np.testing.assert_array_equal(again[:2], first)
    np.testing.assert_array_equal(again[2], images[2, ..., 0] > 100)
    with pytest.raises(ValueError, match=r"other images at dataset indices \[9\]"):
        search_quality.foreground_masks(path, images[[0, 3]], np.array([5, 9]))
