"""benchmarks/gpu_check.py: its table of peak bandwidths and its byte count (the script itself
runs on a CPU with --quick; its recorded output is in benchmarks/RESULTS_gpu.md)."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind, gbps", [
    ("NVIDIA H100 80GB HBM3", 3350.0), ("NVIDIA H100 PCIe", 2000.0), ("NVIDIA H100 NVL", 3900.0),
    ("NVIDIA H200", 4800.0), ("NVIDIA A100-SXM4-80GB", 2039.0), ("NVIDIA A100-SXM4-40GB", 1555.0),
    ("NVIDIA A100 80GB PCIe", 1935.0), ("cpu", None), ("NVIDIA GeForce RTX 4090", None)])
def test_peak_bandwidth_by_device_kind(gpu_check, kind, gbps):
    """The first matching row wins: an H100 PCIe is not read as an H100 SXM."""
    assert gpu_check.peak_bandwidth(kind) == gbps


def test_product_bytes_count_each_array_once(gpu_check):
    from febone.voxel import VoxelGrid, VoxelModel

    model = VoxelModel.create(VoxelGrid.create(np.ones((2, 3, 4), bool), 0.1), max_levels=1)
    n_v, n_n = 24, 3 * 4 * 5
    # moduli + voxel base id + 4 corner-id lookups per voxel; u read and K u written
    assert gpu_check._product_bytes(model, 8) == n_v * (8 + 4 + 16) + 2 * 3 * n_n * 8
