"""The paper's metrics (section IV) as pure functions of attack records (experiments'
own: rpx returns `AttackResult`s; these are what Tables II-IV and Figs. 3-6 report).

A *record* is one attack on one image (one row of an `AttackResult`), as a JSON-able dict
made by `records`; experiments add their own keys (model, region, pixels, image, ...)
and store one record per line. The fields the metrics read:

  attack       "untargeted" or "targeted"
  label        int, the class an untargeted attack drives down (the clean prediction)
  target       int, or None for an untargeted attack
  success      bool
  predicted    int, argmax of the adversarial probabilities
  confidence   float, the adversarial probability of `predicted`
  generations  int, populations evaluated (the initial one counts as 1)
  clean_top    int [k], the k most probable clean classes, most probable first
  clean_top_p  float [k], their clean probabilities
  adv_top      int [k], the k most probable adversarial classes
  adv_p_at_clean_top  float [k], the adversarial probabilities of `clean_top`
  fitness_curve float [G+1] (untargeted records), best p[label] after each population

Rates are fractions in [0, 1]; a metric with nothing to average over is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

TOP = 5  # classes kept per record for Table III (top-1/3/5)
TABLE2_METRICS = ("untargeted1", "confidence_u", "untargeted2", "targeted", "confidence_t")
# Table III rows, in the paper's order: (key, label).
TABLE3_ROWS = (
    ("untargeted", "Untargeted"),
    ("confidence_u", "Confidence_u"),
    ("conf_decrease_top1_succ", "Conf.-Decrease-top1(succ)"),
    ("conf_decrease_top3_unsucc", "Conf.-Decrease-top3(unsucc)"),
    ("conf_decrease_top5_unsucc", "Conf.-Decrease-top5(unsucc)"),
    ("ori_top1_in_top3_succ", "Ori-top1-in-top3(succ)"),
    ("ori_top1_in_top5_succ", "Ori-top1-in-top5(succ)"),
    ("ori_top3_in_top3_unsucc", "Ori-top3-in-top3(unsucc)"),
    ("ori_top5_in_top5_unsucc", "Ori-top5-in-top5(unsucc)"),
)


def records(result, clean_probs, labels, target=None, *, top: int = TOP) -> list[dict]:
    """One record per row of an attack result.

    Args:
      result: an `rpx.AttackResult` (or any object with its fields) with M rows.
      clean_probs: float [M, K], the classifier's probabilities on the clean images.
      labels: int [M], the labels the attack used.
      target: int [M] or None (untargeted).
      top: classes kept for the top-k metrics (min(top, K)).

    Returns:
      M dicts with the fields listed in the module docstring, plus positions (int [k, 2]),
      colors (float [k, C]) and queries. Untargeted records keep their fitness curve.
    """
    adv = np.asarray(result.probs, np.float64)
    clean = np.asarray(clean_probs, np.float64)
    labels = np.asarray(labels)
    m, k = adv.shape
    if clean.shape != (m, k):
        raise ValueError(f"clean_probs must be [M, K] = {(m, k)}, got {clean.shape}")
    if labels.shape != (m,):
        raise ValueError(f"labels must be [M] = ({m},), got {labels.shape}")
    if target is not None and np.shape(target) != (m,):
        raise ValueError(f"target must be [M] = ({m},) or None, got {np.shape(target)}")
    top = min(top, k)
    clean_top = np.argsort(-clean, axis=1, kind="stable")[:, :top]
    adv_top = np.argsort(-adv, axis=1, kind="stable")[:, :top]
    curve = np.asarray(result.fitness_curve)
    out = []
    for i in range(m):
        rec = {
            "attack": "untargeted" if target is None else "targeted",
            "label": int(labels[i]),
            "target": None if target is None else int(target[i]),
            "success": bool(result.success[i]),
            "predicted": int(adv_top[i, 0]),
            "confidence": _round(adv[i, adv_top[i, 0]]),
            "generations": int(result.generations[i]),
            "queries": int(result.queries[i]),
            "clean_top": clean_top[i].tolist(),
            "clean_top_p": [_round(p) for p in clean[i, clean_top[i]]],
            "adv_top": adv_top[i].tolist(),
            "adv_p_at_clean_top": [_round(p) for p in adv[i, clean_top[i]]],
            "positions": np.asarray(result.positions[i]).tolist(),
            "colors": [[_round(c) for c in px] for px in np.asarray(result.colors[i])],
        }
        if target is None:
            rec["fitness_curve"] = [_round(v) for v in curve[i]]
        out.append(rec)
    return out


def _round(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else round(x, 6)


def group(recs: Iterable[dict], *keys: str) -> dict[tuple, list[dict]]:
    """Records grouped by the values of `keys`, in first-seen order."""
    out: dict[tuple, list[dict]] = {}
    for r in recs:
        out.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    return out


def _mean(values) -> float:
    values = [float(v) for v in values]
    return float(np.mean(values)) if values else math.nan


def _split(recs, attack):
    return [r for r in recs if r["attack"] == attack]


def untargeted_from_targeted(recs: Iterable[dict], num_targets: int | None = None) -> float:
    """The paper's Untargeted2: the share of images with at least one successful
    targeted attack. Images are told apart by their "image" key; with `num_targets`,
    only images whose targeted attacks are all present count (an unfinished run)."""
    per_image = group(_split(recs, "targeted"), "image")
    hits = [
        any(r["success"] for r in rs)
        for rs in per_image.values()
        if num_targets is None or len({r["target"] for r in rs}) == num_targets
    ]
    return _mean(hits)


def table2(recs: Iterable[dict], num_targets: int | None = None) -> dict[str, float]:
    """Table II metrics of one cell (one model, region and pixel count).

    Returns {"untargeted1": untargeted success rate, "confidence_u": mean adversarial
    confidence of successful untargeted attacks, "untargeted2": see
    `untargeted_from_targeted`, "targeted": targeted success rate over (image, target)
    pairs, "confidence_t": mean confidence of successful targeted attacks}.
    """
    recs = list(recs)
    unt, tar = _split(recs, "untargeted"), _split(recs, "targeted")
    return {
        "untargeted1": _mean(r["success"] for r in unt),
        "confidence_u": _mean(r["confidence"] for r in unt if r["success"]),
        "untargeted2": untargeted_from_targeted(tar, num_targets),
        "targeted": _mean(r["success"] for r in tar),
        "confidence_t": _mean(r["confidence"] for r in tar if r["success"]),
    }


def mean_generations(recs: Iterable[dict], attack: str = "untargeted") -> float:
    """Table IV: mean generations of the successful attacks of kind `attack`."""
    return _mean(r["generations"] for r in recs if r["attack"] == attack and r["success"])


def conf_decrease(rec: dict, k: int) -> float:
    """Mean over the original top-k classes of (clean probability - adversarial one)."""
    _check_k(rec, k)
    before = rec["clean_top_p"][:k]
    after = rec["adv_p_at_clean_top"][:k]
    return _mean(b - a for b, a in zip(before, after, strict=True))


def ori_in_top(rec: dict, k: int, m: int) -> float:
    """The share of the original top-k classes that are in the adversarial top-m."""
    _check_k(rec, max(k, m))
    return len(set(rec["clean_top"][:k]) & set(rec["adv_top"][:m])) / k


def _check_k(rec, k):
    if len(rec["clean_top"]) < k:
        raise ValueError(f"k: the record keeps the top {len(rec['clean_top'])} classes, not {k}")


def table3(recs: Iterable[dict]) -> dict[str, float]:
    """Table III metrics of the untargeted records of one cell (model and region).

    Keys: "untargeted" (success rate), "confidence_u", and for k in (1, 3, 5) and both
    outcomes o in ("succ", "unsucc"): "conf_decrease_top{k}_{o}" (mean of
    `conf_decrease`), "ori_top1_in_top{m}_{o}" for m in (3, 5) and
    "ori_top{k}_in_top{k}_{o}" for k in (3, 5) (means of `ori_in_top`). Averages are
    over the successful (succ) or unsuccessful (unsucc) attacks; top-k larger than the
    number of classes kept is left out.
    """
    unt = _split(list(recs), "untargeted")
    out = {
        "untargeted": _mean(r["success"] for r in unt),
        "confidence_u": _mean(r["confidence"] for r in unt if r["success"]),
    }
    kept = min((len(r["clean_top"]) for r in unt), default=TOP)
    for outcome, rs in (("succ", [r for r in unt if r["success"]]),
                        ("unsucc", [r for r in unt if not r["success"]])):  # fmt: skip
        for k in (1, 3, 5):
            if k <= kept:
                out[f"conf_decrease_top{k}_{outcome}"] = _mean(conf_decrease(r, k) for r in rs)
        for k, m in ((1, 3), (1, 5), (3, 3), (5, 5)):
            if m <= kept:
                out[f"ori_top{k}_in_top{m}_{outcome}"] = _mean(ori_in_top(r, k, m) for r in rs)
    return out


def target_counts(recs: Iterable[dict], num_targets: int) -> np.ndarray:
    """Fig. 3: float [num_targets + 1], the share of images successfully perturbed to
    exactly 0, 1, ..., num_targets target classes (targeted records, per "image")."""
    per_image = group(_split(recs, "targeted"), "image")
    counts = np.zeros(num_targets + 1)
    for rs in per_image.values():
        hits = len({r["target"] for r in rs if r["success"]})
        if hits > num_targets:
            raise ValueError(f"num_targets: an image has {hits} successful targets")
        counts[hits] += 1
    return counts / max(1, len(per_image))


def class_pairs(recs: Iterable[dict], num_classes: int, attack: str) -> np.ndarray:
    """Figs. 4 and 5: int [K, K], successful attacks of kind `attack` counted by
    (original label, reached class): the predicted class for untargeted attacks, the
    target for targeted ones."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    for r in recs:
        if r["attack"] == attack and r["success"]:
            reached = r["predicted"] if attack == "untargeted" else r["target"]
            matrix[r["label"], reached] += 1
    return matrix


