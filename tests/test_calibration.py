"""The calibrated coupling (DEFAULT_COUPLING) reproduces every science.md §8 target inside its
stated band (febone.calibration.site; report docs/calibration.md).

The bands are the published uncertainty or the range a qualitative statement allows (see
TARGETS); they are wider than the fit residuals, so the test fails when a change to the
physiology, the coupling or the cell model moves any outcome out of its published range.
"""
import numpy as np
import pytest

from febone.calibration.site import TARGETS, evaluate, site_distribution
from febone.remodel.coupling import DEFAULT_COUPLING


@pytest.fixture(scope="module")
def values():
    return evaluate(DEFAULT_COUPLING)


@pytest.mark.slow
@pytest.mark.parametrize("i", range(len(TARGETS)), ids=[t.name for t in TARGETS])
def test_calibrated_model_is_inside_the_published_band(values, i):
    t = TARGETS[i]
    assert abs(values[i] - t.value) <= t.band, (
        f"{t.name}: model {values[i]:+.2f} {t.unit}, published {t.value:+.1f} ± {t.band} "
        f"({t.source})")


def test_site_distributions_are_the_bundled_bones():
    # femoral neck of the bundled femur: BV/TV from 0.04..0.9 (ρ_app/2.0), mean ρ 0.645 g/cm³
    f, w = site_distribution("femoral_neck")
    assert np.all(np.diff(f) > 0) and f[0] < 0.1 and f[-1] > 0.85
    assert float(np.sum(f * w) / np.sum(w)) == pytest.approx(0.645 / 2.0, rel=0.02)
    f, w = site_distribution("spine_trabecular")
    assert np.all((f > 0.1) & (f < 0.4))
    with pytest.raises(ValueError, match="unknown site"):
        site_distribution("skull")


def test_report_only_prints_and_writes_only_where_told(tmp_path, monkeypatch, capsys):
    """``--report-only`` must not overwrite the committed docs/calibration.md (its header
    records the fit that produced the constants); ``--out`` writes the report there."""
    from febone.calibration import site

    # the report's numbers are the published values here: this test is about the files
    monkeypatch.setattr(site, "evaluate",
                        lambda coupling=None, targets=TARGETS: np.array([t.value for t in targets]))
    monkeypatch.setattr(site.logging, "basicConfig", lambda **kw: None)  # keep pytest's logging
    (tmp_path / "docs").mkdir()
    monkeypatch.setattr(site, "_ROOT", tmp_path)
    site.main(["--report-only"])
    assert "Evaluation of the committed constants" in capsys.readouterr().out
    assert not (tmp_path / "docs" / "calibration.md").exists()
    out = tmp_path / "report.md"
    site.main(["--report-only", "--out", str(out)])
    text = out.read_text()
    assert all(t.name in text for t in TARGETS)
