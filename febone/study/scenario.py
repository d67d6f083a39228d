"""A :class:`~febone.study.model.Study` from a :class:`~febone.scenario.Scenario`, and the
default study of ``febone sensitivity``."""
from __future__ import annotations


from ..remodel.mechanics import HabitualLoad
from ..remodel.simulation import RemodelSettings
from .model import StudySettings, build_study

__all__ = ["study_from_scenario", "default_sensitivity_study", "DEFAULT_PARAMETERS",
           "DEFAULT_PROTOCOL", "DEFAULT_YEARS"]

#: ``febone sensitivity`` without a scenario: TRT + anastrozole in a hypogonadal man, with a
#: resistance-training programme, on the bundled coarse femur; hip fracture load (sideways fall).
DEFAULT_PROTOCOL = "trt-anastrozole+exercise-resistance"
DEFAULT_PARAMETERS = ("dose:testosterone-cypionate", "dose:anastrozole", "exercise",
                      "coupling:k_load")
DEFAULT_YEARS = 1.0


def study_from_scenario(scenario, *, years: float | None = None, step_days: int | None = None,
                        strength_case: str | None = None, preconditioner: str = "auto",
                        **settings):
    """Build the study of a scenario (one arm; the bone, habitual loading, patient, treatments,
    duration and mechanical step of the scenario).

    Args:
        scenario: :class:`febone.scenario.Scenario` without ``compare`` arms.
        years: override of the duration, years.
        step_days: override of the mechanical step, days.
        strength_case: load case of the fracture-load outcome (default ``sideways-fall`` when the
            scenario's strength cases have it, else their first).
        preconditioner: CG preconditioner (``auto``/``amg``/``jacobi``).
        settings: further :class:`StudySettings` fields.
    """
    import febone as fb
    from ..scenario import Scenario

    if not isinstance(scenario, Scenario):
        raise TypeError(f"scenario must be a febone Scenario (febone.scenario.load_scenario); got "
                        f"{type(scenario).__name__}")
    if scenario.arms:
        raise ValueError(f"scenario {scenario.name!r} compares {len(scenario.arms)} arms; a "
                         f"sensitivity study needs one: run it per arm (scenario.arms[i])")
    cases = tuple(scenario.strength.cases)
    if strength_case is None:
        if not cases:
            raise ValueError("the scenario has no [strength] cases; give strength_case")
        strength_case = "sideways-fall" if "sideways-fall" in cases else cases[0]
    habitual = tuple(HabitualLoad(lc.case, lc.weight, lc.magnitude_bw)
                     for lc in scenario.load_cases)
    b = scenario.bone
    rs = RemodelSettings(habitual=habitual, body_mass_kg=float(scenario.patient.body_mass_kg),
                         law=b.law, nu=b.nu, density_field=b.density_field,
                         preconditioner=preconditioner)
    st = StudySettings(remodel=rs, step_days=step_days or scenario.mechanical_step_days,
                       strength_case=strength_case, **settings)
    mesh = fb.read_mesh(b.path())
    return build_study(mesh, scenario.patient, scenario.treatments,
                       years=years or scenario.duration_years, settings=st)


def default_sensitivity_study(*, years: float = DEFAULT_YEARS, **kw):
    """The default study of ``febone sensitivity`` (:data:`DEFAULT_PROTOCOL` on the bundled
    coarse femur for :data:`DEFAULT_YEARS` year)."""
    from ..scenario import protocol

    return study_from_scenario(protocol(DEFAULT_PROTOCOL), years=years, **kw)
