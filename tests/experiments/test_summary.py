"""experiments.summary: the markdown tables on hand-made records."""

import numpy as np

from experiments import summary


def rec(image, region="original", restriction="table", success=True, generations=1, **kw):
    base = dict(model="allconv", pixels=1, attack="untargeted", target=None, label=3)
    return (
        base
        | dict(
            image=image,
            region=region,
            restriction=restriction,
            success=success,
            generations=generations,
            queries=10 * generations,
            confidence=0.6,
            predicted=5 if success else 3,
        )
        | kw
    )


def test_table2_puts_the_papers_numbers_beside_ours():
    recs = [rec(0), rec(1, success=False), rec(0, region="background", success=False)]
    text = summary.table2_markdown(recs)
    assert "| untargeted1 | 50.00% (12.80%) | 0.00% (6.20%) |" in text
    assert "| confidence_u | 60.00% (74.01%) | - (74.71%) |" in text
    assert "| images (untargeted/targeted) | 2/0 | 1/0 |" in text


def test_table4_mean_generations_with_the_paper():
    recs = [rec(0, generations=2), rec(1, generations=4), rec(2, success=False, generations=6)]
    assert "| allconv | 3.00 (1.63) |" in summary.table4_markdown(recs)


def test_ablation_compares_on_the_images_both_restrictions_ran():
    recs = [
        rec(0, "foreground", "table", True, 2),
        rec(1, "foreground", "table", False, 5),
        rec(2, "foreground", "table", True, 1),  # not run under restore: left out
        rec(0, "foreground", "restore", True, 4),
        rec(1, "foreground", "restore", True, 3),
        rec(0, "original", "table", True, 1),  # original under one restriction only
    ]
    text = summary.ablation_markdown(recs)
    assert "| allconv | 1 | foreground | 2 | 100.00% | 3.50 | 50.00% | 2.00 |" in text
    assert "original" not in text
    assert summary.ablation_markdown([r for r in recs if r["restriction"] == "table"]) == ""


def test_apply_pixels_sets_only_the_changed_pixels():
    image = np.zeros((4, 4, 3), np.uint8)
    r = {"positions": [[1, 2], [-1, -1]], "colors": [[255.0, 10.4, 0.0], [0.0, 0.0, 0.0]]}
    out = summary.apply_pixels(image, r)
    assert out[1, 2].tolist() == [255, 10, 0]
    out[1, 2] = 0
    assert not out.any() and not image.any()


def test_example_grid_outlines_each_attack_region(tmp_path):
    from tests.rpx.test_plots import cyan

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

    paths = summary.write_figures(str(tmp_path / "a"), recs, get, foreground=fg)
    examples = [p for p in paths if p.endswith("examples_allconv.png")]
    assert len(examples) == 1 and cyan(examples[0]).sum() > 50
    assert calls == [([0, 1, 0, 1], (4, 32, 32, 3))]  # masks of the shown images, with them
    paths = summary.write_figures(str(tmp_path / "b"), recs, get)  # no masks, no outline
    assert not cyan([p for p in paths if p.endswith("examples_allconv.png")][0]).any()
