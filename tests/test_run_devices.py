"""The arms of a scenario as one batch over devices (run_scenario(devices=N), febone run
--devices N): every reported output equals the arms run one after another on one device.

Three arms of one patient (placebo, denosumab, alendronate), and an untreated arm of a lighter
patient (another habitual force: a group of its own, run alone), on a 72-element bar with a
"femoral_neck" and a "shaft" region (vBMD, DXA-like aBMD and T-score, % change), compression
stiffness and Pistoia fracture load, CTX/P1NP, over two 73-day steps with an output after each
(the AMG hierarchies refreshed at the first, so the second step runs with per-arm
hierarchies). Three arms over two devices: padded to four. XLA_FLAGS must be set before JAX
initialises, so the runs are made in a subprocess with four forced CPU devices (as
tests/test_data_parallel.py does) that prints them as JSON; the comparisons are made here.
"""
import json
import math
import os
import subprocess
import sys
import textwrap

import pytest

from febone.cli import main
from febone.remodel import run_scenario
from meshes_for_tests import BAR_LOADING

#: Relative agreement of a batched arm with its lone run: the same step under vmap, so only
#: the vectorised operations' round-off differs (measured 1e-13 on the bar and on the femur).
RTOL = 1e-10

_CHILD = """
import json, sys, time
from pathlib import Path
from febone.precision import configure
configure("float64", deterministic=True)
import jax
import numpy as np
from febone.cli import main
from febone.remodel import run_scenario
from febone.scenario import load_scenario

tmp = Path(sys.argv[1])
sys.path.insert(0, sys.argv[3])                      # tests/: the bar of meshes_for_tests
from meshes_for_tests import write_bar_bone
write_bar_bone(tmp / "bar.vtu")
(tmp / "bar.toml").write_text(sys.argv[2].replace("BAR", str(tmp / "bar.vtu")))
sc = load_scenario(tmp / "bar.toml")
out = {"devices": len(jax.devices())}
t = time.perf_counter()
one = run_scenario(sc)
out["seconds_one"] = time.perf_counter() - t
t = time.perf_counter()
two = run_scenario(sc, devices=2)
out["seconds_two"] = time.perf_counter() - t
out["one"] = {n: r.records for n, r in one.arms.items()}
out["two"] = {n: r.records for n, r in two.arms.items()}
out["batch"] = {n: r.description.get("batch") for n, r in two.arms.items()}
out["fields"] = {n: max(float(np.max(np.abs(getattr(r, f) - getattr(two.arms[n], f)))
                              / np.max(np.abs(getattr(r, f))))
                        for f in ("density", "bvtv", "displacement", "von_mises"))
                 for n, r in one.arms.items()}

class Stop(Exception):
    pass

def interrupt(arm, k, n, rec):
    if rec is not None and k == 1:        # every arm's first output and checkpoint written
        raise Stop

try:
    run_scenario(sc, devices=2, out_dir=tmp / "r", progress=interrupt)
except Stop:
    pass
out["lines_interrupted"] = {p.name: len(p.read_text().splitlines())
                            for p in sorted((tmp / "r").glob("*.jsonl"))}
rc = main(["run", str(tmp / "bar.toml"), "--devices", "2", "--out", str(tmp / "r"),
           "--resume", "--no-pictures", "--json", str(tmp / "cli.json")])
out["cli_rc"] = rc
out["lines_resumed"] = {p.name: len(p.read_text().splitlines())
                        for p in sorted((tmp / "r").glob("*.jsonl"))}
out["cli"] = json.loads((tmp / "cli.json").read_text())["protocols"]
out["two_summary"] = two.summary()["protocols"]
out["one_summary"] = one.summary()["protocols"]
print(json.dumps(out))
"""

