"""The paper's experiments on rpx: python -m experiments.cifar, .imagenet, .pixel_maps and
.masks, with the paper's metrics, tables and figures (see experiments/README.md)."""
