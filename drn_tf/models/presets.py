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

# Kinds of input a preset's weights are trained for: kind -> (name suffix, description suffix). The same
# architecture and config; only the training data differs (``data.degrade`` in the training config).
KINDS = {
    "clean": ("", ""),
    "photo": ("_photo", ", fine-tuned for JPEG photos"),
}

PRESETS: dict[str, dict] = {}
for _name, _args in _BASE.items():
    for _scale in SCALES:
        for _kind, (_suffix, _text) in KINDS.items():
            PRESETS[f"{_name}_x{_scale}{_suffix}"] = {
                "description": f"{_DESCRIPTIONS[_name]}, x{_scale}{_text}",
                "architecture": "DRN",  # a key of drn_tf.models.build.ARCHITECTURES
                "config": dict(_args, scale=_scale),
                "asset": f"{_name}_x{_scale}{_suffix}.keras",
                "kind": _kind,
                "clean": f"{_name}_x{_scale}",  # the preset of the same network for clean inputs
            }


def variant(name: str, kind: str) -> str:
    """The preset of ``name``'s network trained for ``kind`` (``clean`` | ``photo``) inputs."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    return get_preset(name)["clean"] + KINDS[kind][0]


def preset_names() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> dict:
    """Return a deep copy of the preset ``name``; unknown names list the choices."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(preset_names())}")
    return copy.deepcopy(PRESETS[name])