SCENARIO = """\
name = "three-arms"
[bone]
mesh = "BAR"
[patient]
age = "72 years"
menopause_age = "50 years"
[simulation]
duration = "0.4 years"
output_interval = "0.2 years"
mechanical_step = "73 days"
spinup = 0
""" + BAR_LOADING + """\
[[arms]]
name = "placebo"
""" + "".join(f"""[[arms]]
name = "{drug}"
[[arms.treatments]]
drug = "{drug}"
dose = "{dose}"
interval = "{interval}"
""" for drug, dose, interval in (("denosumab", "60 mg", "every 6 months"),
                                 ("alendronate", "70 mg", "every 7 days"))) + """\
[[arms]]
name = "lighter"
[arms.patient]
body_mass = "60 kg"
"""


def _numbers(x, path=""):
    """{path: number} of every number in a JSON-ready structure."""
    items = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else None
    if items is not None:
        return {k: v for key, item in items for k, v in _numbers(item, f"{path}/{key}").items()}
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return {}
    return {path: float(x)}


def _worst(a, b) -> float:
    """Largest relative difference of the numbers of ``a`` and ``b`` (same structure)."""
    na, nb = _numbers(a), _numbers(b)
    assert na.keys() == nb.keys()
    return max(abs(na[k] - nb[k]) / abs(na[k]) if na[k] != nb[k] else 0.0 for k in na)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("devices")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_CHILD), str(tmp), SCENARIO,
                           os.path.dirname(os.path.abspath(__file__))],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_batched_arms_equal_their_lone_runs(runs):
    """Regional vBMD/aBMD, T-scores and changes, stiffness, fracture load, markers and BV/TV of
    every output, and the output fields, to RTOL; the arms differ far beyond it."""
    assert runs["devices"] == 4
    assert list(runs["two"]) == list(runs["one"]) == ["placebo", "denosumab", "alendronate",
                                                      "lighter"]
    batch = runs["batch"]
    assert batch.pop("lighter") is None                 # alone: remodel() as without devices
    assert all(b == {"runs": 3, "padding": 1, "devices": 2} for b in batch.values())
    assert runs["two"]["lighter"] == runs["one"]["lighter"]
    for arm, recs in runs["one"].items():
        assert len(recs) == 3
        assert _worst(recs, runs["two"][arm]) < RTOL, arm
        assert runs["fields"][arm] < RTOL, arm
    neck = {arm: recs[-1]["regions"]["femoral_neck"] for arm, recs in runs["one"].items()}
    assert neck["denosumab"]["change_pct"] > neck["alendronate"]["change_pct"] + 0.5 > \
        neck["placebo"]["change_pct"] + 1.0
    assert "abmd_g_cm2" in neck["placebo"] and math.isfinite(neck["placebo"]["t_score"])


_KEYS = ("time_years", "regions", "stiffness_N_per_mm", "fracture_load_N", "markers",
         "mean_bvtv")


@pytest.mark.slow
def test_cli_devices_resumes_to_the_uninterrupted_answers(runs):
    """Interrupted after the batch's first output (run_scenario), each batched arm's jsonl holds
    the baseline and that output (the lone arm, next, has not started); resumed by `febone run
    --devices 2 --resume` (the group batched again from its checkpoints, the lone arm from the
    start), its results equal the uninterrupted batch exactly and the arms run one after
    another to RTOL."""
    assert runs["lines_interrupted"] == {f"{a}.jsonl": 2 for a in
                                         ("alendronate", "denosumab", "placebo")}
    assert runs["cli_rc"] == 0
    assert runs["lines_resumed"] == {f"{a}.jsonl": 3 for a in sorted(runs["one"])}
    for arm, summary in runs["one_summary"].items():
        cli = runs["cli"][arm]
        for key in _KEYS:
            assert cli[key] == runs["two_summary"][arm][key], (arm, key)
            assert _worst(summary[key], cli[key]) < RTOL, (arm, key)


def test_more_devices_than_exist(capsys):
    """This process has one CPU device: the message names jax.device_count() and the flag
    that forces host devices, before any set-up."""
    import jax

    n = jax.device_count() + 1
    with pytest.raises(ValueError, match="xla_force_host_platform_device_count"):
        run_scenario(object(), devices=n)
    assert main(["run", "--protocol", "untreated-menopause", "--devices", str(n)]) == 1
    err = capsys.readouterr().err
    assert "jax.device_count()" in err and "Traceback" not in err


