"""Foreground/background segmentation: automatic GrabCut (CIFAR-10) and U^2-Net (ImageNet)."""

from rpx.segment.grabcut import PATHS, GrabCutSettings, centre_prior, grabcut, path_counts

__all__ = ["PATHS", "GrabCutSettings", "centre_prior", "grabcut", "path_counts"]
