"""U^2-Net (Qin et al., 2020) in Flax: the paper's ImageNet foreground segmentation.

Layer for layer the official PyTorch model (github.com/xuebinqin/U-2-Net, model/u2net.py):
RSU-7/6/5/4 and RSU-4F blocks, a six-stage encoder, a five-stage decoder, six side outputs
and a 1x1 fused output. Submodule names follow the official attribute names (`stage1`,
`rebnconvin`, `conv_s1`, `bn_s1`, `side1`, `outconv`, ...) so a PyTorch state dict maps
onto the Flax variables by name (rpx.segment.u2net_names). Layout is NHWC.

Inference follows the official u2net_test.py: resize to 320x320 exactly as its
skimage.transform.resize does, divide by the image's max, normalise with the ImageNet
mean/std, take the fused output (already a sigmoid), min-max normalise it per image,
resize back to the input size (bilinear), threshold.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

# (block, mid_ch, out_ch) of stage1..stage6 then stage5d..stage1d, as in the official
# constructors (in_ch is implied by the input in Flax).
U2NET_STAGES = (
    ("RSU7", 32, 64),
    ("RSU6", 32, 128),
    ("RSU5", 64, 256),
    ("RSU4", 128, 512),
    ("RSU4F", 256, 512),
    ("RSU4F", 256, 512),
    ("RSU4F", 256, 512),
    ("RSU4", 128, 256),
    ("RSU5", 64, 128),
    ("RSU6", 32, 64),
    ("RSU7", 16, 64),
)
U2NETP_STAGES = (
    ("RSU7", 16, 64),
    ("RSU6", 16, 64),
    ("RSU5", 16, 64),
    ("RSU4", 16, 64),
    ("RSU4F", 16, 64),
    ("RSU4F", 16, 64),
    ("RSU4F", 16, 64),
    ("RSU4", 16, 64),
    ("RSU5", 16, 64),
    ("RSU6", 16, 64),
    ("RSU7", 16, 64),
)
_STAGE_NAMES = (
    "stage1",
    "stage2",
    "stage3",
    "stage4",
    "stage5",
    "stage6",
    "stage5d",
    "stage4d",
    "stage3d",
    "stage2d",
    "stage1d",
)


def _pool(x):
    """nn.MaxPool2d(2, stride=2, ceil_mode=True): odd sides keep their last row/column."""
    h, w = x.shape[1:3]
    return nn.max_pool(x, (2, 2), strides=(2, 2), padding=((0, h % 2), (0, w % 2)))


def _upsample_like(x, target):
    """Bilinear resize of x to target's spatial size (F.upsample, align_corners=False)."""
    n, _, _, c = x.shape
    return jax.image.resize(x, (n, *target.shape[1:3], c), method="bilinear")


class REBNCONV(nn.Module):
    """3x3 conv (dilation = padding = dirate) -> BatchNorm -> ReLU."""

    out_ch: int
    dirate: int = 1
    train: bool = False

    @nn.compact
    def __call__(self, x):
        d = self.dirate
        x = nn.Conv(
            self.out_ch, (3, 3), padding=((d, d), (d, d)), kernel_dilation=(d, d), name="conv_s1"
        )(x)
        # PyTorch BatchNorm2d defaults: eps 1e-5, momentum 0.1 (= Flax momentum 0.9).
        x = nn.BatchNorm(
            use_running_average=not self.train, momentum=0.9, epsilon=1e-5, name="bn_s1"
        )(x)
        return nn.relu(x)


class RSU(nn.Module):
    """Residual U-block RSU-L (height L = 7, 6, 5, 4): a small U-Net plus its input."""

    height: int
    mid_ch: int
    out_ch: int
    train: bool = False

    @nn.compact
    def __call__(self, x):
        conv = functools.partial(REBNCONV, train=self.train)
        hxin = conv(self.out_ch, name="rebnconvin")(x)
        skips = []
        hx = hxin
        for i in range(1, self.height):
            hx = conv(self.mid_ch, name=f"rebnconv{i}")(hx)
            skips.append(hx)
            if i < self.height - 1:
                hx = _pool(hx)
        hx = conv(self.mid_ch, dirate=2, name=f"rebnconv{self.height}")(hx)
        for i in range(self.height - 1, 0, -1):
            out = self.out_ch if i == 1 else self.mid_ch
            hx = conv(out, name=f"rebnconv{i}d")(jnp.concatenate([hx, skips[i - 1]], axis=-1))
            if i > 1:
                hx = _upsample_like(hx, skips[i - 2])
        return hx + hxin


