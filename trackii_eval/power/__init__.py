"""Design the next study: simulation-based power for the growth and DiD designs the tool fits.

``simulate_power(PowerDesign(...))`` draws outcomes from the planned design, refits the
analysis model on the growth engine's refit path (the design's sufficient statistics are built
once; only the outcome changes) and counts rejections; ``power_curve`` repeats that over sample
sizes, ``minimal_detectable_effect`` finds the effect a design detects with a given power, and
:mod:`.theory` gives the closed forms the simulations are checked against.
"""

from trackii_eval.power.design import PowerDesign
from trackii_eval.power.run import (
    PowerCurve,
    PowerPoint,
    minimal_detectable_effect,
    power_curve,
    simulate_power,
    wilson_interval,
)

__all__ = [
    "PowerCurve",
    "PowerDesign",
    "PowerPoint",
    "minimal_detectable_effect",
    "power_curve",
    "simulate_power",
    "wilson_interval",
]
