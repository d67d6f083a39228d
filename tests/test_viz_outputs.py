"""febone.viz outputs: PVD/VTU time series through meshio, trajectory figures (matplotlib
objects inspected), the report, the density GIF and ``febone solve --out`` pictures.

The run dicts are synthetic but shaped like ``febone run --json`` (issue 6): two protocols
over 10 years, untreated menopause losing ~1 %/year at the neck and HRT holding bone.
"""
import json
import xml.etree.ElementTree as ET

import meshio
import numpy as np
import pytest

import febone as fb

viz = pytest.importorskip("febone.viz")

YOUNG_NECK = (0.858, 0.120)   # NHANES III women 20-29 y, femoral neck mean, SD (g/cm²)
YOUNG_HIP = (0.942, 0.122)


def _protocol(name, rate_per_year, t):
    neck = 0.80 * (1 + rate_per_year) ** t
    hip = 0.88 * (1 + 0.8 * rate_per_year) ** t
    troch = 0.70 * (1 + 0.6 * rate_per_year) ** t

    def region(abmd, young, vbmd0):
        return {"abmd_g_cm2": abmd.tolist(), "vbmd_mg_cm3": (vbmd0 * abmd / abmd[0]).tolist(),
                "t_score": None if young is None else ((abmd - young[0]) / young[1]).tolist(),
                "change_pct": (100 * (abmd / abmd[0] - 1)).tolist()}

    fl = 3600 * (neck / neck[0]) ** 1.6
    return {"time_years": t.tolist(),
            "regions": {"femoral_neck": region(neck, YOUNG_NECK, 300.0),
                        "total_hip": region(hip, YOUNG_HIP, 280.0),
                        "trochanter": region(troch, None, 250.0)},
            "stiffness_N_per_mm": (2900 * (neck / neck[0]) ** 1.4).tolist(),
            "fracture_load_N": {"sideways-fall": fl.tolist(), "stance": (2.9 * fl).tolist()},
            "markers": {"ctx_rel": (1 + 0.5 * (1 - np.exp(-t))).tolist() if rate_per_year < 0
                        else np.ones_like(t).tolist(),
                        "p1np_rel": (1 + 0.3 * (1 - np.exp(-t))).tolist() if rate_per_year < 0
                        else np.ones_like(t).tolist()},
            "wall_seconds": 42.0, "device": "cpu", "scenario": {"name": name}}


@pytest.fixture
def run():
    t = np.linspace(0.0, 10.0, 11)
    return {"protocols": {"untreated menopause": _protocol("untreated menopause", -0.012, t),
                          "early HRT": _protocol("early HRT", 0.001, t)}}


def _lines(fig, panel):
    return [l for ax in fig.axes for l in ax.get_lines()
            if (l.get_gid() or "").startswith(panel + "|")]


def test_trajectories_have_one_line_per_protocol_and_series(run, tmp_path):
    path = tmp_path / "traj.png"
    fig = viz.plot_trajectories(run, path=path)
    assert path.is_file() and path.stat().st_size > 10_000
    assert len(fig.axes) == 6
    # 2 protocols × 3 regions for aBMD and change; T-scores only where a reference exists (2)
    assert len(_lines(fig, "abmd")) == 6 and len(_lines(fig, "change")) == 6
    assert len(_lines(fig, "t_score")) == 4
    assert len(_lines(fig, "fracture")) == 4 and len(_lines(fig, "stiffness")) == 2
    assert len(_lines(fig, "markers")) == 4
    # the plotted data are the run's numbers, protocol by protocol
    for line in _lines(fig, "t_score"):
        _, proto, region = line.get_gid().split("|")
        np.testing.assert_allclose(line.get_ydata(),
                                   run["protocols"][proto]["regions"][region]["t_score"])
        np.testing.assert_allclose(line.get_xdata(), run["protocols"][proto]["time_years"])
    colours = {l.get_gid().split("|")[1]: l.get_color() for l in _lines(fig, "abmd")}
    assert len(set(colours.values())) == 2           # one colour per protocol
    # WHO bands on the T-score axis: osteopenia -2.5..-1, osteoporosis below -2.5
    ax = _lines(fig, "t_score")[0].axes
    bands = {p.get_gid(): p for p in ax.patches}
    pen = bands["band|osteopenia"].get_window_extent().transformed(ax.transData.inverted())
    assert pen.y0 == pytest.approx(-2.5) and pen.y1 == pytest.approx(-1.0)
    por = bands["band|osteoporosis"].get_window_extent().transformed(ax.transData.inverted())
    assert por.y1 == pytest.approx(-2.5) and por.y0 < ax.get_ylim()[0]
    lowest = min(np.min(l.get_ydata()) for l in _lines(fig, "t_score"))
    assert ax.get_ylim()[0] < lowest                 # every T-score visible


