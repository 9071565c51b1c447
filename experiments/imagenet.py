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

import cv2
import numpy as np

from experiments import cli, figures, masks, tables

DEFAULTS = dict(
    region="all", models="alexnet,resnet50,vgg16_imagenet", pixels="1", attack="untargeted",
    samples=420, population=400, generations=100, restriction="table", seed=0,
    batch_size=16, workdir="runs/imagenet", classifiers="train/assets",
)  # fmt: skip
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class Images:
    """Random access to resized RGB uint8 images: `images(indices) -> ([M, S, S, 3], labels)`."""

    def __init__(self, args):
        self.size = args.image_size
        self.labels = None  # all labels, where known without reading the images
        if args.image_folder:
            files, labels = folder_files(args.image_folder)
            self.labels = labels
            self.read = lambda i: (cv2.cvtColor(cv2.imread(files[i]), cv2.COLOR_BGR2RGB), labels[i])
            self.total = len(files)
            self.name = f"folder {os.path.abspath(args.image_folder)}"
        else:
            from train import datasets

            src = datasets.source("imagenet2012", args.split, args.data_dir)

            def example(i):
                e = src[i]  # decodes the image: read it once
                return np.asarray(e["image"]), int(e["label"])

            self.read = example
            self.total = len(src)
            self.name = f"imagenet2012/{args.split} from {args.data_dir or 'tfds'}"

    def __call__(self, indices):
        examples = [self.read(int(i)) for i in indices]
        images = np.stack([self._resized(image) for image, _ in examples])
        return images, np.array([label for _, label in examples], np.int64)

    def _resized(self, image):
        if image.shape[:2] == (self.size, self.size):
            return image.astype(np.uint8)
        return cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA)


def folder_files(root: str) -> tuple[list[str], np.ndarray]:
    """Image files under root/<class>/ and their labels (sorted class-folder order)."""
    if not os.path.isdir(root):
        raise ValueError(f"--image-folder {root} is not a folder")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    files, labels = [], []
    for label, name in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(root, name))):
            if f.lower().endswith(IMAGE_SUFFIXES):
                files.append(os.path.join(root, name, f))
                labels.append(label)
    if not files:
        raise ValueError(f"--image-folder {root} holds no images in class sub-folders")
    return files, np.asarray(labels, np.int64)


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
    cli.add_grid_flags(p, DEFAULTS["models"], DEFAULTS["pixels"], DEFAULTS["attack"])
    p.add_argument("--split", default="validation", help="tfds split (default validation)")
    p.add_argument("--image-folder", help="folder of class sub-folders of images")
    p.add_argument("--image-size", type=int, default=224, help="images are resized to this")
    p.add_argument("--u2net", help="official U^2-Net .pth for the foreground masks")
    p.add_argument("--u2net-size", type=int, default=320, help="U^2-Net input size (320)")
    args = cli.resolve(p.parse_args(argv), {}, DEFAULTS)
    grid = cli.grid_from(args, "imagenet2012")
    check_flags(args)
    get = Images(args)
    size = (get.size, get.size, 3)
    loaded = cli.load_classifiers(grid, "imagenet2012", "--data-dir=DATA", size)
    if get.labels is not None:
        cli.check_labels(get.labels, loaded, get.name)
    cache = os.path.join(args.workdir, "masks-u2net.npz")
    foreground = masks.u2net_masks(args.u2net, cache, args.u2net_size)
    print(cli.budget_line(grid, 420))
    settings = dict(
        dataset="imagenet2012", source=get.name, seed=grid.seed, population=grid.population,
        generations=grid.generations, image_size=get.size, u2net=masks.file_identity(args.u2net),
        u2net_size=args.u2net_size,
    )  # fmt: skip
    header = f"# ImageNet results\n\n{cli.budget_line(grid, 420)}; data {get.name}."

    def summarise(records):
        yield tables.write_table(args.workdir, records, header, table3=True)
        yield from figures.write_figures(args.workdir, records, get, foreground=foreground)

    with cli.open_workdir(args.workdir, settings, loaded) as results:
        return cli.run(grid, results, get.total, get, loaded, foreground, summarise)


if __name__ == "__main__":
    sys.exit(main())
