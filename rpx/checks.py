"""Input validation for `rpx.attack`, `rpx.run` and `rpx.pixel_map`: clear errors naming
the argument at fault.

Shape checks always run. Checks on values (label ranges, finiteness, value_range) run
only on concrete arrays, so `rpx.attack` still works under the caller's `jax.jit`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# Rows of a probability vector sum to 1 within this; bf16 models (about 3 significant
# digits per value) pass, logits practically never do.
PROBABILITY_TOLERANCE = 0.02


def check_inputs(
    predict,
    images,
    labels,
    region,
    target,
    config,
    to_device=True,
    target_columns=False,
    params=None,
):
    """Validated (images, labels int32, region bool or None, target int32 or None).

    to_device=False keeps host (numpy) images on the host; target_columns=True also
    accepts target int [N, T] (T targets per image); params not None: predict is called
    as predict(params, x).
    """
    if not callable(predict):
        raise ValueError(f"predict must be callable, got {type(predict).__name__}")
    images = as_array(images, "images") if to_device else _as_host(images, "images")
    if images.ndim != 4:
        raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}")
    kind = images.dtype
    if not (jnp.issubdtype(kind, jnp.integer) or jnp.issubdtype(kind, jnp.floating)):
        raise ValueError(f"images must be an integer or float array, got dtype {images.dtype}")
    n, h, w, c = images.shape
    if n == 0 or h == 0 or w == 0 or c == 0:
        raise ValueError(f"images must not have an empty dimension, got shape {images.shape}")
    check_value_range(config.value_range, kind)
    num_classes = num_classes_of(predict, images.shape, params)

    labels = _class_vector("labels", labels, n, num_classes)
    if target is not None:
        columns = target_columns and np.ndim(target) == 2
        target = _class_vector("target", target, n, num_classes, columns)
        if columns:
            equal = np.asarray(target) == np.asarray(labels)[:, None] if _concrete(target) else 0
        else:
            equal = np.asarray(labels) == np.asarray(target) if _concrete(labels, target) else 0
        if np.any(equal):
            bad = np.flatnonzero(np.reshape(equal, (n, -1)).any(1))
            raise ValueError(f"target must differ from labels; equal at image indices {bad[:10]}")
    if region is not None:
        region = as_array(region, "region")
        if region.dtype != bool:
            raise ValueError(f"region must be a bool mask, got dtype {region.dtype}")
        if region.shape not in ((h, w), (n, h, w)):
            raise ValueError(
                f"region must be [N, H, W] = {(n, h, w)} or [H, W] = {(h, w)}, got {region.shape}"
            )

    if _concrete(images):
        values = np.asarray(images)
        if not np.all(np.isfinite(values)):
            bad = np.flatnonzero(~np.isfinite(values).reshape(n, -1).all(1))
            raise ValueError(f"images must be finite; non-finite values in images {bad[:10]}")
        lo, hi = config.value_range
        if values.min() < lo or values.max() > hi:
            raise ValueError(
                f"images must lie in value_range {config.value_range}, got values in "
                f"[{values.min()}, {values.max()}]"
            )
        if _concrete(*jax.tree.leaves(params)):
            check_probabilities(predict, values[:2], params)
    return images, labels, region, target


def check_value_range(value_range, dtype) -> None:
    """ValueError if images of `dtype` cannot hold every colour of `value_range`: the
    colour stored in the returned image would differ (clipped, wrapped or rounded) from
    the one the model was shown."""
    lo, hi = value_range
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if lo != round(lo) or hi != round(hi) or lo < info.min or hi > info.max:
            raise ValueError(
                f"value_range {tuple(value_range)} does not fit images of dtype {dtype}, which "
                f"hold whole numbers in [{info.min}, {info.max}]"
            )
    else:
        big = float(jnp.finfo(dtype).max)
        if lo < -big or hi > big:
            raise ValueError(
                f"value_range {tuple(value_range)} does not fit images of dtype {dtype}, which "
                f"hold values in [{-big}, {big}]"
            )


def check_probabilities(predict, images, params=None) -> None:
    """Run `predict` once on a few (concrete) clean images and refuse output that is not
    finite or not a probability vector per row (the fitness is a probability)."""
    x = jnp.asarray(images, jnp.float32)
    out = jax.jit(predict)(x) if params is None else jax.jit(predict)(params, x)
    _check_rows(out, "clean images")


def check_confirmed(probs) -> None:
    """The probe's contract on the probabilities [N, K] of the images a result returns
    (the full-pass confirmation): a predict that returns probabilities on clean images
    but not on perturbed ones must not have its outputs reported as successes. Runs
    only on concrete arrays (not under the caller's jit)."""
    if _concrete(probs):
        _check_rows(probs, "the returned (perturbed) images")


def _check_rows(out, on: str) -> None:
    """ValueError unless every row of out [B, K] is finite and a probability vector."""
    out = np.asarray(out, np.float64)
    if out.size == 0:
        return
    if not np.all(np.isfinite(out)):
        raise ValueError(
            "predict must return finite probabilities; it returned non-finite values "
            f"(NaN or inf) on {on} {np.flatnonzero(~np.isfinite(out).all(1))[:10]}"
        )
    tol = PROBABILITY_TOLERANCE
    sums = out.sum(1)
    if out.min() < -tol or out.max() > 1 + tol or np.abs(sums - 1).max() > tol:
        raise ValueError(
            f"predict must return probabilities (rows in [0, 1] summing to 1), on {on} got "
            f"values in [{out.min():.4g}, {out.max():.4g}] with row sums in "
            f"[{sums.min():.4g}, {sums.max():.4g}]: if it returns logits, apply "
            "jax.nn.softmax to its output"
        )


def check_color_values(colors, value_range, whole, within=None) -> np.ndarray:
    """float64 colours of the concrete array `colors` (any shape): ValueError unless they
    are numbers, finite, in `value_range` (named `within` in the message; default
    "value_range (lo, hi)") and, with `whole`, whole numbers (integer images)."""
    values = np.asarray(colors)
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise ValueError(f"colors must be numbers, got dtype {values.dtype}")
    values = values.astype(np.float64)
    lo, hi = value_range
    if not np.all(np.isfinite(values)) or values.min() < lo or values.max() > hi:
        raise ValueError(
            f"colors must be finite and lie in {within or f'value_range {value_range}'}, got "
            f"values in [{values.min()}, {values.max()}]"
        )
    # An integer image cannot hold a fractional colour: the tried image would differ
    # from the image whose fitness is reported.
    if whole and not np.all(values == np.round(values)):
        raise ValueError("colors must be whole numbers for integer images")
    return values


def dtype_range(dtype) -> tuple[float, float]:
    """(lo, hi): the values images of `dtype` hold (finite ones for floats)."""
    info = jnp.iinfo(dtype) if jnp.issubdtype(dtype, jnp.integer) else jnp.finfo(dtype)
    return float(info.min), float(info.max)


def check_key(key) -> None:
    """TypeError/ValueError unless `key` is one PRNG key (jax.random.key or PRNGKey)."""
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    if dtype is None or not hasattr(key, "ndim"):
        raise TypeError(
            f"key must be a PRNG key such as jax.random.key(0), got {type(key).__name__}"
        )
    typed = jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    if not ((typed and shape == ()) or (not typed and dtype == jnp.uint32 and shape == (2,))):
        raise ValueError(
            "key must be one PRNG key such as jax.random.key(0) (or a uint32 [2] "
            f"jax.random.PRNGKey), got dtype {dtype} shape {shape}"
        )


def num_classes_of(predict, images_shape, params=None) -> int:
    """K of predict's probabilities [B, K] for images [B, H, W, C] (ValueError if not);
    predict(params, x) when params is not None."""
    h, w, c = images_shape[1:]
    x = jax.ShapeDtypeStruct((2, h, w, c), jnp.float32)
    try:
        out = jax.eval_shape(predict, x) if params is None else jax.eval_shape(predict, params, x)
    except Exception as error:  # the user's function failed on the images' shape
        raise ValueError(f"predict failed on float32 [B, {h}, {w}, {c}] input: {error}") from error
    shape = getattr(out, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != 2:
        raise ValueError(f"predict must map [B, H, W, C] to probabilities [B, K], got {shape}")
    return shape[1]


def _class_vector(name, values, n, num_classes, columns=False):
    values = as_array(values, name)
    if columns:
        if values.ndim != 2 or values.shape[0] != n or values.shape[1] == 0:
            raise ValueError(
                f"{name} must be [N] or [N, T] with N = {n} and T >= 1, got {values.shape}"
            )
    elif values.shape != (n,):
        raise ValueError(f"{name} must be [N] = ({n},), got shape {values.shape}")
    if not jnp.issubdtype(values.dtype, jnp.integer):
        raise ValueError(f"{name} must be integers, got dtype {values.dtype}")
    if _concrete(values):
        v = np.asarray(values)
        if v.min() < 0 or v.max() >= num_classes:
            raise ValueError(
                f"{name} must be class indices in [0, {num_classes}), got values in "
                f"[{v.min()}, {v.max()}]"
            )
    return values.astype(jnp.int32)


def as_array(x, name):
    return x if isinstance(x, jax.Array) else jnp.asarray(_as_host(x, name))


def _as_host(x, name):
    """x as a host array, ValueError naming `name` if JAX would change its values."""
    if isinstance(x, jax.Array):
        return x
    x = np.asarray(x)
    # Without jax_enable_x64 JAX stores int64 as int32 (uint64 as uint32), wrapping
    # larger values silently: label 2**32 + 1 would become class 1.
    kept = jax.dtypes.canonicalize_dtype(x.dtype)
    if x.dtype.kind in "iu" and kept != x.dtype and x.size:
        info = np.iinfo(kept)
        if x.min() < info.min or x.max() > info.max:
            raise ValueError(
                f"{name} has values in [{x.min()}, {x.max()}], beyond the {kept} "
                f"[{info.min}, {info.max}] JAX stores {x.dtype} as"
            )
    return x


def _concrete(*arrays) -> bool:
    return not any(isinstance(a, jax.core.Tracer) for a in arrays)


def positive_int(name, value, least):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")


def pair(name, value):
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (lo, hi) of numbers, got {value!r}") from None
    return lo, hi


def one_of(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