class RSU4F(nn.Module):
    """RSU-4F: RSU-4 with dilations 1, 2, 4, 8 instead of pooling (for small maps)."""

    mid_ch: int
    out_ch: int
    train: bool = False

    @nn.compact
    def __call__(self, x):
        conv = functools.partial(REBNCONV, train=self.train)
        hxin = conv(self.out_ch, name="rebnconvin")(x)
        hx1 = conv(self.mid_ch, 1, name="rebnconv1")(hxin)
        hx2 = conv(self.mid_ch, 2, name="rebnconv2")(hx1)
        hx3 = conv(self.mid_ch, 4, name="rebnconv3")(hx2)
        hx4 = conv(self.mid_ch, 8, name="rebnconv4")(hx3)
        hx3d = conv(self.mid_ch, 4, name="rebnconv3d")(jnp.concatenate([hx4, hx3], -1))
        hx2d = conv(self.mid_ch, 2, name="rebnconv2d")(jnp.concatenate([hx3d, hx2], -1))
        hx1d = conv(self.out_ch, 1, name="rebnconv1d")(jnp.concatenate([hx2d, hx1], -1))
        return hx1d + hxin


class U2Net(nn.Module):
    """U^2-Net with a given stage table (U2NET_STAGES or U2NETP_STAGES).

    Call: x float32 [N, H, W, 3] (normalised as `preprocess` does) -> a tuple of 7 arrays
    float32 [N, H, W, out_ch] of probabilities (sigmoid applied, as the official forward
    returns them): the fused output d0, then side outputs d1..d6 upsampled to H x W.
    """

    stages: tuple = U2NET_STAGES
    out_ch: int = 1
    train: bool = False

    def _stage(self, index: int):
        block, mid, out = self.stages[index]
        name = _STAGE_NAMES[index]
        if block == "RSU4F":
            return RSU4F(mid, out, train=self.train, name=name)
        return RSU(int(block[3:]), mid, out, train=self.train, name=name)

    @nn.compact
    def __call__(self, x):
        if x.ndim != 4:
            raise ValueError(f"x must be [N, H, W, C], got shape {x.shape}")
        encoder = []
        hx = x
        for i in range(6):
            hx = self._stage(i)(hx)
            encoder.append(hx)
            if i < 5:
                hx = _pool(hx)
        decoder = [encoder[5]]  # hx6, then hx5d, hx4d, ..., hx1d
        hx = encoder[5]
        for j, i in enumerate(range(4, -1, -1)):  # stage5d (index 6) .. stage1d (index 10)
            hx = _upsample_like(hx, encoder[i])
            hx = self._stage(6 + j)(jnp.concatenate([hx, encoder[i]], axis=-1))
            decoder.append(hx)
        hx1d = decoder[-1]
        sides = []
        for k in range(1, 7):  # side k reads hx{k}d (k < 6) or hx6
            feature = decoder[6 - k]
            d = nn.Conv(self.out_ch, (3, 3), padding=((1, 1), (1, 1)), name=f"side{k}")(feature)
            sides.append(d if k == 1 else _upsample_like(d, hx1d))
        d0 = nn.Conv(self.out_ch, (1, 1), name="outconv")(jnp.concatenate(sides, axis=-1))
        return tuple(jax.nn.sigmoid(d) for d in (d0, *sides))


def U2NET(out_ch: int = 1) -> U2Net:
    """The full U^2-Net (176 MB checkpoint `u2net.pth`)."""
    return U2Net(U2NET_STAGES, out_ch)


