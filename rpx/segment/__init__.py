"""Foreground/background segmentation: automatic GrabCut (CIFAR-10) and U^2-Net (ImageNet).

- `grabcut(images, settings)`: uint8 [N, H, W, 3] -> bool [N, H, W], True = foreground.
- `MaskCache` / `build_cache` / `save_masks`: a file of masks computed once and loaded by
  index, tied to its images by `data_identity` (count and content digest). Building one
  for a dataset split is the experiments' `python -m experiments.masks`; this package
  reads no datasets and needs no classifier.
- `u2net`: Flax U2NET / U2NETP and the official inference (`u2net.masks`);
  `load_u2net(path)` reads an official `.pth` checkpoint without torch.
"""

from rpx.segment import u2net
from rpx.segment.cache import MaskCache, build_cache, data_identity, save_masks
from rpx.segment.grabcut import PATHS, GrabCutSettings, centre_prior, grabcut, path_counts
from rpx.segment.pth import load_state_dict
from rpx.segment.u2net import U2NET, U2NETP, U2Net
from rpx.segment.u2net_names import load_u2net, to_variables

__all__ = [
    "PATHS",
    "U2NET",
    "U2NETP",
    "GrabCutSettings",
    "MaskCache",
    "U2Net",
    "build_cache",
    "centre_prior",
    "data_identity",
    "grabcut",
    "load_state_dict",
    "load_u2net",
    "path_counts",
    "save_masks",
    "to_variables",
    "u2net",
]
