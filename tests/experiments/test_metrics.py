"""experiments.metrics against hand-computed examples."""

import math
import types

import numpy as np
import pytest

from experiments import metrics


def rec(attack="untargeted", image=0, label=0, target=None, success=False, **kw):
    r = {
        "attack": attack,
        "image": image,
        "label": label,
        "target": target,
        "success": success,
        "predicted": kw.pop("predicted", target if success and target is not None else label),
        "confidence": kw.pop("confidence", 0.5),
        "generations": kw.pop("generations", 1),
        "queries": kw.pop("queries", 10),
    }
    r.update(kw)
    return r


def test_table2_hand_computed():
    recs = [
        # Untargeted: 2 of 4 succeed, with confidences 0.6 and 0.8.
        rec(image=0, success=True, confidence=0.6, predicted=3),
        rec(image=1, success=False, confidence=0.9),
        rec(image=2, success=True, confidence=0.8, predicted=1),
        rec(image=3, success=False, confidence=0.7),
        # Targeted, 2 targets each: image 0 hits one, image 1 none, image 2 both.
        rec("targeted", image=0, label=0, target=1, success=True, confidence=0.5),
        rec("targeted", image=0, label=0, target=2, success=False, confidence=0.9),
        rec("targeted", image=1, label=0, target=1, success=False),
        rec("targeted", image=1, label=0, target=2, success=False),
        rec("targeted", image=2, label=0, target=1, success=True, confidence=0.7),
        rec("targeted", image=2, label=0, target=2, success=True, confidence=0.9),
    ]
    t = metrics.table2(recs)
    assert t["untargeted1"] == pytest.approx(0.5)
    assert t["confidence_u"] == pytest.approx(0.7)
    assert t["untargeted2"] == pytest.approx(2 / 3)  # images 0 and 2 of 3
    assert t["targeted"] == pytest.approx(3 / 6)
    assert t["confidence_t"] == pytest.approx((0.5 + 0.7 + 0.9) / 3)


def test_untargeted2_skips_unfinished_images_when_told_the_target_count():
    recs = [
        rec("targeted", image=0, target=1, success=True),
        rec("targeted", image=0, target=2, success=False),
        rec("targeted", image=1, target=1, success=False),  # target 2 not run yet
    ]
    assert metrics.untargeted_from_targeted(recs) == pytest.approx(0.5)
    assert metrics.untargeted_from_targeted(recs, num_targets=2) == pytest.approx(1.0)


def test_empty_metrics_are_nan():
    t = metrics.table2([rec(success=False)])
    assert t["untargeted1"] == 0.0
    assert math.isnan(t["confidence_u"])
    assert math.isnan(t["targeted"]) and math.isnan(t["untargeted2"])


def test_mean_generations_counts_only_successful_untargeted():
    recs = [
        rec(success=True, generations=1),
        rec(success=True, generations=4),
        rec(success=False, generations=101),
        rec("targeted", target=1, success=True, generations=7),
    ]
    assert metrics.mean_generations(recs) == pytest.approx(2.5)
    assert metrics.mean_generations(recs, "targeted") == pytest.approx(7.0)


def table3_records():
    # Clean top-5 classes 0..4 with probabilities 0.5, 0.2, 0.1, 0.1, 0.05.
    clean = dict(clean_top=[0, 1, 2, 3, 4], clean_top_p=[0.5, 0.2, 0.1, 0.1, 0.05])
    succ = rec(
        success=True,
        predicted=1,
        confidence=0.4,
        adv_top=[1, 0, 5, 2, 3],
        adv_p_at_clean_top=[0.3, 0.4, 0.08, 0.06, 0.04],
        **clean,
    )
    unsucc = rec(
        image=1,
        success=False,
        confidence=0.45,
        adv_top=[0, 1, 5, 6, 2],
        adv_p_at_clean_top=[0.45, 0.2, 0.07, 0.04, 0.05],
        **clean,
    )
    return [succ, unsucc]


def test_table3_hand_computed():
    t = metrics.table3(table3_records())
    assert t["untargeted"] == pytest.approx(0.5)
    assert t["confidence_u"] == pytest.approx(0.4)
    # Successful: top-1 0.5 -> 0.3.
    assert t["conf_decrease_top1_succ"] == pytest.approx(0.2)
    # Unsuccessful: drops 0.05, 0, 0.03 over top-3; plus 0.06, 0 over top-5.
    assert t["conf_decrease_top3_unsucc"] == pytest.approx(0.08 / 3)
    assert t["conf_decrease_top5_unsucc"] == pytest.approx(0.14 / 5)
    # Successful: class 0 is second in the adversarial ranking.
    assert t["ori_top1_in_top3_succ"] == 1.0
    assert t["ori_top1_in_top5_succ"] == 1.0
    # Unsuccessful: of {0, 1, 2}, 0 and 1 are in the adversarial top-3 {0, 1, 5}.
    assert t["ori_top3_in_top3_unsucc"] == pytest.approx(2 / 3)
    # Of {0..4}, 0, 1 and 2 are in the adversarial top-5 {0, 1, 5, 6, 2}.
    assert t["ori_top5_in_top5_unsucc"] == pytest.approx(3 / 5)
    for key, _ in metrics.TABLE3_ROWS:
        assert key in t


