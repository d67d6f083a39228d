"""The parametric lumbar vertebra: valid closed meshes with the right topology, volumes
against an independent sampling, endplate node sets, regions, density levels."""
import numpy as np
import pytest

import febone as fb
from febone.bones import mesh_bone, vertebra, volumetric_bmd
from febone.mesh import validate_mesh
from test_bones_femur import element_volumes, sampled_volumes, surface_topology

H = 1.5


@pytest.fixture(scope="module")
def bone():
    return vertebra()


@pytest.fixture(scope="module")
def meshes(bone):
    return {"hex": mesh_bone(bone, H, "hex8"), "tet": mesh_bone(bone, H, "tet4")}


@pytest.mark.parametrize("kind", ["hex", "tet"])
def test_valid_closed_with_one_handle(kind, meshes):
    mesh = meshes[kind]
    validate_mesh(mesh)
    counts, chi, _ = surface_topology(mesh)
    assert np.all(counts == 2)  # closed 2-manifold surface
    # the neural arch closes a ring around the spinal canal: the vertebra is a solid torus
    # (genus 1), whose surface has Euler characteristic 2 − 2·1 = 0
    assert chi == 0


def test_body_only_is_a_ball_with_the_sampled_volume():
    b = vertebra(posterior_elements=False)
    mesh = mesh_bone(b, H, "tet4")
    counts, chi, _ = surface_topology(mesh)
    assert np.all(counts == 2) and chi == 2
    ref, _ = sampled_volumes(b, h=0.4)
    # the body is an elliptic cylinder 45 × 33 × 26 mm, flattened posteriorly, waisted and
    # with concave endplates: bounded by the full cylinder π·22.5·16.5·26 = 30.3 cm³
    assert 24e3 < ref < np.pi * 22.5 * 16.5 * 26.0
    # surface-fitted tets: the sampled volume to ~1% (as for the femur)
    assert element_volumes(mesh).sum() == pytest.approx(ref, rel=0.015)


def test_regions_and_volumes(bone, meshes):
    ref, regions = sampled_volumes(bone, h=0.6)
    for kind, mesh in meshes.items():
        vol = element_volumes(mesh)
        cd = mesh.cell_data
        assert np.all(cd["region_vertebral_body"] + cd["region_posterior"] == 1)
        # hex8 voxels and snapped tets both within 2% of the sampled volume (see the femur)
        assert vol.sum() == pytest.approx(ref, rel=0.02), kind
        body = vol[cd["region_vertebral_body"] == 1].sum()
        # per-element region assignment: ≤ half an element (0.75 mm) along the body/pedicle
        # junction, a few % of the body
        assert body == pytest.approx(regions["vertebral_body"], rel=0.05), kind


def test_endplate_node_sets(meshes, bone):
    for mesh in meshes.values():
        sup = mesh.points[fb.node_set(mesh, "endplate_superior")]
        inf = mesh.points[fb.node_set(mesh, "endplate_inferior")]
        # on the body (y > posterior wall at −0.8·16.5 mm, within the 22.5 mm half-width)
        assert sup[:, 1].min() > -0.8 * 16.5 - H and np.abs(sup[:, 0]).max() < 22.5 + H
        # near the rim planes z = ±13 within concavity 1.5 + 0.75 h
        assert sup[:, 2].min() >= 13.0 - 1.5 - 0.75 * H - 1e-9
        assert sup[:, 2].max() <= 13.0 + 1e-5  # Newton projection converges to ~1e-6 mm
        assert inf[:, 2].max() <= -13.0 + 1.5 + 0.75 * H + 1e-9
        # the endplate sets cover most of the endplate area: π·22.5·16.5 mm² ≈ 1166 mm²,
        # about one node per h² = 2.25 mm² of it
        assert len(sup) > 0.5 * np.pi * 22.5 * 16.5 / H**2


def test_density_levels(meshes):
    mesh = meshes["tet"]
    # the centrum is trabecular bone at the parametrised 0.28 g/cm³ (−8% basivertebral,
    # +4% near the endplates)
    c = mesh.points[mesh.cells].mean(1)
    core = (np.abs(c[:, 2]) < 6) & (np.hypot(c[:, 0] / 22.5, (c[:, 1] + 2) / 16.5) < 0.5)
    assert mesh.cell_data["density_g_cm3"][core].mean() == pytest.approx(0.28, rel=0.1)
    # whole body including its shell and endplates (mineral = 0.6 × apparent): denser than
    # the core, far below cortical bone
    vb = volumetric_bmd(mesh, "vertebral_body")
    assert 0.6 * 280 < vb < 0.6 * 600


def test_bad_parameters():
    with pytest.raises(ValueError, match="endplate_concavity_mm"):
        vertebra(endplate_concavity_mm=20.0)
    with pytest.raises(TypeError, match="unknown vertebra parameter"):
        vertebra(height=20)
