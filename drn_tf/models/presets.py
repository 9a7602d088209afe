"""DRN presets: named dicts of constructor arguments (keras-hub style).

Choices the paper leaves open, fixed here and documented in README:

* ``channels`` C (feature width between groups), ``growth`` g (distilled
  channels per block), ``num_blocks`` K (blocks per group), ``num_groups`` G.
* ``activation`` inside F_rd: LeakyReLU(0.05) (as IDN/IMDN).
* ``global_skip``: Y0 (the LFE output) is added to the body output.
* ``upsampler``: ``"single"`` - one 3x3 conv to ``3*s*s`` channels and one
  pixel shuffle for every scale, ×4 included (ESPCN/IMDN layout).
"""

from __future__ import annotations

import copy

_BASE = {
    "drn": {
        "channels": 64,
        "growth": 16,
        "num_blocks": 4,
        "num_groups": 3,
        "activation": "leaky_relu",
        "negative_slope": 0.05,
        "global_skip": True,
        "upsampler": "single",
    },
    "drn_s": {
        "channels": 32,
        "growth": 16,
        "num_blocks": 4,
        "num_groups": 2,
        "activation": "leaky_relu",
        "negative_slope": 0.05,
        "global_skip": True,
        "upsampler": "single",
    },
}

_DESCRIPTIONS = {
    "drn": "DRN, the main model (C=64, g=16, K=4, G=3; about 1.1 M parameters)",
    "drn_s": "DRN-S, the mobile model (C=32, g=16, K=4, G=2; about 0.34 M parameters)",
}

SCALES = (2, 3, 4)

PRESETS: dict[str, dict] = {}
for _name, _args in _BASE.items():
    for _scale in SCALES:
        PRESETS[f"{_name}_x{_scale}"] = {
            "description": f"{_DESCRIPTIONS[_name]}, x{_scale}",
            "architecture": "DRN",  # a key of drn_tf.models.build.ARCHITECTURES
            "config": dict(_args, scale=_scale),
            "asset": f"{_name}_x{_scale}.keras",
        }


def preset_names() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> dict:
    """Return a deep copy of the preset ``name``; unknown names list the choices."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(preset_names())}")
    return copy.deepcopy(PRESETS[name])
