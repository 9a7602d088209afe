"""The runtime interface: what runs the network, whichever engine it is.

A :class:`Runtime` knows four things, and nothing about images, tiles or files:

* ``name``: its name in the runtime table (:data:`drn_tf.inference.runtimes.RUNTIMES`);
* ``scale``: the upscaling factor;
* ``receptive_radius``: LR pixels of context an output pixel depends on (the
  tile overlap that makes tiling exact), None when it cannot be told;
* :meth:`Runtime.run_batch`: one forward pass on an NHWC batch of uint8 pixels or
  float32 in [0, 1], returning float32 ``(n, h*s, w*s, 3)`` on the [0, 1] scale
  (unclipped: what the engine returns).

``input_size`` is None for engines that take any image size; an engine with
one input size (a fixed-shape TFLite file) sets ``(h, w)`` and the tiling
assembly (:mod:`drn_tf.inference.tiled`) cuts tiles of exactly that size.

Everything else (tiling, channels, alpha, rounding, files) is shared:
:func:`drn_tf.inference.tiled.super_resolve` and :mod:`drn_tf.inference.upscale`
work on any runtime. Implementations: :class:`KerasRuntime` (here),
:class:`drn_tf.inference.litert.LiteRTRuntime` (float and int8 TFLite files),
:class:`drn_tf.inference.savedmodel.SavedModelRuntime`.
"""

from __future__ import annotations

import abc

import numpy as np

from drn_tf.core.metrics import to_uint8
from drn_tf.core.protocol import to_float01


class Runtime(abc.ABC):
    """What runs the network: one forward pass per :meth:`run_batch`."""

    name: str
    scale: int
    receptive_radius: int | None
    input_size: tuple[int, int] | None = None  # (h, w) of an engine that takes one input size only

    @abc.abstractmethod
    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """NHWC uint8 pixels or float32 in [0, 1] -> float32 ``(n, h*s, w*s, 3)``, [0, 1] scale, unclipped."""

    def __repr__(self) -> str:
        radius = self.receptive_radius
        return f"{type(self).__name__}(name={self.name!r}, scale={self.scale}, receptive_radius={radius})"


def float_pixels(batch: np.ndarray) -> np.ndarray:
    """A batch as float32 in [0, 1]: uint8 pixels / 255; float passes as it is (contiguous float32)."""
    batch = np.asarray(batch)
    if batch.dtype == np.uint8:
        return to_float01(batch)
    return np.ascontiguousarray(batch, dtype=np.float32)


def uint8_pixels(batch: np.ndarray) -> np.ndarray:
    """A batch as uint8 pixels: float in [0, 1] clipped and rounded half up; uint8 passes as it is."""
    return np.ascontiguousarray(to_uint8(np.asarray(batch)))


class KerasRuntime(Runtime):
    """A Keras model (any backend): ``predict_on_batch``, which reuses Keras's cached predict function
    (a ``tf.function`` with ``reduce_retracing=True`` on TensorFlow, a jitted function on JAX), so calling
    it per tile does not rebuild anything."""

    name = "keras"

    def __init__(self, model, device: str | None = None, name: str | None = None):
        """``device``: a TensorFlow device name (``/GPU:0``, ``/CPU:0``; :mod:`drn_tf.inference.devices`) every
        forward pass is placed on (None: TensorFlow's choice); ``name``: the runtime's name (``keras-bf16``)."""
        from drn_tf.models.resolve import model_receptive_radius, model_scale

        self.model = model
        self.device = device
        if name is not None:
            self.name = name
        self.scale = model_scale(model)
        self.receptive_radius = model_receptive_radius(model)

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        if self.device is None:
            return np.asarray(self.model.predict_on_batch(float_pixels(batch)), dtype=np.float32)
        import tensorflow as tf

        with tf.device(self.device):
            return np.asarray(self.model.predict_on_batch(float_pixels(batch)), dtype=np.float32)


def as_runtime(model) -> Runtime:
    """``model`` itself when it is a :class:`Runtime`, else a Keras model in a :class:`KerasRuntime`."""
    return model if isinstance(model, Runtime) else KerasRuntime(model)


def check_runtime_scale(runtime: Runtime, scale: int | None, name: str = "model") -> Runtime:
    """``runtime``; :class:`drn_tf.models.resolve.ModelError` if ``scale`` is given and differs."""
    from drn_tf.models.resolve import _check_scale_value

    _check_scale_value(runtime.scale, scale, name)
    return runtime


__all__ = ["KerasRuntime", "Runtime", "as_runtime", "check_runtime_scale", "float_pixels", "uint8_pixels"]
