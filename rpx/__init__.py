"""rpx: region-restricted few-pixel adversarial attacks with differential evolution on JAX."""

from rpx import regions
from rpx.attack import AttackConfig, AttackResult, attack

__all__ = ["AttackConfig", "AttackResult", "attack", "regions"]
