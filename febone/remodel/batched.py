"""Several runs of one bone stepped as one batch, the batch axis spread over devices.

:func:`remodel_batch` is :func:`~.simulation.remodel` for a group of runs (the arms of a
scenario, ``febone run --devices N``) that share the bone, the settings and the calendar: each
run is set up alone (inputs checked, history replayed or checkpoint read, baseline measured),
then every mechanical step of the whole group is one ``vmap`` of the step over the runs,
``jax.shard_map``-ped over a 1-D device mesh (:class:`febone.parallel.DeviceBatch`, the program of
:func:`febone.parallel.map_batch`: no collective, so no batched factorisation can wait on another
device's loop). The batch is padded to a multiple of the device count by repeating its last run,
whose copies are dropped. Between outputs the states stay on the devices; at an output each
run's state is taken from the batch and measured on the host exactly as a lone run measures
it (its AMG refresh, record, fields, checkpoint, then jsonl), so the outputs, files and
checkpoints keep their form and a resumed group (or a lone run) reads them.

Across hosts (``jax.distributed``, ``febone --distributed``): every process runs the same loop
on the whole batch, each device stepping its own members; at the checks and the outputs the
members' check codes and states are gathered to every process
(:func:`jax.experimental.multihost_utils.process_allgather`, as :func:`~febone.parallel.map_batch`
gathers its results), so every process measures every run and returns all the results. Process
0 alone writes the files (jsonl, checkpoints) and reports progress; a resumed group reads the
checkpoints on every process, so the output folder must be shared.

What the runs may differ in: the daily inputs (drives, load factor), the physics (the
mineralisation rate), and, once refreshed at the outputs, the habitual cases' AMG hierarchies
(those leaves of the model are batched; the rest of the model is replicated). A ``vmap``-ped
adaptive loop runs until every member is done and holds the members that are: each run's
answer equals its lone run up to round-off (tested to 1e-10 relative).
"""
from __future__ import annotations

import time
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from ..parallel import DeviceBatch
from .settings import RemodelSettings
from .simulation import _Run, _step

__all__ = ["remodel_batch"]

#: remodel()'s keyword arguments that a batched group must share (the rest may differ per run).
SHARED_ARGS = ("years", "settings", "history_years", "precision")


def remodel_batch(mesh, runs: list, *, devices, cache: dict | None = None) -> list:
    """Remodel ``mesh`` for every run in ``runs`` at once, the runs spread over ``devices``.

    Args:
        mesh: the bone (see :func:`~.simulation.remodel`), the same object for every run.
        runs: one dict per run of :func:`~.simulation.remodel`'s keyword arguments
            (``inputs``, ``years``, ``settings``, ``label``, ``out_dir``, ``resume``,
            ``progress``, ``description``, ``refresh``, ``history_years``, ``baseline_abmd``,
            ``precision``); ``years``, ``settings``, ``history_years`` and ``precision`` must
            be the same in every run (the
            runs then share the model and the calendar), labels must differ.
        devices: a number N or a sequence of devices (:func:`febone.parallel.batch_devices`).
        cache: as :func:`~.simulation.remodel`'s.

    Returns:
        one :class:`~.simulation.RemodelResult` per run, in order; each equals the run's
        :func:`~.simulation.remodel` to round-off.

    Raises:
        ValueError: too many devices, runs that cannot share one batch, repeated labels; and
        what :func:`~.simulation.remodel` raises.
    """
    spread = DeviceBatch(devices)
    if not runs:
        return []
    for name in SHARED_ARGS:
        values = [_key(r.get(name)) for r in runs]
        if len(set(values)) > 1:
            raise ValueError(f"runs batched together must share {name!r}; got {values} (run "
                             f"the others on their own, or in a group of their own)")
    labels = [r.get("label", "run") for r in runs]
    if len(set(labels)) < len(labels):
        raise ValueError(f"runs batched together need different labels (their files); got "
                         f"{labels}")
    cache = {} if cache is None else cache
    progress = [r.get("progress") for r in runs]
    arms = [_Run(mesh, r["inputs"], cache=cache,
                 **{k: r.get(k, d) for k, d in _DEFAULTS.items()}) for r in runs]
    # resumed runs continue from their own checkpoints: runs at one step form one batch
    for step0 in sorted({a.step0 for a in arms}):
        members = [i for i, a in enumerate(arms) if a.step0 == step0]
        _advance([arms[i] for i in members], [progress[i] for i in members], spread)
    return [a.result() for a in arms]


_DEFAULTS = {"years": None, "settings": RemodelSettings(), "label": "run", "out_dir": None,
             "resume": False, "description": None, "refresh": True, "history_years": 0.0,
             "baseline_abmd": None, "precision": None}


def _key(value):
    return repr(value.describe()) if isinstance(value, RemodelSettings) else repr(value)


@lru_cache(maxsize=64)
def _member_step(model_split: tuple, phys_split: tuple, state_def, drives_def, n_days: int):
    """A step of one member (:func:`~.simulation._step`) on flattened pytrees: the model and
    the physics rebuilt from their replicated and batched leaves (``*_split``: the treedef and,
    per leaf, whether it is batched), the state and the daily inputs from their leaves.
    Returns the new state's leaves and the check code."""

    def merge(split, shared, batched):
        treedef, mask = split
        it_s, it_b = iter(shared), iter(batched)
        return jax.tree_util.tree_unflatten(treedef, [next(it_b) if b else next(it_s)
                                                      for b in mask])

    def member_step(shared, member):
        model_shared, phys_shared, t0 = shared
        model_batched, phys_batched, state, days = member
        drives, load_factor = jax.tree_util.tree_unflatten(drives_def, days)
        new, code = _step(merge(model_split, model_shared, model_batched),
                          merge(phys_split, phys_shared, phys_batched),
                          jax.tree_util.tree_unflatten(state_def, state), drives, load_factor,
                          t0, n_days=n_days)
        return jax.tree_util.tree_leaves(new), code

    return member_step


