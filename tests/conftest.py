"""Test configuration: float64 and deterministic GPU scatters for the whole suite (the library
never flips these itself; febone.precision.configure is the entry points' switch)."""
import os
from pathlib import Path

import jax
import pytest

from febone.precision import configure

configure("float64", deterministic=True)
# the CLI's persistent compilation cache stays off in tests run through febone.cli.main (the
# user's cache folder is not touched); the suite has its own, below
os.environ.setdefault("FEBONE_NO_COMPILATION_CACHE", "1")

#: environment variable naming the suite's compilation cache folder (set by the first pytest
#: process, inherited by the xdist workers; give it to keep a cache between runs)
TEST_CACHE = "FEBONE_TEST_COMPILATION_CACHE"


def pytest_configure(config):
    """One persistent JAX compilation cache for the whole run, shared by the xdist workers.
    Most of the suite's time is XLA compilation, and ``_release_compiled_programs`` drops the
    compiled programs after each module, while many modules compile the same programs (the
    bundled bones' remodelling step, strength and densitometry): they load them from the cache
    instead. A cache changes no answer (an executable is keyed by its program, options and
    backend). The folder is removed at the end unless it was given in the environment."""
    if config.pluginmanager.hasplugin("xdist") and os.environ.get("PYTEST_XDIST_WORKER"):
        folder = os.environ.get(TEST_CACHE)          # a worker: the controller's folder
    elif os.environ.get(TEST_CACHE):
        folder = os.environ[TEST_CACHE]
    else:
        import tempfile

        folder = tempfile.mkdtemp(prefix="febone-test-jax-cache-")
        os.environ[TEST_CACHE] = folder
        config._febone_cache_to_remove = folder
    if folder:
        jax.config.update("jax_compilation_cache_dir", folder)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def pytest_unconfigure(config):
    folder = getattr(config, "_febone_cache_to_remove", None)
    if folder:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module. The whole suite compiles thousands
    of XLA programs in one process; kept alive, their JIT-mapped code accumulated until an XLA
    compilation late in the suite crashed (a segfault in backend compile, reproducible in the
    full suite only, at the same test each time)."""
    yield
    jax.clear_caches()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests needing it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (a plain clone has no shared data)")
    return SHARED_DATA


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str):
    """Import ``examples/<name>.py`` as a module (the examples are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
