"""``febone sensitivity`` end to end on the bundled femur: the JSON the issue asks for, the
reverse-mode derivatives against the command's own central differences (``--check``), the
tornado plot, and bad input.

One 30-day mechanical step keeps the run short (two compilations, ~30 s on 2 cores). AD and FD
must agree to 1e-3 relative: the habitual solves run at CG rtol 1e-8, so FD with the per-
parameter steps of ``fd_step`` (~1e-3 relative) carries ~1e-5 relative noise, while a missing
term or a misplaced stop_gradient shows as ≥ 1e-2 (the same argument as in test_study.py).
"""
import json

import numpy as np
import pytest

from febone.cli import main
from febone.study.scenario import DEFAULT_PARAMETERS

MONTH = str(30 / 365.25)


@pytest.mark.heavy
@pytest.mark.slow
def test_default_study_json_check_and_tornado(tmp_path, capsys):
    out_json, out_dir = tmp_path / "s.json", tmp_path / "figs"
    # half a year of the patient's history replayed (two quarterly steps): the gradient
    # flows through it too
    rc = main(["sensitivity", "--years", MONTH, "--spinup", "0.5", "--check", "--json",
               str(out_json), "--out", str(out_dir)])
    assert rc == 0, capsys.readouterr().err
    res = json.loads(out_json.read_text())
    for key in ("outcome", "value", "parameters", "forward_seconds", "gradient_seconds"):
        assert key in res, key
    assert res["outcome"] == "fracture_load" and res["value"] > 0
    assert res["forward_seconds"] > 0 and res["gradient_seconds"] > 0
    names = [p["name"] for p in res["parameters"]]
    assert len(names) >= 3 and set(names) <= set(DEFAULT_PARAMETERS)
    for p in res["parameters"]:
        assert set(p) >= {"name", "value", "ad", "fd"}
        np.testing.assert_allclose(p["ad"], p["fd"], rtol=1e-3, atol=1e-7 * res["value"],
                                   err_msg=p["name"])
    assert any(abs(p["ad"]) * max(abs(p["value"]), 1.0) > 1e-4 * res["value"]
               for p in res["parameters"])          # some parameter moves the outcome
    png = out_dir / "tornado.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    text = capsys.readouterr().out
    assert "fracture_load" in text and "fd" in text


@pytest.mark.parametrize("argv, message", [
    (["--param", "dosage:aspirin"], "unknown parameter"),
    (["--outcome", "bmd"], "unknown outcome"),
    (["--years", "-1"], "--years must be positive"),
])
def test_bad_input_names_the_problem(argv, message, capsys):
    assert main(["sensitivity", "--years", MONTH, *argv]) == 1
    assert message in capsys.readouterr().err