def U2NETP(out_ch: int = 1) -> U2Net:
    """The small U^2-Net-P (4.7 MB checkpoint `u2netp.pth`)."""
    return U2Net(U2NETP_STAGES, out_ch)


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] linear map of skimage.transform.resize along one axis (order=1,
    mode="constant", cval=0, anti_aliasing default): a Gaussian prefilter with sigma
    (n_in / n_out - 1) / 2 when shrinking, then linear interpolation at half-pixel-aligned
    positions, both with zeros beyond the edges (which darkens the border on enlarging)."""
    scale = n_in / n_out
    src = (np.arange(n_out) + 0.5) * scale - 0.5
    low = np.floor(src).astype(int)
    frac = src - low
    interp = np.zeros((n_out, n_in))
    for index, weight in ((low, 1.0 - frac), (low + 1, frac)):
        inside = (index >= 0) & (index < n_in)
        interp[np.nonzero(inside)[0], index[inside]] += weight[inside]
    sigma = max(0.0, (scale - 1.0) / 2.0)
    if sigma <= 1e-15:
        return interp.astype(np.float32)
    # interp @ smooth, smooth = scipy.ndimage.gaussian_filter1d (truncate=4.0, zero
    # padding) as a banded matrix, summed tap by tap so no [n_in, n_in] array is built.
    radius = int(4.0 * sigma + 0.5)
    taps = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (taps / sigma) ** 2)
    weights /= weights.sum()
    out = np.zeros_like(interp)
    for tap, weight in zip(taps, weights, strict=True):
        if tap >= 0:
            out[:, tap:] += weight * interp[:, : n_in - tap]
        else:
            out[:, : n_in + tap] += weight * interp[:, -tap:]
    return out.astype(np.float32)


def preprocess(images, size: int = 320) -> jax.Array:
    """uint8 [N, H, W, 3] RGB -> float32 [N, size, size, 3] network input.

    As the official loader (RescaleT then ToTensorLab(flag=0)): skimage.transform.resize
    to size x size (`_resize_matrix`, then clipped to the image's own value range as
    skimage does), divide by the resized image's max, subtract the ImageNet mean and
    divide by its std per channel.
    """
    x = jnp.asarray(images, jnp.float32) / 255.0
    rows = jnp.asarray(_resize_matrix(x.shape[1], size))
    cols = jnp.asarray(_resize_matrix(x.shape[2], size))
    y = jnp.einsum("oh,nhwc,pw->nopc", rows, x, cols, precision="highest")
    lo = jnp.min(x, axis=(1, 2, 3), keepdims=True)
    hi = jnp.max(x, axis=(1, 2, 3), keepdims=True)
    y = jnp.clip(y, lo, hi)
    peak = jnp.max(y, axis=(1, 2, 3), keepdims=True)
    y = y / jnp.where(peak > 0, peak, 1.0)  # an all-black image would divide by 0
    return (y - jnp.asarray(MEAN)) / jnp.asarray(STD)


def saliency(model: U2Net, variables, images, size: int = 320) -> jax.Array:
    """Saliency maps float32 [N, H, W] in [0, 1] for uint8 images [N, H, W, 3].

    Pure JAX (jit it with `model` and `size` static): preprocess, the fused output d0,
    per-image min-max normalisation (official normPRED), bilinear resize to H x W
    (antialiased when shrinking, like the Pillow BILINEAR resize of the official
    save_output; agrees with it to within its uint8 rounding).
    """
    n, h, w, _ = images.shape
    d0 = model.apply(variables, preprocess(images, size))[0][..., 0]
    lo = jnp.min(d0, axis=(1, 2), keepdims=True)
    hi = jnp.max(d0, axis=(1, 2), keepdims=True)
    d0 = (d0 - lo) / jnp.where(hi > lo, hi - lo, 1.0)
    return jax.image.resize(d0, (n, h, w), method="linear", antialias=True)


def masks(
    model: U2Net,
    variables,
    images,
    *,
    size: int = 320,
    threshold: float = 0.5,
    batch_size: int = 8,
) -> np.ndarray:
    """Foreground masks bool [N, H, W] (True = salient) for uint8 images [N, H, W, 3].

    Runs `saliency` jitted, `batch_size` images at a time, and thresholds it.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if size < 32 or size % 32:
        raise ValueError(f"size must be a positive multiple of 32, got {size}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = np.empty(images.shape[:3], bool)
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        maps = _saliency_jit(model, variables, chunk, size)
        out[start : start + len(chunk)] = np.asarray(maps) > threshold
    return out


# Module level, so repeated `masks` calls reuse the compiled program.
_saliency_jit = jax.jit(saliency, static_argnums=(0, 3))
