"""experiments.tables: the markdown tables on hand-made records."""

from experiments import tables


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
    text = tables.table2_markdown(recs)
    assert "| untargeted1 | 50.00% (12.80%) | 0.00% (6.20%) |" in text
    assert "| confidence_u | 60.00% (74.01%) | - (74.71%) |" in text
    assert "| images (untargeted/targeted) | 2/0 | 1/0 |" in text


def test_table4_mean_generations_with_the_paper():
    recs = [rec(0, generations=2), rec(1, generations=4), rec(2, success=False, generations=6)]
    assert "| allconv | 3.00 (1.63) |" in tables.table4_markdown(recs)


def test_ablation_compares_on_the_images_both_restrictions_ran():
    recs = [
        rec(0, "foreground", "table", True, 2),
        rec(1, "foreground", "table", False, 5),
        rec(2, "foreground", "table", True, 1),  # not run under restore: left out
        rec(0, "foreground", "restore", True, 4),
        rec(1, "foreground", "restore", True, 3),
        rec(0, "original", "table", True, 1),  # original under one restriction only
    ]
    text = tables.ablation_markdown(recs)
    assert "| allconv | 1 | foreground | 2 | 100.00% | 3.50 | 50.00% | 2.00 |" in text
    assert "original" not in text
    assert tables.ablation_markdown([r for r in recs if r["restriction"] == "table"]) == ""
