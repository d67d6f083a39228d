"""The CT-derived proximal femur (tet10, 77,610 dofs) in the sideways-fall set-up of its file:
distal u_z = 0, head u_x = 0, trochanter u_x = −1 mm, u_y = 0.

Three solves share one module fixture (the femur takes tens of seconds per solve on a CPU):
  1. the CLI at rtol 1e-6 from zero (JSON + solution.vtu),
  2. the library at rtol 1e-9, warm-started from (1),
  3. the library at rtol 1e-9 on a randomly renumbered copy, warm-started from (1) mapped to
     the new numbering. A warm start changes only where CG starts, not the system it
     converges to, so a renumbering bug would still show up as a different answer.
No number of our own is hard-coded: the checks are equilibrium, agreement between solver
settings, independence of node numbering and consistency of the CLI with the library.
"""
import json

import meshio
import numpy as np
import pytest

import febone as fb
from febone.cli import main

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]

FILE = "mitkgem_proximal_femur_tet10.vtu"
DISTAL, HEAD, TROCH = "bc_distal_uz0", "bc_head_ux0", "bc_trochanter_ux_minus1_uy0"


def _problem(mesh):
    model = fb.FEModel.from_mesh(mesh)
    mat = fb.LinearElastic.create(mesh.cell_data["E_MPa"], 0.3)
    bcs = (fb.BoundaryConditions.empty(mesh.n_nodes)
           .fix(fb.node_set(mesh, DISTAL), "z")
           .fix(fb.node_set(mesh, HEAD), "x")
           .displace(fb.node_set(mesh, TROCH), x=-1.0, y=0.0))
    return model, mat, bcs


@pytest.fixture(scope="module")
def femur(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("femur")
    path = shared_data / FILE
    rc = main(["solve", str(path), "--E-field", "E_MPa", "--nu", "0.3",
               "--fix", f"{DISTAL}:z", "--fix", f"{HEAD}:x", "--displace", f"{TROCH}:x=-1,y=0",
               "--rtol", "1e-6", "--json", str(tmp / "femur.json"), "--out", str(tmp)])
    assert rc == 0
    cli = json.loads((tmp / "femur.json").read_text())
    u6 = meshio.read(tmp / "solution.vtu").point_data["displacement_mm"]

    mesh = fb.read_mesh(path)
    model, mat, bcs = _problem(mesh)
    fine = fb.solve(model, mat, bcs, solver=fb.PCG(rtol=1e-9), u0=u6)
    r9 = np.asarray(fb.reaction_forces(model, mat, bcs, fine.u))

    rng = np.random.default_rng(20240607)
    perm = rng.permutation(mesh.n_nodes)  # new node j is old node perm[j]
    inv = np.argsort(perm)  # old node i is new node inv[i]
    pmesh = fb.Mesh.create(mesh.points[perm], inv[mesh.cells], mesh.cell_type,
                           {k: np.asarray(v)[perm] for k, v in mesh.point_data.items()},
                           dict(mesh.cell_data))
    pmodel, pmat, pbcs = _problem(pmesh)
    psol = fb.solve(pmodel, pmat, pbcs, solver=fb.PCG(rtol=1e-9), u0=u6[perm])
    pr = np.asarray(fb.reaction_forces(pmodel, pmat, pbcs, psol.u))
    return dict(mesh=mesh, model=model, mat=mat, bcs=bcs, cli=cli, u6=u6, u9=np.asarray(fine.u), r9=r9, fine=fine,
                pmesh=pmesh, pu=np.asarray(psol.u)[inv], pr=pr)


def _set_sum(mesh, r, name):
    return r[fb.node_set(mesh, name)].sum(axis=0)


def test_stiffness_is_positive_and_supports_balance(femur):
    mesh, r = femur["mesh"], femur["r9"]
    assert femur["fine"].stats.converged
    troch, head, distal = (_set_sum(mesh, r, n) for n in (TROCH, HEAD, DISTAL))
    F = abs(troch[0])
    assert troch[0] < 0  # the bone resists the imposed −1 mm: stiffness = −R_x / 1 mm > 0
    # the sum of K u over all nodes vanishes for any u (translations are in K's null space);
    # 1e-10 of the load allows round-off in summing ~10⁵ element forces
    np.testing.assert_allclose(r.sum(axis=0), 0.0, atol=1e-10 * F)
    # x is held only at the head and the trochanter, y only at the trochanter, z only distally:
    # the supports must balance up to the CG residual (‖r_free‖ ≤ 1e-9‖b‖; 1e-6 of F observed
    # to hold with a margin of ~50)
    np.testing.assert_allclose(head[0], -troch[0], rtol=1e-6)
    np.testing.assert_allclose([troch[1], distal[2]], 0.0, atol=1e-6 * F)
    # free dofs carry no reaction
    free = ~np.asarray(femur["bcs"].fixed)
    assert np.abs(r[free]).max() < 1e-6 * F


def test_two_tolerances_agree(femur):
    mesh, u6, u9 = femur["mesh"], femur["u6"], femur["u9"]
    # CG stopped at relative residual 1e-6 vs 1e-9: the displacement error is at most the
    # condition number times the residual; we allow 100 × 1e-6 of the peak displacement
    np.testing.assert_allclose(u6, u9, atol=1e-4 * np.abs(u9).max())
    # reactions are energy-like and converge faster; 1e-5 is 10 × the looser rtol. Only x
    # and y are prescribed at the trochanter: its z "reaction" is the CG residual summed over
    # the set (free dofs), so it is bounded by the looser solve's residual instead
    r6 = np.asarray(femur["cli"]["reactions_N"][TROCH])
    r9 = _set_sum(mesh, femur["r9"], TROCH)
    np.testing.assert_allclose(r6[:2], r9[:2], rtol=0, atol=1e-5 * abs(r6[0]))
    assert abs(r6[2] - r9[2]) < 1e-4 * abs(r6[0])


def test_result_independent_of_node_numbering(femur):
    mesh, pmesh = femur["mesh"], femur["pmesh"]
    # both solves stop at 1e-9: allow 1e-6 of the peak displacement / of the load
    np.testing.assert_allclose(femur["pu"], femur["u9"], atol=1e-6 * np.abs(femur["u9"]).max())
    for name in (DISTAL, HEAD, TROCH):
        np.testing.assert_allclose(_set_sum(pmesh, femur["pr"], name),
                                   _set_sum(mesh, femur["r9"], name),
                                   atol=1e-6 * abs(_set_sum(mesh, femur["r9"], TROCH)[0]))


def test_cli_json(femur):
    cli, mesh = femur["cli"], femur["mesh"]
    assert cli["n_dofs"] == 3 * mesh.n_nodes
    assert cli["converged"] is True and cli["residual"] <= 1e-6
    assert cli["iterations"] > 0 and cli["solve_seconds"] > 0
    assert cli["device"] == fb.device_description() and cli["dtype"] == "float64"
    # every node-set mask in the file is reported, used or not, and each equals the sum of
    # the library's nodal reactions for the displacements the CLI wrote to solution.vtu
    assert set(cli["reactions_N"]) == {"surface", DISTAL, HEAD, TROCH}
    r6 = np.asarray(fb.reaction_forces(femur["model"], femur["mat"], femur["bcs"], femur["u6"]))
    F = abs(cli["reactions_N"][TROCH][0])
    for name, value in cli["reactions_N"].items():
        np.testing.assert_allclose(value, _set_sum(mesh, r6, name), rtol=0, atol=1e-9 * F)