def _same(a, b) -> bool:
    if a is b:
        return True
    if not (hasattr(a, "shape") and hasattr(b, "shape")):
        return bool(np.all(a == b))
    return (a.shape == b.shape and a.dtype == b.dtype
            and bool(jnp.array_equal(jnp.asarray(a), jnp.asarray(b))))


class _Split:
    """The members' pytrees (models, physics) as leaves: those equal in every member
    replicated on the devices (kept between calls while the same objects), those that differ
    (the refreshed AMG hierarchies, a mineralisation rate) stacked and spread with the batch."""

    def __init__(self, put_replicated, put_batched):
        self.put_replicated, self.put_batched = put_replicated, put_batched
        self.replicated = {}                 # id(leaf) -> (leaf, its replicated copy)

    def __call__(self, trees):
        """``((treedef, mask), replicated leaves, batched leaves)``."""
        flat = [jax.tree_util.tree_flatten(t) for t in trees]
        treedef = flat[0][1]
        if any(t != treedef for _, t in flat):
            raise ValueError("the batched runs' models or physics differ in structure")
        columns = list(zip(*(leaves for leaves, _ in flat)))
        mask = tuple(not all(_same(col[0], x) for x in col[1:]) for col in columns)
        shared, batched = [], []
        for col, b in zip(columns, mask):
            if b:
                batched.append(self.put_batched(col))
                continue
            if id(col[0]) not in self.replicated:
                self.replicated[id(col[0])] = (col[0], self.put_replicated(col[0]))
            shared.append(self.replicated[id(col[0])][1])
        return (treedef, mask), shared, batched


def _gathered(tree):
    """``tree``'s batched arrays whole on this process: under jax.distributed each process
    holds only its devices' members, so every process gathers all of them (a collective: every
    process calls it at the same point of the loop); with one process, unchanged."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def _advance(arms: list, progress: list, spread: DeviceBatch) -> None:
    """Steps ``arms`` (set up, all at the same step) to their end as one batch spread over the
    devices, with each arm's checks, outputs and progress as :func:`~.simulation.remodel`
    makes them."""
    a0 = arms[0]
    n, pad = len(arms), spread.padding(len(arms))
    if jax.process_index() != 0:     # under jax.distributed process 0 alone reports progress
        progress = [None] * len(progress)
    members = arms + [arms[-1]] * pad

    def put_batched(column):
        return spread.batched(jnp.stack([jnp.asarray(x) for x in column]))

    def batch(trees):
        """Leaves of the members' ``trees``, stacked and spread; their treedef."""
        flat = [jax.tree_util.tree_flatten(t) for t in trees]
        return [put_batched(col) for col in zip(*(f[0] for f in flat))], flat[0][1]

    split = _Split(spread.replicated, put_batched)
    days, drives_def = batch([(a.days_dev[0], a.days_dev[1]) for a in members])
    state, state_def = batch([a.state for a in members])
    starts = [spread.replicated(np.float64(b)) for b in a0.bounds[:-1]]
    home = [next(iter(jax.tree_util.tree_leaves(a.phys)[0].devices())) for a in arms]
    n_hist, n_steps = a0.n_hist, a0.n_steps
    phys_split, phys_shared, phys_batched = split([a.phys for a in members])
    model_split, model_shared, model_batched = split([a.model for a in members])

    def dispatch(state, k):
        fn = spread.map(_member_step(model_split, phys_split, state_def, drives_def,
                                     a0.n_days(k)))
        new, code = fn((model_shared, phys_shared, starts[k]),
                       (model_batched, phys_batched, state, days))
        return new, (k, code)

    def check(pending):
        k, code = pending
        codes = np.asarray(_gathered(code))
        for i, a in enumerate(arms):
            a.check((k, codes[i]))

    pending = None
    for k in range(a0.step0, n_steps):
        t_step = time.perf_counter()
        state, new_pending = dispatch(state, n_hist + k)
        if pending is not None:
            check(pending)
            for cb in progress:
                if cb is not None:
                    cb(pending[0] - n_hist + 1, n_steps, None)
        pending = new_pending
        if k + 1 in a0.outputs:
            check(pending)
            pending = None
        dt = time.perf_counter() - t_step
        for a in arms:
            a.timing["step_seconds"] += dt
        if k + 1 in a0.outputs:
            recs = []
            every = _gathered(state)
            for i, a in enumerate(arms):
                one = jax.tree_util.tree_unflatten(state_def, [x[i] for x in every])
                recs.append(a.output(jax.device_put(one, home[i]), k))
            if any(a.refresh for a in arms):
                model_split, model_shared, model_batched = split([a.model for a in members])
            for cb, rec in zip(progress, recs):
                if cb is not None:
                    cb(k + 1, n_steps, rec)
    for a in arms:
        a.desc["batch"] = {"runs": n, "padding": pad, "devices": len(spread.devices)}
