"""Test-session settings shared by the whole suite."""

import contextlib
import gc
import json
import os
import sys

import pytest

SUITE_LEVEL, OPTIMISED_LEVEL = 0, 2  # LLVM optimisation: the suite's, `xla_optimised` tests'

# Tests compile many small XLA programs and run each briefly: a lower LLVM
# optimisation level cuts CPU compile time about threefold (measured: 12 s -> 3.7 s
# for one fused attack), and XLA's older CPU fusion emitters compile in about half the
# time of the new ones (measured 2026-12-03, jaxlib 0.10.2: one planted-model attack
# 2.5 s -> 1.1 s, tests/rpx/test_attack.py alone 132 s -> 83 s). Set before jax loads.
os.environ["XLA_FLAGS"] = " ".join(
    filter(
        None,
        [
            os.environ.get("XLA_FLAGS"),
            f"--xla_backend_optimization_level={SUITE_LEVEL}",
            "--xla_cpu_use_fusion_emitters=false",
        ],
    )
)

# The suite runs in two worker processes (pyproject's addopts): on an accelerator neither
# may take most of its memory up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402  (after XLA_FLAGS)
from jax._src import compiler as _compiler  # noqa: E402  (private: see _xla_optimised)

# Seconds each test module took in a whole-suite run (two workers): the order in which
# the modules are handed to the workers. Regenerate after large changes with
# `python -m pytest --module-seconds=tests/module_seconds.json`; stale or missing entries
# cost balance, never correctness.
MODULE_SECONDS = os.path.join(os.path.dirname(__file__), "module_seconds.json")
UNKNOWN_MODULE_SECONDS = 5.0


def pytest_addoption(parser):
    parser.addoption(
        "--module-seconds",
        metavar="PATH",
        help="write each test module's seconds in this run to PATH (JSON), for conftest's order",
    )


def _module(nodeid: str) -> str:
    return nodeid.split("::")[0]


def pytest_collection_modifyitems(items):
    """The longest modules first (by MODULE_SECONDS): with pyproject's `--dist loadfile
    --no-loadscope-reorder` each worker takes the next module as it frees, so the run
    ends on short modules and neither worker is left running a long one alone (an order
    by markers left test_sparse_rs, 36 s, to run last)."""
    try:
        with open(MODULE_SECONDS) as f:
            seconds = json.load(f)
    except (OSError, ValueError):
        seconds = {}
    if not isinstance(seconds, dict):
        seconds = {}

    def key(item):
        value = seconds.get(_module(item.nodeid), UNKNOWN_MODULE_SECONDS)
        return -value if isinstance(value, (int, float)) else -UNKNOWN_MODULE_SECONDS

    items.sort(key=key)  # stable: the order within a module is kept


_seconds_spent: dict = {}


def pytest_runtest_logreport(report):
    """Setup, call and teardown seconds per module (in the controller, every worker's)."""
    module = _module(report.nodeid)
    _seconds_spent[module] = _seconds_spent.get(module, 0.0) + report.duration


def pytest_sessionfinish(session):
    path = session.config.getoption("module_seconds")
    if path and "PYTEST_XDIST_WORKER" not in os.environ:
        ordered = dict(sorted(_seconds_spent.items(), key=lambda kv: -kv[1]))
        with open(path, "w") as f:
            json.dump({k: round(v, 1) for k, v in ordered.items()}, f, indent=1)
            f.write("\n")


# Compiled programs are dropped only once a worker holds this many memory mappings.
MAX_MAPPINGS = 30_000


def _mappings() -> int:
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:  # not Linux: drop them after every module
        return MAX_MAPPINGS


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop jax's compiled programs once they hold many memory mappings. Every compiled
    XLA program keeps memory mappings of its code; over the whole suite they grew past the
    kernel's vm.max_map_count (65,530 by default: measured 65,459 mappings when it
    happened) and the next compile segfaulted inside LLVM when its mmap failed. Kept
    until then, programs (and the small ones behind eager jnp calls) compiled by one
    module serve the next."""
    yield
    if _mappings() >= MAX_MAPPINGS:
        jax.clear_caches()
        gc.collect()


@contextlib.contextmanager
def _optimised_level():
    """Programs compiled inside compile at XLA's default LLVM level (2) instead of the
    suite's 0, in this process and in the subprocesses started inside. In this process
    the level is a per-compile override of XLA_FLAGS, passed as `jax.jit(compiler_options=
    ...)` passes one, through jax's private `get_compile_options`: should that change,
    these programs compile unoptimised, run slower and as correct. Programs already
    compiled at one level serve calls at the other."""
    with pytest.MonkeyPatch.context() as patch:
        suite = f"--xla_backend_optimization_level={SUITE_LEVEL}"
        optimised_flag = f"--xla_backend_optimization_level={OPTIMISED_LEVEL}"
        patch.setenv("XLA_FLAGS", os.environ["XLA_FLAGS"].replace(suite, optimised_flag))
        compile_options = getattr(_compiler, "get_compile_options", None)
        if compile_options is not None:

            def optimised(*args, env_options_overrides=None, **kwargs):
                overrides = {
                    "xla_backend_optimization_level": OPTIMISED_LEVEL,
                    **(env_options_overrides or {}),
                }
                return compile_options(*args, env_options_overrides=overrides, **kwargs)

            patch.setattr(_compiler, "get_compile_options", optimised)
        yield


@pytest.fixture
def xla_optimised_level():
    """A context manager, for a test that optimises only some of its programs: those
    compiled inside it compile as `xla_optimised` tests' programs do."""
    return _optimised_level


@pytest.fixture(autouse=True)
def _xla_optimised(request):
    """Tests marked `xla_optimised` run inside `_optimised_level`: their programs run
    longer than they compile (bound passes of rpx.certify on a CIFAR net: corner_maps/
    test_certify.py's resume test 15.1 s at the suite's level, 7.4 s at level 2, -n 0,
    2026-12-04)."""
    if request.node.get_closest_marker("xla_optimised") is None:
        yield
        return
    with _optimised_level():
        yield


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """A worker process ends here, without Python's shutdown: that would free every
    compiled XLA program the worker still holds, one at a time (jax's exit handler; 1,600
    small programs took 2.8 s, a whole suite's worker most of the 10 s between the last
    test and the end of the run), after the worker has already sent the controller its
    last report ("workerfinished", before this hook), which is all it owes it."""
    if "PYTEST_XDIST_WORKER" not in os.environ or not hasattr(config, "workeroutput"):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
