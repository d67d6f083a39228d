"""Property-based tests (hypothesis) of the input readers: the scenario parser, the mesh
validator and reader, the image reader and segmentation. Random and mutated inputs give a
clean error (ValueError or TypeError with a message; the CLI's one-line error) or a valid
result, never another exception."""
import copy
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import febone as fb
from febone.cli import main
from febone.scenario import Scenario, build_scenario, load_scenario, protocol
from febone.voxel import Segmentation, VoxelImage, load_image, segment

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def _clean(call):
    """Run ``call``: a result, or a ValueError/TypeError with a message; anything else fails."""
    try:
        return call()
    except (ValueError, TypeError) as err:
        assert str(err).strip(), f"{type(err).__name__} without a message"
        return None


# ------------------------------------------------------------ the scenario parser

#: TOML-like values of every type a scenario key might receive.
values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
    | st.sampled_from(["1 year", "6 months", "60 mg", "50 µg/day", "weekly", "twice weekly",
                       "2.5 BW", "700 N", "stance", "female", "male", "-3 years", "0 mg",
                       "femur_coarse_hex8", "1e400 mg", "nan years"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=6)

SAMPLE = {
    "name": "sample", "protocols": ["untreated-menopause"],
    "patient": {"age": "52 years", "body_mass": "65 kg"},
    "bone": {"mesh": "femur_coarse_hex8", "nu": 0.3},
    "load_cases": [{"case": "stance", "weight": 1.0, "magnitude": "2.5 BW"}],
    "strength": {"cases": ["stance"], "methods": ["pistoia"]},
    "treatments": [{"drug": "denosumab", "dose": "60 mg", "interval": "6 months",
                    "start": "1 year", "duration": "3 years"}],
    "lifestyle": {"calcium": "500 mg/day", "exercise": "resistance"},
    "simulation": {"duration": "5 years", "output_interval": "1 year",
                   "mechanical_step": "30 days"},
}


def _paths(doc, prefix=()):
    """Every (path) to a value in a nested dict/list document."""
    yield prefix
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) \
        else ()
    for k, v in items:
        yield from _paths(v, prefix + (k,))


def _mutate(doc, path, action, value):
    doc = copy.deepcopy(doc)
    if not path:
        return value if action == "replace" else doc
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    if action == "replace":
        parent[key] = value
    elif action == "delete":
        del parent[key]
    elif isinstance(parent, dict):
        parent[f"{key}_extra"] = value
    else:
        parent.append(value)
    return doc


def test_the_sample_scenario_is_valid():
    assert isinstance(build_scenario(SAMPLE, source="sample"), Scenario)


@SETTINGS
@given(data=st.data())
def test_mutated_scenario_documents(data):
    base = data.draw(st.sampled_from([SAMPLE, json.loads(protocol("trt").document)]))
    doc = base
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(list(_paths(doc))))
        doc = _mutate(doc, path, data.draw(st.sampled_from(["replace", "delete", "add"])),
                      data.draw(values))
    result = _clean(lambda: build_scenario(doc, source="mutated"))
    assert result is None or isinstance(result, Scenario)


@SETTINGS
@given(text=st.text(max_size=300))
def test_random_scenario_text(text):
    result = _clean(lambda: load_scenario(text + "\n"))
    assert result is None or isinstance(result, Scenario)


class _Reached(Exception):
    """Raised in place of the remodelling run: the scenario got past every check."""


@SETTINGS
@given(data=st.binary(max_size=300))
def test_random_scenario_bytes_in_the_cli(data, tmp_path_factory, capsys, monkeypatch):
    def reached(*args, **kwargs):
        raise _Reached

    monkeypatch.setattr("febone.remodel.runner.run_scenario", reached)
    path = tmp_path_factory.mktemp("scenario") / "s.toml"
    path.write_bytes(b'name = "x"\n' + data)
    capsys.readouterr()
    try:
        code = main(["run", str(path), "--years", "1"])
    except _Reached:
        return
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("febone run: error: ") and err.count("\n") == 1, err


# ------------------------------------------------------------ the mesh validator and reader

CELL_TYPES = {"tet4": 4, "tet10": 10, "hex8": 8}


@SETTINGS
@given(data=st.data())
def test_random_meshes(data):
    cell_type = data.draw(st.sampled_from([*CELL_TYPES, "wedge", ""]))
    n_nodes = data.draw(st.integers(0, 12))
    points = data.draw(hnp.arrays(np.float64, (n_nodes, data.draw(st.sampled_from([2, 3, 4]))),
                                  elements=st.floats(-1e6, 1e6) | st.just(np.nan)))
    per = CELL_TYPES.get(cell_type, 6) + data.draw(st.sampled_from([0, 0, 1, -1]))
    cells = data.draw(hnp.arrays(data.draw(st.sampled_from([np.int64, np.int32, np.float64])),
                                 (data.draw(st.integers(0, 3)), max(per, 1)),
                                 elements=st.integers(-2, 14)))
    result = _clean(lambda: fb.Mesh.create(points, cells, cell_type))
    assert result is None or isinstance(result, fb.Mesh)


