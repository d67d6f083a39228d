"""Test configuration: float64 and deterministic GPU scatters for the whole suite (the library
never flips these itself; febone.precision.configure is the entry points' switch)."""
import os
from pathlib import Path

import jax
import pytest

from febone.precision import configure

configure("float64", deterministic=True)
# the CLI's persistent compilation cache stays off in tests run through febone.cli.main
os.environ.setdefault("FEBONE_NO_COMPILATION_CACHE", "1")

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
