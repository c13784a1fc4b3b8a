"""Galaxy10-Sim: synthetic Galaxy10-DECaLS-like galaxies rendered with GalSim from a scheme's features.

`sample_params` draws a galaxy's true generating parameters from its class's morphology features
(widened by `difficulty`, so classes overlap), `render_galaxy` draws it in g, r, z and composes a
Legacy-Surveys-like RGB cutout, and `write_synth` fills a Galaxy10_DECals.h5-layout file in parallel.

Names are imported on first use: reading a rendered file's parameters (`synth.params`, used by
training with per-galaxy symbols) must not need GalSim, which a GPU host may not have.
"""

import importlib

_HOMES = {
    "DEFAULT_DIFFICULTY": "galaxalign.synth.params",
    "PARAM_NAMES": "galaxalign.synth.params",
    "RENDER_VERSION": "galaxalign.synth.params",
    "RENDER_VERSIONS": "galaxalign.synth.params",
    "RenderVersion": "galaxalign.synth.params",
    "GalaxyParams": "galaxalign.synth.params",
    "class_ranges": "galaxalign.synth.params",
    "sample_params": "galaxalign.synth.params",
    "render_galaxy": "galaxalign.synth.render",
    "render_contact_sheet": "galaxalign.synth.sheet",
    "SynthConfig": "galaxalign.synth.writer",
    "write_synth": "galaxalign.synth.writer",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'galaxalign.synth' has no attribute {name!r}")
