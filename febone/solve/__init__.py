"""Linear solvers with implicit differentiation."""
from .amg import AMG, PRECONDITIONERS, make_preconditioner
from .constraints import UnderConstrainedError, check_constraints
from .linear import solve
from .pcg import PCG, PCGInfo, pcg
from .solution import ConvergenceError, Solution, SolveStats

__all__ = ["AMG", "PRECONDITIONERS", "make_preconditioner", "solve", "PCG", "PCGInfo", "pcg", "Solution", "SolveStats", "ConvergenceError",
           "UnderConstrainedError", "check_constraints"]
