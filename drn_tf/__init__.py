"""drn-tf: DRN (Distilling with Residual Network) super-resolution for Keras 3.

Importing the package builds nothing, reads no file, parses no argument and
does not import Keras: the public names below are loaded on first use.

    import drn_tf
    model = drn_tf.DRN.from_preset("drn_x2")
    sr = drn_tf.upscale(image_uint8, scale=2)
"""

__version__ = "0.1.0"

_LAZY = {
    "DRN": "drn_tf.model",
    "load_model": "drn_tf.model",
    "bundled_model_path": "drn_tf.model",
    "PRESETS": "drn_tf.presets",
    "get_preset": "drn_tf.presets",
    "preset_names": "drn_tf.presets",
    "upscale": "drn_tf.inference",
    "layers": None,
    "metrics": None,
    "tfdata": None,
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'drn_tf' has no attribute {name!r}")
    import importlib

    if _LAZY[name] is None:
        return importlib.import_module(f"drn_tf.{name}")
    return getattr(importlib.import_module(_LAZY[name]), name)
