"""Reproduce the paper's ImageNet results (Tables III and IV) with U^2-Net masks.

    python -m experiments.imagenet --u2net=u2net.pth --workdir=runs/imagenet
    python -m experiments.imagenet --u2net=u2netp.pth --image-folder=DIR --models=resnet50=W

Images come from tensorflow-datasets imagenet2012 (`--split`, default validation), from
`--data-dir` (DIR/imagenet2012-{split}.npz) or from `--image-folder` (one sub-folder per
class, sorted names = class indices), resized to --image-size (224, as the paper).
Foreground masks: U^2-Net (`--u2net`, an official .pth) on the picked images, cached in
WORKDIR/masks-u2net.npz with a digest of each image (a changed image is refused, not
given another's mask). Results, resume and summaries as experiments.cifar.
"""

from __future__ import annotations

import argparse
import os
import sys

from experiments import classifiers, cli, figures, masks, tables
from experiments.grid.runner import run_grid
from experiments.grid.samples import pick_all
from experiments.images import ResizedImages

# Grid overrides (and other flags) for ImageNet; the rest is `Grid`'s defaults.
DEFAULTS = dict(
    models=dict.fromkeys(("alexnet", "resnet50", "vgg16_imagenet")), pixels=(1,),
    attacks=("untargeted",), samples=420, workdir="runs/imagenet", classifiers="train/assets",
)  # fmt: skip


def check_flags(args) -> None:
    """ValueError naming the first bad ImageNet-specific flag (nothing read yet)."""
    if args.image_size < 8:
        raise ValueError(f"--image-size must be >= 8, got {args.image_size}")
    if args.u2net_size < 32 or args.u2net_size % 32:
        raise ValueError(f"--u2net-size must be a positive multiple of 32, got {args.u2net_size}")
    if not args.u2net or not os.path.isfile(args.u2net):
        raise ValueError(
            f"--u2net must name an official U^2-Net checkpoint (u2net.pth or u2netp.pth from "
            f"github.com/xuebinqin/U-2-Net), got {args.u2net!r}"
        )


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (2 with a message for bad input)."""
    return cli.main_guard(_main, argv)


def _main(argv) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.imagenet", description=__doc__)
    cli.add_grid_flags(p, DEFAULTS)
    p.add_argument("--split", default="validation", help="tfds split (default validation)")
    p.add_argument("--image-folder", help="folder of class sub-folders of images")
    p.add_argument("--image-size", type=int, default=224, help="images are resized to this")
    p.add_argument("--u2net", help="official U^2-Net .pth for the foreground masks")
    p.add_argument("--u2net-size", type=int, default=320, help="U^2-Net input size (320)")
    args = cli.resolve(p.parse_args(argv), {}, DEFAULTS)
    grid = cli.grid_from(args, "imagenet2012")
    check_flags(args)
    images = ResizedImages(args.image_size, args.image_folder, args.split, args.data_dir)
    size = (images.size, images.size, 3)
    loaded = classifiers.load(grid.models, "imagenet2012", "--data-dir=DATA", size)
    if images.labels is not None:
        classifiers.check_labels(images.labels, loaded, images.name)
    cache = os.path.join(args.workdir, "masks-u2net.npz")
    foreground = masks.u2net_masks(args.u2net, cache, args.u2net_size)
    budget = grid.budget_line(paper_samples=420)
    print(budget)
    settings = dict(
        dataset="imagenet2012", source=images.name, image_size=images.size,
        u2net=masks.file_identity(args.u2net), u2net_size=args.u2net_size,
    )  # fmt: skip
    picks = pick_all(grid, images, loaded)  # bad data refused before the workdir is touched
    shape = (images.size, images.size)
    with grid.open_workdir(args.workdir, settings, loaded, images, shape) as results:
        run_grid(grid, results, images, loaded, foreground, picks)
        header = f"# ImageNet results\n\n{budget}; data {images.name}."
        written = [tables.write_table(args.workdir, results.records, header, table3=True)]
        written += figures.write_figures(
            args.workdir, results.records, images, foreground=foreground
        )
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
