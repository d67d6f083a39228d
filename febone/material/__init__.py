"""Materials: isotropic elasticity, density–modulus laws, CT calibration."""
from .elastic import LinearElastic, MaterialError
from .laws import LAW_NAMES, MORGAN_2003, PowerLaw, density_law, hu_to_density

__all__ = ["LinearElastic", "MaterialError", "PowerLaw", "MORGAN_2003", "LAW_NAMES",
           "density_law", "hu_to_density"]
