"""drn-tf: DRN (Distilling with Residual Network) super-resolution for Keras 3.

Importing the package builds nothing, reads no file and parses no argument.
"""

__version__ = "0.1.0"

from drn_tf import layers  # noqa: F401  (registers the serializable layers)
from drn_tf.model import DRN, bundled_model_path, load_model  # noqa: F401
from drn_tf.presets import PRESETS, get_preset, preset_names  # noqa: F401


def __getattr__(name):
    # heavier helpers are imported on first use
    if name == "upscale":
        from drn_tf.inference import upscale

        return upscale
    raise AttributeError(f"module 'drn_tf' has no attribute {name!r}")
