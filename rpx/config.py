"""AttackConfig: the settings of a search, validated when built (a hashable jit key)."""

from __future__ import annotations

import dataclasses
import math

from rpx import checks, encoding, search
from rpx.evaluate import EVALUATIONS

RESTRICTIONS = ("table", "restore")


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """Settings of the search; the defaults are the paper's (section IV-B).

    pixels: k, pixels changed per image. population: candidates per generation (DE's
    population size). generations: generations after the initial population.
    mutation: (lo, hi), F drawn from U[lo, hi) each generation; lo == hi fixes F.
    crossover: CR of the binomial crossover. strategy: "best1bin" or "rand1bin". init:
    "lhs" (latin hypercube), "uniform" or "scan" (see below). value_range: (lo, hi) of
    pixel values, the range of `images` and of the colours tried; it must fit the
    images' dtype (whole numbers within the integer range for integer images).
    restriction: "table" (coordinates map only to region pixels) or "restore" (the
    paper's workaround: search the whole image and leave out-of-region pixels
    unchanged). encoding: "rowcol", "flat" or "hilbert", how coordinate genes map to
    pixels (see `rpx.encoding`). chunk_size: candidates per classifier call inside the
    fused program; None picks one for the backend.

    search: "de" (differential evolution, the paper's) or "sparse_rs" (a region-
    restricted Sparse-RS, `rpx.search.sparse_rs`: each generation proposes `population`
    changes of the current best set of k (pixel, corner colour) pairs, resampling a
    share of its pixels that shrinks with Sparse-RS's L0 schedule from `p_init`, and
    keeps the best proposal when it improves the fitness). Both spend at most
    `population * (generations + 1)` queries and use the same fitness, early stop and
    randomness. mutation, crossover, strategy and init are DE's; sparse_rs draws its
    own initial sets (k distinct pixels of the region, or of the whole image under
    "restore", with random corner colours) and samples pixels uniformly whatever the
    `encoding`. p_init: Sparse-RS's initial share of the k pixels resampled per
    proposal, in (0, 1] (0.3, the L0 default of Sparse-RS's eval.py); at least one
    pixel is always resampled.

    init="scan" (DE only) first runs the corner scan of each image's search pixels
    (the region; the whole image under "restore"): every pixel times the 2**C corners
    of the colour cube, `population` candidates per step, pixels in row-major order
    (along the curve with encoding="hilbert"), the last step padded with repeats that
    are not counted. It stops as soon as a step holds a success: the image is then
    done, with `generations` 0 and `queries` the scan's evaluations up to that step.
    Otherwise DE starts with its full budget (generations + 1 populations) from the
    scan's best candidates, best first (`rpx.search.scan.seed_population`), the rest of the
    initial population latin hypercube; `queries` counts the scan's evaluations too,
    so an image may spend up to (pixels it can pick) * 2**C + population *
    (generations + 1).

    evaluation: how one-pixel candidates are scored. "full" runs predict on every
    candidate image; "incremental" recomputes only the changed pixel's receptive field
    from the slot's clean activations, cached when the image is loaded
    (`rpx.incremental`: exact within float tolerance, ops it cannot follow run in
    full; the cache costs `rpx.incremental.analyse(predict, (H, W, C)).cache_bytes`
    per slot, held at once: one slot per image in `rpx.attack`, batch_size slots in
    `rpx.run`, e.g. 2.5 GiB for 1,000 images at NiN's 2.57 MiB); "auto" (the default)
    is "incremental" when pixels == 1, the analysis predicts a saving and the slots'
    caches together fit `rpx.evaluate.CACHE_BUDGET_BYTES` (256 MiB) and its program
    builds (`rpx.evaluate.choose`), else "full". k > 1 always uses the full pass.
    Either way the reported probs come from one full pass over the returned images
    (`rpx.AttackResult`).

    k larger than a region's pixel count is allowed: such an image changes every
    pixel of its region at most once, and the pixel slots left without a distinct
    pixel change nothing and are reported as (-1, -1) (see `rpx.AttackResult`).
    """

    pixels: int = 1
    population: int = 400
    generations: int = 100
    mutation: tuple[float, float] = (0.5, 1.0)
    crossover: float = 1.0
    strategy: str = "best1bin"
    init: str = "lhs"
    value_range: tuple[float, float] = (0.0, 255.0)
    restriction: str = "table"
    encoding: str = "rowcol"
    chunk_size: int | None = None
    search: str = "de"
    p_init: float = 0.3
    evaluation: str = "auto"

    def __post_init__(self):
        _check_fields(self)
        # Tuples of floats, so that equal configs hash alike (the config is a jit key).
        object.__setattr__(self, "mutation", tuple(float(m) for m in self.mutation))
        object.__setattr__(self, "value_range", tuple(float(v) for v in self.value_range))
        object.__setattr__(self, "crossover", float(self.crossover))
        object.__setattr__(self, "p_init", float(self.p_init))


def resolve(config) -> AttackConfig:
    """`config`, or the paper's settings for None; TypeError for anything else."""
    if config is None:
        return AttackConfig()
    if not isinstance(config, AttackConfig):
        raise TypeError(
            f"config must be an rpx.AttackConfig or None, got {type(config).__name__}"
            + (" (build one with rpx.AttackConfig(**d))" if isinstance(config, dict) else "")
        )
    return config


def _check_fields(config) -> None:
    checks.positive_int("pixels", config.pixels, 1)
    checks.positive_int("population", config.population, 4)
    checks.positive_int("generations", config.generations, 0)
    if config.chunk_size is not None:
        checks.positive_int("chunk_size", config.chunk_size, 1)
    lo_hi = checks.pair("mutation", config.mutation)
    if not 0.0 <= lo_hi[0] <= lo_hi[1] <= 2.0:
        raise ValueError(f"mutation must satisfy 0 <= lo <= hi <= 2, got {config.mutation}")
    cr = config.crossover
    if isinstance(cr, bool) or not (isinstance(cr, int | float) and 0.0 <= cr <= 1.0):
        raise ValueError(f"crossover must be a number in [0, 1], got {cr!r}")
    lo, hi = checks.pair("value_range", config.value_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"value_range must be finite with lo < hi, got {config.value_range}")
    checks.one_of("strategy", config.strategy, search.STRATEGIES)
    checks.one_of("init", config.init, search.INITS)
    checks.one_of("restriction", config.restriction, RESTRICTIONS)
    checks.one_of("encoding", config.encoding, encoding.ENCODINGS)
    checks.one_of("search", config.search, search.SEARCHES)
    checks.one_of("evaluation", config.evaluation, EVALUATIONS)
    p = config.p_init
    if isinstance(p, bool) or not (isinstance(p, int | float) and 0.0 < p <= 1.0):
        raise ValueError(f"p_init must be a number in (0, 1], got {p!r}")
    if config.init in search.WARMUP_TYPES and config.search not in search.SEEDABLE:
        raise ValueError(
            f"init={config.init!r} seeds {' or '.join(search.SEEDABLE)}; "
            f"search={config.search!r} draws its own initial sets (use init='lhs' or "
            "'uniform', which it ignores)"
        )
