"""rpx: region-restricted few-pixel adversarial attacks with differential evolution on JAX."""

from rpx import regions
from rpx.attack import AttackConfig, AttackResult, attack
from rpx.engine import run
from rpx.pixel_map import PixelMap, pixel_map

__all__ = ["AttackConfig", "AttackResult", "PixelMap", "attack", "pixel_map", "regions", "run"]
