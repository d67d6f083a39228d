"""JAX's persistent compilation cache for febone's command line.

Compiling a voxel solve takes seconds (5 s at 0.8 M DOF on a 2-core CPU) and is repeated by
every new process; with the cache, a second run on same-shaped inputs loads the executable
instead. The CLI turns it on at command start (:func:`enable_compilation_cache`, called by
:func:`febone.cli.main`); the library never does on import. Python users call the function
themselves.

Folder: ``$FEBONE_CACHE/jax``, else ``$XDG_CACHE_HOME/febone/jax``, else
``~/.cache/febone/jax``. Opt out with ``FEBONE_NO_COMPILATION_CACHE=1`` or
``febone --no-compilation-cache``; a cache folder the user already gave JAX
(``JAX_COMPILATION_CACHE_DIR``) is kept.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

__all__ = ["enable_compilation_cache", "compilation_cache_folder", "OPT_OUT"]

log = logging.getLogger(__name__)

#: environment variable that turns the cache off (any value but "" and "0")
OPT_OUT = "FEBONE_NO_COMPILATION_CACHE"


def compilation_cache_folder() -> Path:
    """``$FEBONE_CACHE/jax``, else ``$XDG_CACHE_HOME/febone/jax``, else ``~/.cache/febone/jax``."""
    if os.environ.get("FEBONE_CACHE"):
        return Path(os.environ["FEBONE_CACHE"]) / "jax"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "febone" / "jax"


def enable_compilation_cache(folder: str | Path | None = None) -> Path | None:
    """Point JAX's persistent compilation cache at ``folder`` (default
    :func:`compilation_cache_folder`) and cache every compiled program, however quick its
    compilation (a voxel run compiles a few large programs and many small ones).

    Returns:
        The folder in use, or ``None`` when turned off (:data:`OPT_OUT`) or the folder
        cannot be created (logged; the run goes on without a cache).
    """
    import jax

    if os.environ.get(OPT_OUT, "") not in ("", "0"):
        return None
    given = jax.config.jax_compilation_cache_dir
    if given:
        return Path(given)
    path = Path(folder) if folder is not None else compilation_cache_folder()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        log.warning("no JAX compilation cache: cannot create %s (%s); set FEBONE_CACHE to a "
                    "writable folder or %s=1", path, err, OPT_OUT)
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return path
