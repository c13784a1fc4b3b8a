"""Galaxy10-Sim: synthetic Galaxy10-DECaLS-like galaxies rendered with GalSim from a scheme's features.

`sample_params` draws a galaxy's true generating parameters from its class's morphology features
(widened by `difficulty`, so classes overlap), `render_galaxy` draws it in g, r, z and composes a
Legacy-Surveys-like RGB cutout, and `write_synth` fills a Galaxy10_DECals.h5-layout file in parallel.
"""

from galaxalign.synth.params import DEFAULT_DIFFICULTY, PARAM_NAMES, GalaxyParams, class_ranges, sample_params
from galaxalign.synth.render import render_galaxy
from galaxalign.synth.sheet import render_contact_sheet
from galaxalign.synth.writer import SynthConfig, write_synth

__all__ = [
    "DEFAULT_DIFFICULTY",
    "PARAM_NAMES",
    "GalaxyParams",
    "SynthConfig",
    "class_ranges",
    "render_contact_sheet",
    "render_galaxy",
    "sample_params",
    "write_synth",
]
