"""rpx: region-restricted few-pixel adversarial attacks with differential evolution on JAX."""

from rpx import regions
from rpx.attack import AttackResult, attack
from rpx.certification import Certificate, certify
from rpx.config import AttackConfig
from rpx.engine import run
from rpx.incremental import one_pixel_probs
from rpx.pixel_map import PixelMap, pixel_map

__all__ = [
    "AttackConfig",
    "AttackResult",
    "Certificate",
    "PixelMap",
    "attack",
    "certify",
    "one_pixel_probs",
    "pixel_map",
    "regions",
    "run",
    "segment",
]


def __getattr__(name):
    # rpx.segment pulls in OpenCV and U^2-Net: imported on first use, so `import rpx`
    # stays light and `rpx.segment.grabcut(...)` still works after a plain `import rpx`.
    if name == "segment":
        import importlib

        return importlib.import_module("rpx.segment")
    raise AttributeError(f"module 'rpx' has no attribute {name!r}")
