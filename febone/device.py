"""What JAX runs on: backend, device and floating-point precision."""
from __future__ import annotations

import os
import platform

import jax
import jax.numpy as jnp

__all__ = ["device_description", "runtime_info", "device_memory_bytes", "device_platform"]


def device_description() -> str:
    """A short name of the default device, e.g. ``"cpu (x86_64)"`` or ``"gpu: NVIDIA H100"``."""
    d = jax.devices()[0]
    if d.platform == "cpu":
        return f"cpu ({platform.machine()})"
    return f"{d.platform}: {getattr(d, 'device_kind', str(d))}"


def runtime_info() -> dict:
    """JAX version, backend, devices, the default float precision and whether XLA was started
    with deterministic GPU scatters (``--xla_gpu_deterministic_ops=true`` in ``XLA_FLAGS``, set
    by :func:`febone.precision.configure`)."""
    return {
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "device": device_description(),
        "devices": [str(d) for d in jax.devices()],
        "precision": str(jnp.zeros(()).dtype) if not jax.config.jax_enable_x64 else "float64",
        "x64_enabled": bool(jax.config.jax_enable_x64),
        "deterministic_gpu_ops": "--xla_gpu_deterministic_ops=true"
                                 in os.environ.get("XLA_FLAGS", "").split(),
    }


def device_platform() -> str:
    """The platform of the default backend: ``"cpu"``, ``"gpu"`` or ``"tpu"``."""
    return jax.default_backend()


def device_memory_bytes(device=None) -> int | None:
    """Memory of a device in bytes (``bytes_limit`` of ``device.memory_stats()``; default the
    first device), or ``None`` where the backend reports none (CPUs)."""
    device = jax.devices()[0] if device is None else device
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory statistics raise
        return None
    if not stats or not stats.get("bytes_limit"):
        return None
    return int(stats["bytes_limit"])