_DISTRIBUTED_CHILD = """
import json, sys
from pathlib import Path
from febone.precision import configure
configure("float64", deterministic=True)
from febone.parallel import initialize_distributed
initialize_distributed()                              # FEBONE_* variables of the test
import jax
import febone.remodel.simulation as simulation
from febone.remodel import run_scenario
from febone.scenario import load_scenario

tmp, me = Path(sys.argv[1]), jax.process_index()
sys.path.insert(0, sys.argv[3])                      # tests/: the bar of meshes_for_tests
from meshes_for_tests import write_bar_bone
own = tmp / f"process{me}"                            # each process its own bone file
own.mkdir()
write_bar_bone(own / "bar.vtu")
(own / "bar.toml").write_text(sys.argv[2].replace("BAR", str(own / "bar.vtu")))
writes = []                                           # the files this process writes
for name in ("atomic_write_text", "atomic_savez"):
    def counted(path, *a, _f=getattr(simulation, name), **k):
        writes.append(Path(path).name)
        return _f(path, *a, **k)
    setattr(simulation, name, counted)
calls = []
res = run_scenario(load_scenario(own / "bar.toml"), devices=4, out_dir=tmp / "out",
                   progress=lambda *a: calls.append(a[1]))
print(json.dumps({"process": me, "processes": jax.process_count(),
                  "devices": jax.device_count(), "local": jax.local_device_count(),
                  "records": {n: r.records for n, r in res.arms.items()},
                  "batch": {n: r.description.get("batch") for n, r in res.arms.items()},
                  "writes": sorted(set(writes)), "progress_calls": len(calls)}))
"""


@pytest.mark.heavy
@pytest.mark.slow
def test_two_processes_run_the_arms_of_one_batch(runs, tmp_path):
    """Two processes of two CPU devices each joined by jax.distributed (the environment of
    `febone --distributed`): the three arms of one patient as one batch over the four devices
    (padded to four), the lighter arm alone on each process. Every process returns every
    arm's records, equal to the arms run one after another in one process (the module's
    reference) to RTOL; process 0 alone writes the jsonl and checkpoints and reports progress."""
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu", "FEBONE_COORDINATOR_ADDRESS": f"localhost:{port}",
           "FEBONE_NUM_PROCESSES": "2"}
    args = [sys.executable, "-c", textwrap.dedent(_DISTRIBUTED_CHILD), str(tmp_path), SCENARIO,
            os.path.dirname(os.path.abspath(__file__))]
    procs = [subprocess.Popen(args, env={**env, "FEBONE_PROCESS_ID": str(i)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=240)
            assert p.returncode == 0, stderr[-3000:]
            outs.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [o["process"] for o in outs] == [0, 1]
    arms = ["placebo", "denosumab", "alendronate", "lighter"]
    files = sorted(f"{a}{s}" for a in arms for s in (".jsonl", ".checkpoint.npz"))
    assert outs[0]["writes"] == files and outs[1]["writes"] == []
    assert outs[0]["progress_calls"] > 0 and outs[1]["progress_calls"] == 0
    for o in outs:
        assert o["processes"] == 2 and o["devices"] == 4 and o["local"] == 2
        assert list(o["records"]) == arms
        batch = o["batch"]
        assert batch.pop("lighter") is None
        assert all(b == {"runs": 3, "padding": 1, "devices": 4} for b in batch.values())
        for arm, recs in runs["one"].items():
            assert len(o["records"][arm]) == 3
            assert _worst(recs, o["records"][arm]) < RTOL, (o["process"], arm)
    for arm in arms:                       # written once, whole: the baseline and two outputs
        assert len((tmp_path / "out" / f"{arm}.jsonl").read_text().splitlines()) == 3
