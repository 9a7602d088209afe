"""drn-tf: DRN (Distilling with Residual Network) super-resolution for Keras 3.

Importing the package builds nothing, reads no file, parses no argument and
does not import Keras: the public names below are loaded on first use. The first
of them to need Keras starts it with TensorFlow's start-up log on stderr silenced
(oneDNN notices, ``failed call to cuInit`` on a machine without a GPU);
``DRN_VERBOSE=1`` shows it.

    import drn_tf
    model = drn_tf.DRN.from_preset("drn_x2")
    sr = drn_tf.upscale(image_uint8, scale=2)
"""

from drn_tf.core.version import VERSION as __version__  # noqa: F401  (the public version attribute)

_LAZY = {
    "DRN": "drn_tf.models.drn",
    "load_model": "drn_tf.models.drn",
    "bundled_model_path": "drn_tf.models.drn",
    "PRESETS": "drn_tf.models.presets",
    "get_preset": "drn_tf.models.presets",
    "preset_names": "drn_tf.models.presets",
    "upscale": "drn_tf.inference.upscale",
}
# modules reachable as attributes (``drn_tf.layers.PixelShuffle``)
_MODULES = {
    "layers": "drn_tf.models.layers",
    "metrics": "drn_tf.models.metrics",
    "tfdata": "drn_tf.data.tfdata",
}

# names that need no framework: everything else starts Keras quietly first
_PLAIN = {"drn_tf.models.presets"}

__all__ = sorted([*_LAZY, *_MODULES])


def __getattr__(name):
    import importlib
    import sys

    module = _MODULES.get(name) or _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'drn_tf' has no attribute {name!r}")
    if module not in _PLAIN and "keras" not in sys.modules:
        from drn_tf.models.backend import import_backend_quietly

        import_backend_quietly()
    if name in _MODULES:
        return importlib.import_module(module)
    return getattr(importlib.import_module(module), name)
