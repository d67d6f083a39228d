"""Test configuration: float64 for the whole suite (the library never flips this itself)."""
from pathlib import Path

import jax
import pytest

jax.config.update("jax_enable_x64", True)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests needing it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (a plain clone has no shared data)")
    return SHARED_DATA
