"""Data parallelism: a batch axis (arms, parameter sets, patients) spread over devices.

The members of a batch are independent, so each device runs ``vmap`` over its own share
(``jax.shard_map`` over a 1-D :class:`jax.sharding.Mesh` with the axis ``"batch"``) and the
devices never talk during the run: the compiled program holds no all-gather and no
all-reduce. (A ``jit`` with the batch merely sharded by ``NamedSharding`` would all-reduce a
vmapped CG loop's condition every iteration, a synchronisation per iteration, across hosts a
network round trip.) The batch is padded to a multiple of the device count by repeating its
last member; the copies' results are dropped. Each member's answer equals its answer on one
device up to round-off (``vmap`` keeps a finished member's loop state).

Across hosts, start every process with :func:`initialize_distributed` (``febone --distributed
...``) before anything touches a device, then run the same code: ``jax.devices()`` lists every
host's devices, every process passes the same batch, each computes the members that live on
its own devices, and every process gets all results back.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["batch_devices", "map_batch", "DeviceBatch", "initialize_distributed",
           "DISTRIBUTED_ENV"]

log = logging.getLogger(__name__)

#: Environment variables of :func:`initialize_distributed`: ``FEBONE_DISTRIBUTED=1`` turns it on
#: in the CLI; the others are passed to :func:`jax.distributed.initialize` when set (else JAX
#: detects the cluster: SLURM, Open MPI, Kubernetes, TPU pods).
DISTRIBUTED_ENV = {"FEBONE_DISTRIBUTED": None,
                   "FEBONE_COORDINATOR_ADDRESS": "coordinator_address",
                   "FEBONE_NUM_PROCESSES": "num_processes",
                   "FEBONE_PROCESS_ID": "process_id"}

_AXIS = "batch"


def batch_devices(devices) -> tuple:
    """The devices a batch is spread over.

    Args:
        devices: a number N (the first N of ``jax.devices()``, every host's devices after
            :func:`initialize_distributed`) or a sequence of :class:`jax.Device`.

    Raises:
        ValueError: N < 1, more devices than exist (naming ``jax.device_count()`` and how to get
            more CPU devices for testing), or an empty or repeating sequence.
    """
    if isinstance(devices, Sequence) and not isinstance(devices, str):
        devs = tuple(devices)
        if not devs or not all(isinstance(d, jax.Device) for d in devs):
            raise ValueError(f"devices must be a number or a non-empty sequence of jax.Device "
                             f"(e.g. jax.devices()[:2]); got {devices!r}")
        if len(set(devs)) != len(devs):
            raise ValueError(f"devices repeat: {devs}; give each device once")
        return devs
    if isinstance(devices, bool) or not isinstance(devices, (int, np.integer)) or devices < 1:
        raise ValueError(f"devices must be a positive whole number (or a sequence of "
                         f"jax.Device); got {devices!r}")
    available = jax.device_count()
    if devices > available:
        raise ValueError(
            f"{devices} devices asked for, but jax.device_count() = {available} "
            f"({jax.default_backend()}); ask for at most {available}. To test on the CPU with "
            f"more devices, set XLA_FLAGS=--xla_force_host_platform_device_count={devices} "
            f"before Python starts (before JAX initialises); across hosts, start with "
            f"`febone --distributed` (jax.distributed.initialize)")
    return tuple(jax.devices()[:int(devices)])


def _put(a, sharding: NamedSharding):
    """A global array of ``a`` (the same value on every process) with ``sharding``."""
    if jax.process_count() == 1:
        return jax.device_put(a, sharding)
    host = np.asarray(a)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _is_array(a) -> bool:
    return isinstance(a, (jax.Array, np.ndarray))


@lru_cache(maxsize=32)
def _sharded(fn, mesh: Mesh):
    spec = PartitionSpec(_AXIS)
    # check_vma=False: the members share nothing, and custom_linear_solve / while loops over
    # replicated set-up data mix replicated and per-member values that the checker rejects
    return jax.jit(jax.shard_map(jax.vmap(fn, in_axes=(None, 0)), mesh=mesh,
                                 in_specs=(PartitionSpec(), spec), out_specs=spec,
                                 check_vma=False))


class DeviceBatch:
    """A batch spread over ``devices`` and kept there between calls (a host loop that steps
    its members, :func:`febone.remodel.batched.remodel_batch`): the placement and the program
    of :func:`map_batch`, with the padding and the placement left to the caller.

    Args:
        devices: see :func:`batch_devices`.
    """

    def __init__(self, devices):
        self.devices = batch_devices(devices)
        self.mesh = Mesh(np.asarray(self.devices), (_AXIS,))
        self._replicated = NamedSharding(self.mesh, PartitionSpec())
        self._batched = NamedSharding(self.mesh, PartitionSpec(_AXIS))

    def padding(self, n: int) -> int:
        """Members to add to a batch of ``n`` for a multiple of the device count."""
        return -n % len(self.devices)

    def replicated(self, a):
        """``a`` on every device (what every member uses); anything but an array unchanged."""
        return _put(a, self._replicated) if _is_array(a) else a

    def batched(self, a):
        """The array ``a`` (leading size a multiple of the device count) spread over the
        devices along its first axis."""
        return _put(a, self._batched)

    def map(self, fn):
        """``vmap(fn, in_axes=(None, 0))`` over the devices, jitted: called with (replicated
        pytree, batched pytree), it returns ``fn``'s outputs batched (one compilation per
        ``fn`` object and device set)."""
        return _sharded(fn, self.mesh)


def map_batch(fn, shared, batched, *, devices):
    """``vmap(fn, in_axes=(None, 0))(shared, batched)`` with the batch spread over ``devices``.

    Args:
        fn: ``fn(shared, member) -> outputs`` (pure, jit-able; a module-level function, so
            repeated calls reuse one compilation).
        shared: pytree every member uses (a model, a study), replicated on every device.
        batched: pytree of arrays with one common leading size n (the members).
        devices: see :func:`batch_devices`.

    Returns:
        ``fn``'s outputs with a leading (n,) axis. With one process they are jax arrays sharded
        over the devices along that axis (when n is a multiple of the device count; the padded
        copies are sliced off otherwise); across processes NumPy arrays, gathered on every one.
    """
    spread = DeviceBatch(devices)
    leaves = jax.tree_util.tree_leaves(batched)
    sizes = {np.shape(a)[0] if np.ndim(a) else None for a in leaves}
    if not leaves or len(sizes) != 1 or None in sizes:
        raise ValueError(f"map_batch needs arrays with one common leading (batch) size; got "
                         f"shapes {[np.shape(a) for a in leaves]}")
    (n,) = sizes
    pad = spread.padding(n)
    if pad:                 # repeat the last member; its copies' results are dropped below
        batched = jax.tree_util.tree_map(
            lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]), batched)
    batched = jax.tree_util.tree_map(spread.batched, batched)
    shared = jax.tree_util.tree_map(spread.replicated, shared)
    log.info("batch of %d (+%d padding) over %d devices (%d per device)", n, pad,
             len(spread.devices), (n + pad) // len(spread.devices))
    out = spread.map(fn)(shared, batched)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        out = multihost_utils.process_allgather(out, tiled=True)
    return out if not pad else jax.tree_util.tree_map(lambda a: a[:n], out)


def initialize_distributed(environ=None, *, cpu_collectives: str | None = "gloo") -> None:
    """Join a multi-host run: :func:`jax.distributed.initialize`, before anything touches a
    device (an entry point calls it: ``febone --distributed``). ``FEBONE_COORDINATOR_ADDRESS``
    (host:port of process 0), ``FEBONE_NUM_PROCESSES`` and ``FEBONE_PROCESS_ID`` are passed on
    when set; without them JAX detects the cluster (SLURM, Open MPI, Kubernetes, TPU pods).

    Args:
        environ: mapping of the variables above (default ``os.environ``).
        cpu_collectives: JAX's CPU cross-process collectives (``jax_cpu_collectives_
            implementation``), needed to gather the results of CPU processes; None leaves it.

    Raises:
        ValueError: a process count or id that is not a whole number.
    """
    environ = os.environ if environ is None else environ
    kw = {}
    for var, arg in DISTRIBUTED_ENV.items():
        if arg and environ.get(var):
            value = environ[var]
            if arg != "coordinator_address":
                if not value.strip().isdigit():
                    raise ValueError(f"{var} must be a whole number; got {value!r}")
                value = int(value)
            kw[arg] = value
    if cpu_collectives:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(**kw)
    log.info("jax.distributed: process %d of %d, %d local of %d devices", jax.process_index(),
             jax.process_count(), jax.local_device_count(), jax.device_count())