def test_trajectories_from_json_and_a_single_protocol(run, tmp_path):
    single = run["protocols"]["early HRT"]
    p = tmp_path / "run.json"
    p.write_text(json.dumps(single))
    fig = viz.plot_trajectories(p)
    assert len(_lines(fig, "abmd")) == 3
    assert {l.get_gid().split("|")[1] for l in _lines(fig, "abmd")} == {"early HRT"}
    bad = dict(single, stiffness_N_per_mm=single["stiffness_N_per_mm"][:-1])
    with pytest.raises(ValueError, match="10 values for 11 output times"):
        viz.plot_trajectories(bad)
    with pytest.raises(ValueError, match="no 'time_years'"):
        viz.plot_trajectories({"regions": {}})


def test_report_tables_carry_the_runs_numbers(run, tmp_path):
    pic = tmp_path / "elsewhere" / "density.png"
    pic.parent.mkdir()
    viz.plot_field(fb.box_mesh((3, 2, 2)), np.arange(12.0), name="density_g_cm3", path=pic)
    md = viz.write_report(tmp_path / "report", run, {"density section": pic})
    text = md.read_text()
    neck = run["protocols"]["untreated menopause"]["regions"]["femoral_neck"]
    row = next(l for l in text.splitlines()
               if l.startswith("| untreated menopause | femoral_neck |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[2]) == pytest.approx(neck["abmd_g_cm2"][0], abs=5e-4)
    assert float(cells[3]) == pytest.approx(neck["abmd_g_cm2"][-1], abs=5e-4)
    assert float(cells[5]) == pytest.approx(neck["t_score"][-1], abs=5e-3)
    assert float(cells[6]) == pytest.approx(neck["change_pct"][-1], abs=0.05)
    fl = run["protocols"]["early HRT"]["fracture_load_N"]["sideways-fall"]
    row = next(l for l in text.splitlines() if l.startswith("| early HRT | fracture load sideways-fall"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[4]) == pytest.approx(100 * (fl[-1] / fl[0] - 1), abs=0.05)
    # pictures are copied next to the report and linked relatively, plus the trajectories
    assert "![density section](pictures/density.png)" in text
    assert (md.parent / "pictures" / "density.png").is_file()
    assert "(trajectories.png)" in text and (md.parent / "trajectories.png").is_file()
    html = (md.parent / "report.html").read_text()
    assert html.count("<img ") == 2 and "untreated menopause" in html


def test_pvd_series_round_trips_through_meshio(tmp_path):
    mesh = fb.box_mesh((3, 2, 2), size=(30.0, 20.0, 20.0))
    mesh = mesh.with_cell_data(region_neck=np.ones(mesh.n_elements, np.uint8))
    times = [0.0, 0.5, 1.25]
    rng = np.random.default_rng(0)
    fields = [{"displacement_mm": rng.normal(size=(mesh.n_nodes, 3)),
               "von_mises_MPa": rng.uniform(0, 80, mesh.n_elements),
               "density_g_cm3": rng.uniform(0.1, 1.8, mesh.n_elements)} for _ in times]
    pvd = viz.write_pvd(tmp_path / "series" / "run.pvd", mesh, times, fields)
    sets = ET.parse(pvd).getroot().find("Collection").findall("DataSet")
    assert [float(d.get("timestep")) for d in sets] == times
    for d, f in zip(sets, fields):
        m = meshio.read(pvd.parent / d.get("file"))
        assert m.points.shape == (mesh.n_nodes, 3)
        assert m.point_data["displacement_mm"].shape == (mesh.n_nodes, 3)
        np.testing.assert_array_equal(m.point_data["displacement_mm"], f["displacement_mm"])
        for name in ("von_mises_MPa", "density_g_cm3"):
            got = np.asarray(m.cell_data[name][0]).reshape(-1)
            assert got.shape == (mesh.n_elements,)
            np.testing.assert_array_equal(got, f[name])
        assert "region_neck" in m.cell_data              # the mesh's own data travels along
        back = fb.read_mesh(pvd.parent / d.get("file"))  # and febone reads it back
        np.testing.assert_array_equal(back.cells, mesh.cells)
    with pytest.raises(ValueError, match="strictly increasing"):
        viz.write_pvd(tmp_path / "bad.pvd", mesh, [0.0, 0.0, 1.0], fields)
    with pytest.raises(ValueError, match="one field dict per time"):
        viz.write_pvd(tmp_path / "bad.pvd", mesh, times[:2], fields)
    with pytest.raises(ValueError, match="n_elements = 12"):
        viz.write_pvd(tmp_path / "bad.pvd", mesh, [0.0], [{"x": np.ones(5)}])


def test_density_gif_shows_loss_where_density_falls(tmp_path):
    pytest.importorskip("pyvista")
    import imageio.v3 as iio

    mesh = fb.box_mesh((8, 2, 3), size=(32.0, 8.0, 12.0))
    x = np.asarray(mesh.points)[np.asarray(mesh.cells)].mean(axis=1)[:, 0]
    t = np.linspace(0.0, 10.0, 5)
    rho0 = np.full(mesh.n_elements, 0.8)
    losing = x > 16.0                                 # right half loses 2 %/year
    frames = np.array([np.where(losing, rho0 * (1 - 0.02 * tt), rho0) for tt in t])
    path = viz.animate_density(mesh, frames, t, tmp_path / "rho.gif", clip=None,
                               camera={"view_from": (0, -1, 0), "up": (0, 0, 1)})
    gif = iio.imread(path, index=None)
    assert gif.shape[0] == len(t)
    h, w = gif.shape[1:3]
    band = gif[:, int(0.35 * h):int(0.6 * h), :, :3].astype(float)
    # RdBu from its white centre (no change) to dark red (largest loss) gets darker all the
    # way: R+G+B falls 741 -> 539 -> 245 -> 134, so darkness orders the loss
    dark = 765.0 - band.sum(axis=-1)
    left, right = dark[:, :, : w // 2 - 20].mean(axis=(1, 2)), \
        dark[:, :, w // 2 + 20:].mean(axis=(1, 2))
    assert np.all(np.diff(right) > 10), right         # darker red frame after frame
    red = band[-1, :, w // 2 + 20:]
    assert (red[..., 0] - red[..., 2]).mean() > 40    # and red (loss), not blue
    assert np.ptp(left) < 3                           # unchanged half keeps its colour
    with pytest.raises(ValueError, match="n_elements = 48"):
        viz.animate_density(mesh, frames[:, :5], t, tmp_path / "x.gif")


def test_solve_out_writes_fields_and_pictures(tmp_path):
    pytest.importorskip("pyvista")
    from febone.cli import main

    mesh = fb.box_mesh((6, 2, 2), size=(30.0, 10.0, 10.0))
    p = mesh.points
    masks = {"fixed": np.isclose(p[:, 0], 0.0).astype(np.uint8),
             "tip": np.isclose(p[:, 0], 30.0).astype(np.uint8)}
    src = tmp_path / "beam.vtu"
    fb.write_mesh(src, mesh, point_data=masks)
    out = tmp_path / "res"
    assert main(["solve", str(src), "--E", "10000", "--fix", "fixed:xyz", "--force",
                 "tip:z=-50", "--out", str(out), "--json", str(tmp_path / "r.json")]) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    names = {name.rsplit("/", 1)[-1] for name in res["pictures"]}
    assert {"von_mises.png", "principal_strain_min.png", "displacement.png"} <= names
    import imageio.v3 as iio

    # cantilever: von Mises grows from the tip to the clamp, so the picture of the beam is
    # neither empty nor one colour
    img = iio.imread(out / "von_mises.png")
    drawn = np.any(np.abs(img[..., :3].astype(int) - 255) > 10, axis=2)[: int(0.86 * img.shape[0])]
    assert 0.03 < drawn.mean() < 0.7
    assert img[..., :3][: int(0.86 * img.shape[0])][drawn].std(axis=0).max() > 20
    assert (out / "solution.vtu").is_file()