def fitness_curves(recs: Iterable[dict]) -> np.ndarray:
    """Fig. 6: float [M, G+1], the fitness curves of the untargeted records."""
    curves = [r["fitness_curve"] for r in recs if r["attack"] == "untargeted"]
    if not curves:
        return np.zeros((0, 0))
    return np.array([[math.nan if v is None else v for v in c] for c in curves], float)


def common_successes(recs: Iterable[dict], by: str = "region") -> set:
    """The "image" keys whose untargeted attack succeeded for every value of `by`
    (the paper's Fig. 6 draws images attacked successfully in all three regions)."""
    groups = group(_split(list(recs), "untargeted"), by)
    sets = [{r["image"] for r in rs if r["success"]} for rs in groups.values()]
    return set.intersection(*sets) if sets else set()


def success_and_generations(recs: Iterable[dict]) -> dict[str, float]:
    """Ablation cell: untargeted success rate, mean generations of the successful
    attacks and mean queries of all attacks."""
    unt = _split(list(recs), "untargeted")
    return {
        "success": _mean(r["success"] for r in unt),
        "generations": mean_generations(unt),
        "queries": _mean(r["queries"] for r in unt),
        "attacks": len(unt),
    }


def by_cell(
    recs: Iterable[dict], keys: tuple[str, ...], metric: Callable[[list[dict]], object]
) -> dict[tuple, object]:
    """`metric` applied to each group of records sharing the values of `keys`."""
    return {key: metric(rs) for key, rs in group(recs, *keys).items()}
