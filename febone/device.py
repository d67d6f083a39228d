"""What JAX runs on: backend, device and floating-point precision."""
from __future__ import annotations

import platform

import jax
import jax.numpy as jnp

__all__ = ["device_description", "runtime_info"]


def device_description() -> str:
    """A short name of the default device, e.g. ``"cpu (x86_64)"`` or ``"gpu: NVIDIA H100"``."""
    d = jax.devices()[0]
    if d.platform == "cpu":
        return f"cpu ({platform.machine()})"
    return f"{d.platform}: {getattr(d, 'device_kind', str(d))}"


def runtime_info() -> dict:
    """JAX version, backend, devices and the default float precision."""
    return {
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "device": device_description(),
        "devices": [str(d) for d in jax.devices()],
        "precision": str(jnp.zeros(()).dtype) if not jax.config.jax_enable_x64 else "float64",
        "x64_enabled": bool(jax.config.jax_enable_x64),
    }
