"""Command lines reproducing the paper: python -m experiments.cifar, experiments.imagenet."""
