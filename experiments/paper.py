"""The paper's published numbers (section IV), to print beside ours.

Percentages as in the paper's tables, keyed by our model names (train.models registry)
and region names. Table II: TABLE2[model][metric][region] = (1-, 3-, 5-pixel values).
"""

from __future__ import annotations

REGIONS = ("original", "foreground", "background")
PIXELS = (1, 3, 5)

# Table II (CIFAR-10), columns original/foreground/background x 1/3/5 pixels.
_TABLE2_ROWS = {
    "allconv": {
        "untargeted1": (12.80, 47.00, 51.20, 11.80, 40.20, 41.20, 6.20, 19.40, 20.60),
        "confidence_u": (74.01, 70.12, 75.35, 71.38, 72.75, 77.13, 74.71, 72.32, 80.09),
        "untargeted2": (12.60, 48.20, 55.00, 11.80, 43.60, 45.80, 6.60, 22.20, 24.00),
        "targeted": (2.93, 13.11, 16.84, 2.91, 11.42, 13.27, 1.78, 5.51, 6.84),
        "confidence_t": (67.51, 61.75, 65.99, 66.72, 64.05, 68.58, 68.09, 66.51, 72.07),
    },
    "nin": {
        "untargeted1": (21.00, 67.80, 75.40, 19.20, 59.80, 60.00, 9.80, 35.60, 35.20),
        "confidence_u": (66.40, 63.77, 66.23, 63.67, 64.25, 69.29, 64.14, 64.65, 70.14),
        "untargeted2": (21.00, 69.60, 76.80, 19.40, 64.00, 69.20, 11.40, 40.80, 45.00),
        "targeted": (5.91, 30.62, 38.56, 5.56, 25.07, 28.49, 2.71, 13.84, 16.07),
        "confidence_t": (59.50, 53.41, 54.40, 59.57, 54.71, 57.72, 59.79, 56.41, 60.70),
    },
    "vgg16_cifar": {
        "untargeted1": (43.40, 88.40, 92.00, 41.60, 79.60, 79.00, 18.20, 51.40, 48.20),
        "confidence_u": (70.06, 69.98, 73.80, 70.00, 71.62, 74.82, 67.52, 68.36, 72.40),
        "untargeted2": (44.60, 90.80, 93.20, 42.80, 87.00, 90.60, 20.20, 61.60, 66.80),
        "targeted": (22.78, 68.13, 70.80, 22.33, 61.24, 60.64, 8.82, 35.04, 36.80),
        "confidence_t": (59.38, 51.55, 53.66, 59.94, 53.39, 57.85, 58.40, 54.54, 59.26),
    },
}


def table2(model: str, metric: str, region: str, pixels: int) -> float | None:
    """The paper's Table II value in percent, or None where the paper has none."""
    row = _TABLE2_ROWS.get(model, {}).get(metric)
    if row is None or region not in REGIONS or pixels not in PIXELS:
        return None
    return row[REGIONS.index(region) * 3 + PIXELS.index(pixels)]


def table2_mean(metric: str, region: str, pixels: int) -> float | None:
    """The mean of the paper's three CIFAR-10 networks (shown beside models it lacks)."""
    values = [table2(m, metric, region, pixels) for m in _TABLE2_ROWS]
    return None if None in values else sum(values) / len(values)


# Table IV: mean generations of successful untargeted 1-pixel attacks.
TABLE4 = {
    "allconv": (1.63, 1.77, 3.03),
    "nin": (1.36, 1.48, 2.45),
    "vgg16_cifar": (1.45, 1.69, 4.70),
    "alexnet": (3.12, 4.68, 7.52),
    "resnet50": (1.00, 1.00, 1.20),
    "vgg16_imagenet": (3.00, 3.50, 9.50),
}

# Table III (ImageNet, untargeted 1-pixel), rows as experiments.metrics.TABLE3_ROWS.
TABLE3 = {
    "alexnet": {
        "untargeted": (11.19, 10.71, 6.90),
        "confidence_u": (30.68, 31.14, 29.06),
        "conf_decrease_top1_succ": (11.41, 11.94, 7.09),
        "conf_decrease_top3_unsucc": (0.76, 0.71, 0.52),
        "conf_decrease_top5_unsucc": (0.32, 0.29, 0.21),
        "ori_top1_in_top3_succ": (100.00, 97.78, 100.00),
        "ori_top1_in_top5_succ": (100.00, 100.00, 100.00),
        "ori_top3_in_top3_unsucc": (92.58, 92.53, 95.74),
        "ori_top5_in_top5_unsucc": (92.60, 92.85, 95.19),
    },
    "vgg16_imagenet": {
        "untargeted": (3.81, 3.81, 1.43),
        "confidence_u": (38.12, 38.40, 42.32),
        "conf_decrease_top1_succ": (13.83, 14.45, 8.65),
        "conf_decrease_top3_unsucc": (0.39, 0.37, 0.23),
        "conf_decrease_top5_unsucc": (0.16, 0.15, 0.10),
        "ori_top1_in_top3_succ": (100.00, 100.00, 100.00),
        "ori_top1_in_top5_succ": (100.00, 100.00, 100.00),
        "ori_top3_in_top3_unsucc": (95.06, 95.09, 96.96),
        "ori_top5_in_top5_unsucc": (95.51, 95.48, 96.92),
    },
    "resnet50": {
        "untargeted": (3.57, 3.10, 0.95),
        "confidence_u": (44.92, 43.78, 45.44),
        "conf_decrease_top1_succ": (21.29, 19.23, 11.02),
        "conf_decrease_top3_unsucc": (0.38, 0.37, 0.21),
        "conf_decrease_top5_unsucc": (0.13, 0.13, 0.08),
        "ori_top1_in_top3_succ": (100.00, 100.00, 100.00),
        "ori_top1_in_top5_succ": (100.00, 100.00, 100.00),
        "ori_top3_in_top3_unsucc": (93.40, 93.32, 95.17),
        "ori_top5_in_top5_unsucc": (93.81, 94.01, 96.71),
    },
}


def by_region(table: dict, model: str, key: str | None, region: str) -> float | None:
    """A value of TABLE3 (key given) or TABLE4 (key None) for `region`, or None."""
    row = table.get(model)
    if row is not None and key is not None:
        row = row.get(key)
    if row is None or region not in REGIONS:
        return None
    return row[REGIONS.index(region)]