@SETTINGS
@given(data=st.data())
def test_mutated_valid_meshes(data):
    cell_type = data.draw(st.sampled_from(list(CELL_TYPES)))
    mesh = fb.box_mesh((2, 1, 1), (2.0, 1.0, 1.0), cell_type=cell_type)
    points, cells = mesh.points.copy(), mesh.cells.copy()
    point_data, cell_data = {}, {}
    for _ in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(["move", "swap", "id", "point_data", "cell_data"]))
        if kind == "move":
            i = data.draw(st.integers(0, len(points) - 1))
            points[i] = data.draw(st.sampled_from([np.nan, np.inf, 0.0, 1e9, -3.0]))
        elif kind == "swap":
            e = data.draw(st.integers(0, len(cells) - 1))
            a, b = data.draw(st.permutations(range(cells.shape[1])))[:2]
            cells[e, [a, b]] = cells[e, [b, a]]
        elif kind == "id":
            cells[data.draw(st.integers(0, len(cells) - 1)), 0] = data.draw(
                st.integers(-5, mesh.n_nodes + 5))
        else:
            n = (mesh.n_nodes if kind == "point_data" else mesh.n_elements) + data.draw(
                st.sampled_from([0, 0, 1, -1]))
            arr = data.draw(hnp.arrays(np.float64, n, elements=st.floats(allow_nan=True)))
            (point_data if kind == "point_data" else cell_data)["field"] = arr
    result = _clean(lambda: fb.Mesh.create(points, cells, cell_type, point_data, cell_data))
    assert result is None or isinstance(result, fb.Mesh)


def _damaged_file(data, files: dict, tmp_path_factory):
    """One of ``files`` ({suffix: bytes of a valid file}) damaged, written to a new folder."""
    suffix = data.draw(st.sampled_from(sorted(files)))
    path = tmp_path_factory.mktemp("bad") / f"f{suffix}"
    path.write_bytes(_damaged(data, files[suffix]))
    return path


def _damaged(data, good: bytes) -> bytes:
    """A valid file's bytes truncated, with a few bytes changed, or replaced by random bytes."""
    raw = bytearray(good)
    how = data.draw(st.sampled_from(["truncate", "flip", "random"]))
    if how == "truncate":
        return bytes(raw[:data.draw(st.integers(0, len(raw) - 1))])
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        return bytes(raw)
    return data.draw(st.binary(max_size=400))


@pytest.fixture(scope="module")
def mesh_files(tmp_path_factory):
    """The bytes of a small valid mesh in each format febone reads most."""
    folder = tmp_path_factory.mktemp("meshes")
    mesh = fb.box_mesh((2, 1, 1), (2.0, 1.0, 1.0), cell_type="hex8")
    out = {}
    for suffix in (".vtu", ".vtk", ".msh", ".inp", ".xdmf"):
        path = fb.write_mesh(folder / f"m{suffix}", mesh)
        out[suffix] = path.read_bytes()
    return out


@SETTINGS
@given(data=st.data())
def test_damaged_mesh_files(data, mesh_files, tmp_path_factory):
    path = _damaged_file(data, mesh_files, tmp_path_factory)
    result = _clean(lambda: fb.read_mesh(path))
    assert result is None or isinstance(result, fb.Mesh)


# ------------------------------------------------------------ the image reader

@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """The bytes of a small valid image in each format febone reads."""
    import nibabel
    import tifffile

    folder = tmp_path_factory.mktemp("images")
    img = np.zeros((4, 5, 6), np.float32)
    img[:, 1:4, 2:5] = 100.0
    np.save(folder / "i.npy", img)
    np.savez(folder / "i.npz", image=img, voxel_size_mm=np.array([0.1, 0.1, 0.1]))
    tifffile.imwrite(folder / "i.tif", img)
    nii = nibabel.Nifti1Image(img.transpose(2, 1, 0), np.diag([0.1, 0.1, 0.1, 1.0]))
    nibabel.save(nii, folder / "i.nii")
    nibabel.save(nii, folder / "i.nii.gz")
    return {p.name[1:]: p.read_bytes() for p in folder.iterdir()}


@SETTINGS
@given(data=st.data())
def test_damaged_image_files(data, image_files, tmp_path_factory):
    path = _damaged_file(data, image_files, tmp_path_factory)
    result = _clean(lambda: load_image(path))
    assert result is None or isinstance(result, VoxelImage)
    if result is not None:
        _clean(lambda: segment(result, 0.1))


@SETTINGS
@given(data=st.data())
def test_random_images_and_options(data):
    dtype = data.draw(st.sampled_from([np.bool_, np.uint8, np.int16, np.float32, np.float64,
                                       np.complex64]))
    shape = data.draw(st.lists(st.integers(0, 5), min_size=1, max_size=4))
    elements = st.floats(-1e3, 1e3) | st.just(np.nan) if np.dtype(dtype).kind == "f" else None
    img = data.draw(hnp.arrays(dtype, shape, elements=elements))
    size = data.draw(st.sampled_from([0.1, None, 0.0, -1.0, (0.1, 0.2), (0.1, 0.1, 0.1),
                                      math.inf]))
    threshold = data.draw(st.sampled_from(["otsu", "OTSU", "bad", 50.0, -1e9, np.nan]))
    resample = data.draw(st.sampled_from([1, 2, 0, 1.5]))
    sigma = data.draw(st.sampled_from([0.0, 1.0, -1.0]))
    result = _clean(lambda: segment(img, size, threshold=threshold, resample=resample,
                                    sigma=sigma))
    assert result is None or (isinstance(result, Segmentation) and result.mask.any())