def test_ori_in_top_counts_a_dropped_top1():
    r = table3_records()[0] | {"adv_top": [5, 6, 7, 8, 0]}
    assert metrics.ori_in_top(r, 1, 3) == 0.0
    assert metrics.ori_in_top(r, 1, 5) == 1.0
    with pytest.raises(ValueError, match="k"):
        metrics.ori_in_top(r | {"clean_top": [0, 1, 2]}, 5, 5)


def test_target_counts_fig3():
    recs = []
    hits = {0: 0, 1: 2, 2: 2, 3: 3}  # successful targets per image, of 3 targets
    for image, h in hits.items():
        for t in range(3):
            recs.append(rec("targeted", image=image, target=t + 1, success=t < h))
    shares = metrics.target_counts(recs, num_targets=3)
    np.testing.assert_allclose(shares, [0.25, 0.0, 0.5, 0.25])
    with pytest.raises(ValueError, match="num_targets"):
        metrics.target_counts(recs, num_targets=2)


def test_class_pairs_heat_maps():
    recs = [
        rec(label=0, success=True, predicted=2),
        rec(label=0, success=True, predicted=2),
        rec(label=1, success=True, predicted=0),
        rec(label=1, success=False, predicted=1),
        rec("targeted", label=2, target=1, success=True),
        rec("targeted", label=2, target=0, success=False, predicted=1),
    ]
    unt = metrics.class_pairs(recs, 3, "untargeted")
    np.testing.assert_array_equal(unt, [[0, 0, 2], [1, 0, 0], [0, 0, 0]])
    tar = metrics.class_pairs(recs, 3, "targeted")
    np.testing.assert_array_equal(tar, [[0, 0, 0], [0, 0, 0], [0, 1, 0]])


def test_fitness_curves_and_common_successes():
    recs = [
        rec(image=0, region="original", success=True, fitness_curve=[0.9, 0.4, 0.4]),
        rec(image=1, region="original", success=True, fitness_curve=[0.8, 0.7, 0.3]),
        rec(image=0, region="background", success=True, fitness_curve=[0.9, 0.6, 0.2]),
        rec(image=1, region="background", success=False, fitness_curve=[None, None, None]),
    ]
    curves = metrics.fitness_curves(recs)
    assert curves.shape == (4, 3)
    np.testing.assert_allclose(curves[:2].mean(0), [0.85, 0.55, 0.35])
    assert np.isnan(curves[3]).all()
    assert metrics.common_successes(recs) == {0}


def test_success_and_generations_ablation():
    recs = [
        rec(success=True, generations=2, queries=20, restriction="table"),
        rec(success=False, generations=5, queries=50, restriction="table"),
        rec(success=True, generations=6, queries=60, restriction="restore"),
    ]
    cells = metrics.by_cell(recs, ("restriction",), metrics.success_and_generations)
    assert cells[("table",)] == {"success": 0.5, "generations": 2.0, "queries": 35.0, "attacks": 2}
    assert cells[("restore",)]["generations"] == 6.0


def test_records_from_a_result():
    result = types.SimpleNamespace(
        success=np.array([True, False]),
        probs=np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]]),
        generations=np.array([2, 3]),
        queries=np.array([20, 30]),
        positions=np.array([[[1, 2]], [[-1, -1]]]),
        colors=np.array([[[255.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]]]),
        fitness_curve=np.array([[0.8, 0.2, 0.2], [0.9, 0.7, 0.6]]),
    )
    clean = np.array([[0.8, 0.15, 0.05], [0.9, 0.05, 0.05]])
    out = metrics.records(result, clean, np.array([0, 0]))
    assert out[0]["predicted"] == 1 and out[0]["confidence"] == pytest.approx(0.7)
    assert out[0]["clean_top"] == [0, 1, 2] and out[0]["adv_top"] == [1, 2, 0]
    assert out[0]["adv_p_at_clean_top"] == pytest.approx([0.1, 0.7, 0.2])
    assert out[1]["fitness_curve"] == pytest.approx([0.9, 0.7, 0.6])
    assert metrics.conf_decrease(out[0], 1) == pytest.approx(0.7)
    targeted = metrics.records(result, clean, np.array([0, 0]), np.array([1, 2]))
    assert targeted[1]["attack"] == "targeted" and targeted[1]["target"] == 2
    assert "fitness_curve" not in targeted[0]
    with pytest.raises(ValueError, match="clean_probs"):
        metrics.records(result, clean[:1], np.array([0, 0]))
