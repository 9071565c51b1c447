"""Test-session settings shared by the whole suite."""

import gc
import os
import shutil
import tempfile

import pytest

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
            "--xla_backend_optimization_level=0",
            "--xla_cpu_use_fusion_emitters=false",
        ],
    )
)

# The suite runs in two worker processes (pyproject's addopts): on an accelerator neither
# may take most of its memory up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402  (after XLA_FLAGS)

# One persistent compilation cache per test session, shared by its workers through the
# environment and removed at the end: a program compiled again (in a later module, after
# the caches are cleared, or in the other worker) is read back instead of recompiled.
CACHE_ENV = "RPX_TEST_COMPILATION_CACHE"


def pytest_configure(config):
    if not hasattr(config, "workerinput") and CACHE_ENV not in os.environ:
        os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix="rpx-test-xla-")
        config._rpx_cache = os.environ[CACHE_ENV]
    jax.config.update("jax_compilation_cache_dir", os.environ[CACHE_ENV])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def pytest_unconfigure(config):
    if getattr(config, "_rpx_cache", None):
        shutil.rmtree(config._rpx_cache, ignore_errors=True)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop jax's compiled programs after each test module. Every compiled XLA program
    keeps memory mappings of its code; over the whole suite they grew past the kernel's
    vm.max_map_count (65,530 by default: measured 65,459 mappings when it happened) and
    the next compile segfaulted inside LLVM when its mmap failed."""
    yield
    jax.clear_caches()
    gc.collect()
