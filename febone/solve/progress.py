"""Throttled solver progress: the device calls the host only every few CG iterations.

A ``jax.debug.callback`` is a device → host crossing (on a GPU a synchronisation of the
stream); made every iteration it costs more than a fast iteration itself. :func:`throttled`
turns a host callback into a :func:`~febone.solve.pcg.pcg` ``monitor`` that crosses only when
the iteration count is a multiple of :data:`PROGRESS_EVERY` (a ``lax.cond``; the other
iterations run no callback at all): a solve of n iterations makes at most n/K + 1 crossings,
and its iterates are those of the solve without progress, bit for bit.
"""
from __future__ import annotations

from typing import Callable

import jax

__all__ = ["PROGRESS_EVERY", "throttled"]

#: CG iterations between two progress callbacks (K): 10 keeps a progress line live (a voxel
#: iteration takes 10 ms to 1 s) at a tenth of the crossings of one per iteration.
PROGRESS_EVERY = 10


def throttled(callback: Callable, every: int = PROGRESS_EVERY) -> Callable:
    """A traced ``monitor(k, rel)`` calling ``callback(k, rel)`` on the host when k % every == 0.

    Args:
        callback: host function of (iteration, relative residual), NumPy scalars.
        every: K ≥ 1, iterations between callbacks.
    """
    if not (isinstance(every, int) and every >= 1):
        raise ValueError(f"progress interval must be an integer ≥ 1 (iterations); got {every!r}")

    def monitor(k, rel):
        jax.lax.cond(k % every == 0, lambda: jax.debug.callback(callback, k, rel),
                     lambda: None)
    return monitor
