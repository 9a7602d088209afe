"""Presets to models, for any architecture: the one place that maps a preset's ``architecture`` to its
Keras model class. Everything above the models package builds models through :func:`from_preset` and
:func:`model_class`, so a second architecture is a module here, an entry in :data:`ARCHITECTURES` and
its presets (:mod:`drn_tf.models.presets`)."""

from __future__ import annotations

import importlib

# preset "architecture" -> "module:class"; the class has ``from_preset(name, load_weights, **overrides)``
ARCHITECTURES = {"DRN": "drn_tf.models.drn:DRN"}


def model_class(preset: str):
    """The Keras model class of the preset ``preset`` (ValueError for an unknown preset)."""
    from drn_tf.models.presets import get_preset

    arch = get_preset(preset).get("architecture", "DRN")
    module, name = ARCHITECTURES[arch].split(":")
    return getattr(importlib.import_module(module), name)


def from_preset(name: str, load_weights: bool = True, **overrides):
    """The preset ``name``'s model: its bundled trained weights (``load_weights=True``; FileNotFoundError
    when none is bundled) or freshly initialised with ``overrides``. See ``DRN.from_preset``."""
    return model_class(name).from_preset(name, load_weights=load_weights, **overrides)
