"""Keras metrics of the evaluation protocol: Y-channel PSNR and SSIM with ``keras.ops``.

The protocol and its numpy form live in :mod:`drn_tf.core.protocol` and
:mod:`drn_tf.core.metrics`; :class:`YPSNR` and :class:`YSSIM` compute the same
numbers per image inside the graph, so ``model.evaluate`` on
:func:`drn_tf.data.tfdata.make_val_dataset` reports what ``drn evaluate``
reports (grey images included). Backend-neutral (TensorFlow or JAX).
"""

from __future__ import annotations

import keras
from keras import ops

from drn_tf.core.metrics import _Y_WEIGHTS, gaussian_window, ssim_map


def _to_255_ops(x):
    """Float [0, 1] -> clipped, rounded uint8 values (float32): :func:`drn_tf.core.metrics.to_uint8`."""
    return ops.floor(ops.clip(ops.cast(x, "float32"), 0.0, 1.0) * 255.0 + 0.5)


def _luma_ops(x255):
    """Rounded MATLAB ``rgb2ycbcr`` luma of uint8-valued RGB (float32, one channel):
    :func:`drn_tf.core.metrics.rgb_to_y`."""
    w = ops.convert_to_tensor(_Y_WEIGHTS.astype("float32"))
    return ops.floor(16.0 + ops.sum(x255 * w, axis=-1, keepdims=True) + 0.5)


def _shave_ops(x, border):
    return x[:, border:-border, border:-border, :] if border > 0 else x


def _y_channel_ops(x, scale_crop):
    """Float RGB [0, 1] batch -> rounded uint8-valued Y (float32) with the border dropped."""
    x = _to_255_ops(x)
    if x.shape[-1] == 3:
        x = _luma_ops(x)
    return _shave_ops(x, scale_crop)


def _protocol_y_pair(y_true, y_pred, border):
    """Y of HR and SR as the protocol takes them: the graph form of
    :func:`drn_tf.core.protocol.model_output` (grey: the RGB SR averaged back to one channel before
    clipping and rounding) followed by :func:`drn_tf.core.metrics.rgb_to_y` and the border crop.

    An RGB HR: luma of both. A single-channel (grey) HR: used as it is, and an RGB SR averaged to one
    channel first (the model saw the grey replicated to RGB, :func:`drn_tf.core.protocol.model_input`).
    The HR's channel count may be unknown until run time (a ``tf.data`` set that mixes grey and colour
    images): then both forms are computed and the right one picked."""
    y_true, y_pred = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")
    c_true, c_pred = y_true.shape[-1], y_pred.shape[-1]
    if c_true is not None and (c_true != 1 or c_pred == 1):
        return _y_channel_ops(y_true, border), _y_channel_ops(y_pred, border)
    pred_grey = _y_channel_ops(ops.mean(y_pred, axis=-1, keepdims=True), border)
    if c_true == 1:
        return _y_channel_ops(y_true, border), pred_grey
    grey = ops.equal(ops.shape(y_true)[-1], 1)
    t255 = _to_255_ops(y_true)
    t_y = ops.where(grey, t255[..., :1], _luma_ops(t255))  # (the luma of 1 channel is computed, then discarded)
    return _shave_ops(t_y, border), ops.where(grey, pred_grey, _y_channel_ops(y_pred, border))


def _ssim_ops(a, b):
    """Per-image SSIM of (N, H, W, 1) float32 tensors with values in [0, 255]."""
    g = gaussian_window().astype("float32")
    kernel_rows = ops.convert_to_tensor(g.reshape(-1, 1, 1, 1))
    kernel_cols = ops.convert_to_tensor(g.reshape(1, -1, 1, 1))

    def filt(x):
        x = ops.conv(x, kernel_rows, padding="valid")
        return ops.conv(x, kernel_cols, padding="valid")

    return ops.mean(ssim_map(a, b, filt), axis=(1, 2, 3))


class _PerImageMean(keras.metrics.Metric):
    """Mean over images (not over the pooled batch) of a per-image Y metric."""

    def __init__(self, border=2, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.border = int(border)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total", dtype="float32")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count", dtype="float32")

    def per_image(self, y_true, y_pred):  # pragma: no cover - abstract
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = self.per_image(*_protocol_y_pair(y_true, y_pred, self.border))
        self.total.assign(self.total + ops.sum(values))
        self.count.assign(self.count + ops.cast(ops.shape(values)[0], "float32"))

    def result(self):
        return ops.divide_no_nan(self.total, self.count)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        config = super().get_config()
        config.update({"border": self.border})
        return config


@keras.saving.register_keras_serializable(package="drn_tf")
class YPSNR(_PerImageMean):
    """Protocol Y-channel PSNR, averaged per image (``keras.ops.psnr`` pools the MSE over the batch)."""

    def __init__(self, border=2, name="psnr_y", **kwargs):
        super().__init__(border=border, name=name, **kwargs)

    def per_image(self, a, b):
        mse = ops.mean((a - b) ** 2, axis=(1, 2, 3))
        return 10.0 * ops.log10(255.0**2 / ops.maximum(mse, 1e-10))


@keras.saving.register_keras_serializable(package="drn_tf")
class YSSIM(_PerImageMean):
    """Protocol Y-channel SSIM, averaged per image."""

    def __init__(self, border=2, name="ssim_y", **kwargs):
        super().__init__(border=border, name=name, **kwargs)

    def per_image(self, a, b):
        return _ssim_ops(a, b)
