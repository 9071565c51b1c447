"""The paper's experiments on rpx: python -m experiments.cifar, .imagenet, .corner_maps,
.masks, .mask_figures and .gpu_run, with the paper's metrics, tables and figures (see
experiments/README.md)."""
