"""Host-side check that Dirichlet conditions remove every rigid-body mode."""
from __future__ import annotations

import numpy as np

from ..mesh.topology import connected_components

__all__ = ["UnderConstrainedError", "check_constraints"]



class UnderConstrainedError(ValueError):
    """The supports leave a rigid-body motion free, so the stiffness matrix is singular."""


def _rigid_modes(points: np.ndarray) -> np.ndarray:
    """(n, 3, 6) rigid-body displacement fields at ``points`` (centred, scaled to unit size)."""
    c = points - points.mean(axis=0)
    scale = max(float(np.abs(c).max()), 1e-300)
    x, y, z = (c / scale).T
    n = len(points)
    modes = np.zeros((n, 3, 6))
    modes[:, 0, 0] = modes[:, 1, 1] = modes[:, 2, 2] = 1.0
    modes[:, 1, 3], modes[:, 2, 3] = -z, y  # rotation about x
    modes[:, 0, 4], modes[:, 2, 4] = z, -x  # about y
    modes[:, 0, 5], modes[:, 1, 5] = -y, x  # about z
    return modes


def _direction(v: np.ndarray) -> str:
    v = v / np.linalg.norm(v)
    k = int(np.argmax(np.abs(v)))
    if abs(v[k]) > 0.99:
        return "xyz"[k]
    return "(" + ", ".join(f"{c:.2f}" for c in v) + ")"


def _describe(vec: np.ndarray) -> str:
    """Name a free rigid motion (6-vector of translation and rotation amplitudes)."""
    trans, rot = vec[:3], vec[3:]
    if np.linalg.norm(rot) > 1e-6 * np.linalg.norm(vec):
        return f"rotation about an axis along {_direction(rot)}"
    return f"translation along {_direction(trans)}"


def check_constraints(points: np.ndarray, cells: np.ndarray, fixed: np.ndarray) -> None:
    """Raise :class:`UnderConstrainedError` if a connected part of the mesh can move rigidly.

    A part is properly supported when the 6 rigid-body modes restricted to its fixed dofs
    have rank 6 (tested with a relative singular-value threshold of 1e-8).

    Args:
        points: (n_nodes, 3) coordinates, mm.
        cells: (n_elements, n_en) connectivity.
        fixed: (n_nodes, 3) bool mask of prescribed displacement components.
    """
    labels = connected_components(cells, len(points))
    parts = np.unique(labels)
    for part in parts:
        nodes = np.flatnonzero(labels == part)
        modes = _rigid_modes(points[nodes])  # (n, 3, 6)
        rows = modes[fixed[nodes]]  # (n_fixed_dofs, 6)
        if rows.shape[0] == 0:
            free = ["translation and rotation in every direction (no support at all)"]
        else:
            s, vt = np.linalg.svd(rows, full_matrices=True)[1:]
            s = np.concatenate([s, np.zeros(6 - len(s))])
            null = vt[s <= 1e-8 * max(s.max(), 1e-300)]
            free = [_describe(v) for v in null]
        if free:
            where = "the model" if len(parts) == 1 else f"the mesh part containing node {nodes[0]} ({len(nodes)} nodes)"
            raise UnderConstrainedError(
                f"under-constrained: {where} can move rigidly ({', '.join(sorted(set(free)))}); "
                f"fix more displacement components (e.g. --fix SET:xyz on a support, or fix "
                f"components on a second set away from the first) so no rigid motion is left")
