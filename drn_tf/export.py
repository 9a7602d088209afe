"""Export a DRN model for serving: SavedModel (TF Serving) and TFLite (Android).

TensorFlow-only module (``tf.saved_model``, ``tf.lite``); the model code
itself stays backend-agnostic. Everything here works on a model in memory;
``drn export`` (:mod:`drn_tf.commands.export`) and ``converters/*.py`` are
thin wrappers.

SavedModel (:func:`export_saved_model`), written as ``DIR/<version>/`` (the
layout TF Serving watches), with two signatures:

* ``serving_default``: ``images`` uint8 ``[batch, height, width, 3]`` (any
  size) -> ``sr_images`` uint8 ``[batch, height*s, width*s, 3]``;
* ``upscale_bytes``: ``image_bytes`` string ``[batch]`` (PNG/JPEG/BMP/GIF
  files; grey and RGBA inputs become RGB) -> ``sr_image_bytes`` string
  ``[batch]`` (PNG files). The ``_bytes`` suffix makes TF Serving's REST API
  answer with ``{"b64": ...}`` objects.

TFLite (:func:`convert_tflite`): always converted from a SavedModel written
with :class:`keras.export.ExportArchive` (``TFLiteConverter.from_keras_model``
does not work with Keras 3), ``TFLITE_BUILTINS`` only (the export fails with
:class:`ExportError` if an op would need the Flex delegate), one signature
``serving_default``: ``lr_image`` ``[1, H, W, 3]`` -> ``sr_image``
``[1, H*s, W*s, 3]``, both dynamic in size unless ``input_size`` fixes them.

* ``float32``, ``float16`` (weights stored as float16), ``dynamic`` (int8
  weights, float activations): float32 input and output in ``[0, 1]``; the
  output is clipped to ``[0, 1]`` inside the model.
* ``int8``: full-integer (calibrated on real images), uint8 input and output
  that *are* 8-bit pixel values (scale 1/255, zero point 0: the model's
  uint8 tensors are set to exactly that, see :func:`_force_pixel_io`).

Every TFLite file carries a ``drn_tf`` metadata entry (JSON: scale,
receptive radius, quantization, input size, I/O convention) read by
:func:`tflite_metadata`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import re
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from drn_tf.inference import tile_starts
from drn_tf.utils import parse_size as _parse_size
from drn_tf.utils import quiet_stderr
from drn_tf.utils import write_atomic  # noqa: F401  (re-exported for the export command)

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
SERVING_INPUT = "images"
SERVING_OUTPUT = "sr_images"
BYTES_SIGNATURE = "upscale_bytes"
BYTES_INPUT = "image_bytes"
BYTES_OUTPUT = "sr_image_bytes"
TFLITE_INPUT = "lr_image"
TFLITE_OUTPUT = "sr_image"
METADATA_NAME = "drn_tf"
# int8 calibration: number of LR crops and their size (dynamic-size models)
CALIBRATION_COUNT = 24
CALIBRATION_PATCH = 96


class ExportError(Exception):
    """An export that cannot be done as asked; the message says why (one line)."""


def default_data_dir() -> Path:
    """The project's data folder (:func:`drn_tf.utils.default_data_root`: ``$DRN_DATA``, ``../shared/data``)."""
    from drn_tf.utils import default_data_root

    return default_data_root()


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def model_scale(model) -> int:
    from drn_tf.inference import ModelError
    from drn_tf.inference import model_scale as _scale

    try:
        return _scale(model)
    except ModelError as exc:
        raise ExportError(str(exc)) from None


def model_radius(model) -> int:
    """Receptive radius in LR pixels (the tile overlap that makes tiling exact)."""
    from drn_tf.inference import model_receptive_radius

    radius = model_receptive_radius(model)
    if radius is None:
        raise ExportError("cannot tell the model's receptive radius (not a DRN model)")
    return radius


def load_export_model(model_path=None, preset: str | None = None):
    """``(model, description)`` from a ``.keras`` file or a preset (bundled weights if present)."""
    from drn_tf.model import DRN, bundled_model_path, load_model

    if model_path:
        try:
            return load_model(model_path), f"{model_path}"
        except (OSError, ValueError, TypeError) as exc:
            raise ExportError(f"{model_path}: cannot load model: {exc}") from None
    preset = preset or "drn_x2"
    try:
        bundled = bundled_model_path(preset)
        model = DRN.from_preset(preset, load_weights=bundled is not None)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    if bundled:
        return model, f"preset {preset} (bundled weights {bundled.name})"
    return model, f"preset {preset} (no bundled weights: freshly initialised, untrained)"


# ---------------------------------------------------------------- GPU-friendly rewrite


def gpu_friendly_model(model):
    """A copy of ``model`` whose pixel shuffles are fixed-weight transposed convolutions.

    The LiteRT GPU delegate's documented op list has ``TRANSPOSE_CONV`` but
    not ``DEPTH_TO_SPACE`` (older delegates reject it: "DEPTH_TO_SPACE:
    Operation is not supported"). The rewrite shares every weight with
    ``model`` and gives identical outputs (one-hot kernels: exact products
    with 1 and sums with exact zeros).
    """
    import keras

    from drn_tf import layers as L

    replaced = []

    def clone(layer):
        if isinstance(layer, L.Upsampler):
            config = dict(layer.get_config(), shuffle_method="transposed_conv")
            new = L.Upsampler.from_config(config)
            replaced.append((layer, new))
            return new
        return layer

    copy = keras.models.clone_model(model, clone_function=clone)
    if not replaced:
        raise ExportError("the model has no DRN Upsampler layer to rewrite")
    for old, new in replaced:
        new.set_weights(old.get_weights())
    return copy


# ---------------------------------------------------------------- SavedModel


def _uint8_image(tf, y):
    """Float [0, 1] -> uint8 exactly like :func:`drn_tf.metrics.to_uint8` (clip, round half up)."""
    return tf.cast(tf.floor(tf.clip_by_value(y, 0.0, 1.0) * 255.0 + 0.5), tf.uint8)


def _next_version(base: Path) -> int:
    versions = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()] if base.is_dir() else []
    return max(versions, default=0) + 1


def export_saved_model(model, base_dir, version: int | None = None, overwrite: bool = False) -> Path:
    """Write ``base_dir/<version>/`` (TF Serving layout); returns that folder.

    ``version`` defaults to one more than the highest numeric subfolder (1
    for a new folder), so re-exporting publishes a new version that TF
    Serving picks up. The folder is written under a temporary name and
    renamed, so a server watching ``base_dir`` never loads half a model.
    """
    import keras

    tf = _tf()
    base = Path(base_dir)
    if base.exists() and not base.is_dir():
        raise ExportError(f"{base} exists and is not a folder")
    base.mkdir(parents=True, exist_ok=True)
    version = _next_version(base) if version is None else int(version)
    if version < 1:
        raise ExportError(f"version must be a positive integer, got {version}")
    target = base / str(version)
    if target.exists() and not overwrite:
        raise ExportError(f"{target} already exists (use another --version, or --overwrite)")
    channels = int(model.inputs[0].shape[-1])

    def upscale(images):
        x = tf.cast(images, tf.float32) / 255.0
        return _uint8_image(tf, model(x, training=False))

    def serve(images):
        return {SERVING_OUTPUT: upscale(images)}

    def serve_bytes(image_bytes):
        def one(data):
            image = tf.io.decode_image(data, channels=channels, expand_animations=False)
            image.set_shape([None, None, channels])
            return tf.io.encode_png(upscale(image[None])[0])

        encoded = tf.map_fn(one, image_bytes, fn_output_signature=tf.TensorSpec([], tf.string))
        return {BYTES_OUTPUT: encoded}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default",
        fn=serve,
        input_signature=[tf.TensorSpec([None, None, None, channels], tf.uint8, name=SERVING_INPUT)],
    )
    archive.add_endpoint(
        name=BYTES_SIGNATURE,
        fn=serve_bytes,
        input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)],
    )
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=base))
    try:
        archive.write_out(str(tmp), verbose=False)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# ---------------------------------------------------------------- TFLite


def parse_size(text) -> tuple[int, int] | None:
    """``"HxW"`` -> ``(H, W)``; None passes through."""
    return _parse_size(text, error=ExportError)


def _float_saved_model(model, path, input_size=None) -> None:
    """SavedModel with one signature ``lr_image`` float [0, 1] -> ``sr_image`` clipped to [0, 1]."""
    import keras

    tf = _tf()
    channels = int(model.inputs[0].shape[-1])
    shape = [None, None, None, channels] if input_size is None else [1, input_size[0], input_size[1], channels]

    def serve(lr_image):
        return {TFLITE_OUTPUT: tf.clip_by_value(model(lr_image, training=False), 0.0, 1.0)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default", fn=serve, input_signature=[tf.TensorSpec(shape, tf.float32, name=TFLITE_INPUT)]
    )
    archive.write_out(str(path), verbose=False)


# ---------------------------------------------------------------- int8: activation ranges

# Identifies the int8 recipe below (metadata, and the key of the runtime's .tflite cache).
INT8_RECIPE = "taps/3: exact input, folded output mean, [0,1] output, full-range LFE, MSE ranges elsewhere, int8 ELU"


class _QuantGraph:
    """A DRN's forward pass written with TensorFlow ops, with a hook on every activation tensor.

    Used only by the int8 export. Same function as the Keras model (tested
    to float round-off), in a form the int8 converter quantizes better:

    * the input is exact in int8: ``x - c`` with ``c`` a grey level (the
      rest of the mean shift goes into the LFE bias and its border padding);
    * the output mean (``add_mean``) is folded into the upsampler
      convolution's bias (the pixel shuffle only moves channels), and the
      clip to ``[0, 1]`` sits before the shuffle, so the last convolution's
      int8 output *is* the image (range [0, 1], scale 1/255: one rounding
      to grey levels, the one the float model's uint8 output gets anyway;
      the int8 graph leaves the clip out, its quantization clamps);
    * every activation tensor ("tap") passes through ``hook(name, tensor)``:
      :func:`_tap_ranges` records them on calibration crops, and the export
      graph puts a ``fake_quant_with_min_max_vars`` there with the chosen
      range, which the TFLite converter takes as that tensor's quantization.

    Raises :class:`ExportError` for models it does not know (not a DRN with
    a one-stage upsampler); the export then falls back to plain min-max
    calibration of the Keras model.
    """

    def __init__(self, model, gpu_friendly: bool = False):
        from drn_tf import layers as L

        try:
            cfg = model.get_config()
            up = model.get_layer("upsampler")
            self.mean = np.asarray(model.get_layer("sub_mean").mean, np.float32)
            out_mean = np.asarray(model.get_layer("add_mean").mean, np.float32)
            self.lfe = self._conv(model.get_layer("lfe"))
            self.groups = []
            for g in range(int(cfg["num_groups"])):
                rdg = model.get_layer(f"rdg_{g}")
                blocks = [(self._conv(b.conv), b.activation, b.negative_slope, b.growth) for b in rdg.blocks]
                self.groups.append((blocks, self._conv(rdg.compress), rdg.compression_activation, rdg.negative_slope))
            self.body_end = self._conv(model.get_layer("body_end"))
            self.global_skip = bool(cfg["global_skip"])
            if len(up.convs) != 1:
                raise ExportError("int8 taps: multi-stage upsampler")
            kernel, bias = self._conv(up.convs[0])
        except (ValueError, KeyError, AttributeError, TypeError) as exc:
            raise ExportError(f"int8 taps: not a DRN model ({exc})") from None
        self.scale = int(up.scale)
        channels = len(out_mean)
        if kernel.shape[-1] != channels * self.scale**2:
            raise ExportError("int8 taps: unexpected upsampler shape")
        # depth_to_space (DCR) puts channel (i*s + j)*C + c at colour c: add mean[c] there
        self.up = (kernel, bias + np.tile(out_mean, self.scale**2))
        self.shuffle = L.PixelShuffle(self.scale, method="transposed_conv" if gpu_friendly else "auto")
        self.apply_activation = L.apply_activation

    @staticmethod
    def _conv(layer):
        return np.asarray(layer.kernel, np.float32), np.asarray(layer.bias, np.float32)

    @property
    def input_shift(self) -> float:
        """The grey level subtracted from the input (the largest channel mean, rounded to a level)."""
        return round(255.0 * float(self.mean.max())) / 255.0

    @property
    def lfe_shift(self) -> np.ndarray:
        """LFE bias change for subtracting ``input_shift`` instead of the per-channel mean."""
        kernel = self.lfe[0]
        return (kernel.sum(axis=(0, 1)).T @ (self.input_shift - self.mean)).astype(np.float32)

    def input_range(self) -> tuple[float, float]:
        """Range of ``image - input_shift``: exactly 256 grey levels, so int8 holds it without rounding."""
        return -self.input_shift, 1.0 - self.input_shift

    def __call__(self, x, hook=lambda name, t: t, clip: bool = True):
        """``x``: float [0, 1] NHWC. ``clip=False`` leaves out the final clip (the int8 graph's output
        fake quant clamps to [0, 1] itself, so the clip's MINIMUM and RELU would be two passes for nothing)."""
        import tensorflow as tf  # (not _tf(): this runs inside tf.function tracing)

        def conv(t, kb):
            return tf.nn.bias_add(tf.nn.conv2d(t, kb[0], 1, "SAME"), kb[1])

        # The input tap: x - c with c = round(255 * max(mean)) / 255 is exact in int8 (pixels stay on
        # the 1/255 grid, 256 levels from -c to 1 - c); the per-channel rest of the mean shift goes into
        # the LFE bias, and the zero padding of x - mean becomes padding of x - c with mean - c per
        # channel (one PADV2 each; in int8 rounded to a grey level, on the padded border only).
        # Subtracting c rather than folding the whole mean into the LFE keeps the input centred, which
        # measured better (drn_s_x2 Set5 loss 0.086 vs 0.093 dB: the weights' int8 rounding error
        # times a non-zero input mean is a bias).
        c = self.input_shift
        x = hook("input", x - c)
        x = tf.concat(
            [tf.pad(ch, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=float(m - c))
             for ch, m in zip(tf.split(x, len(self.mean), axis=-1), self.mean)],
            axis=-1,
        )
        kernel, bias = self.lfe
        y0 = hook("lfe", tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "VALID"), bias + self.lfe_shift))
        y = y0
        for g, (blocks, compress, comp_act, slope) in enumerate(self.groups):
            z = y
            for b, (kb, act, neg, growth) in enumerate(blocks):
                a = self.apply_activation(hook(f"g{g}b{b}.conv", conv(z, kb)), act, neg)
                a = hook(f"g{g}b{b}.act", a)
                z = hook(f"g{g}b{b}.add", a + tf.pad(z, [[0, 0], [0, 0], [0, 0], [0, growth]]))
            e = hook(f"g{g}.compress", conv(z, compress))
            e = hook(f"g{g}.act", self.apply_activation(e, comp_act, slope))
            y = hook(f"g{g}.out", e + y)
        y = hook("body_end", conv(y, self.body_end))
        if self.global_skip:
            y = hook("skip", y + y0)
        # the output tap (range [0, 1]) quantizes the image straight to grey levels
        u = hook("output", conv(y, self.up))
        return self.shuffle(tf.clip_by_value(u, 0.0, 1.0) if clip else u)


def _quant_error(values: np.ndarray, lo: float, hi: float) -> float:
    """Mean squared error of quantizing ``values`` to 256 levels on ``[lo, hi]`` (int8 with a zero point)."""
    step = (hi - lo) / 255.0
    zero = np.round(-128.0 - lo / step)
    q = (np.clip(np.round(values / step) + zero, -128, 127) - zero) * step
    return float(np.mean((q - values) ** 2))


def mse_range(values: np.ndarray, lo: float, hi: float, steps: int = 41) -> tuple[float, float]:
    """The ``[lo', hi']`` inside ``[lo, hi]`` (0 kept inside) with the least 8-bit quantization MSE on ``values``.

    Coordinate search over ``hi' = a*hi`` then ``lo' = a*lo`` then ``hi'``
    again, ``a`` in ``[0.2, 1]``: clipping rare large values buys a finer
    step for all the others.
    """
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo <= 0:
        return lo, hi
    grid = np.linspace(0.2, 1.0, steps)
    best = (_quant_error(values, lo, hi), lo, hi)
    for which in ("hi", "lo", "hi"):
        base = hi if which == "hi" else lo
        if base == 0:
            continue
        for a in grid:
            cand = (best[1], base * a) if which == "hi" else (base * a, best[2])
            err = _quant_error(values, *cand)
            if err < best[0]:
                best = (err, *cand)
    return best[1], best[2]


def _tap_ranges(graph: _QuantGraph, samples, keep: int = 200_000, seed: int = 0) -> dict:
    """Range of every tap from the calibration crops (see :class:`_QuantGraph`)."""
    tf = _tf()
    rng = np.random.default_rng(seed)
    names: list[str] = []

    def record(name, t):
        names.append(name)
        return t

    graph(tf.zeros([1, 4, 4, 3]), record)

    @tf.function(reduce_retracing=True)
    def taps(x):
        out = {}

        def hook(name, t):
            out[name] = t
            return t

        graph(x, hook)
        return out

    per = max(1, keep // len(samples))
    values = {n: [] for n in names}
    lows = {n: np.inf for n in names}
    highs = {n: -np.inf for n in names}
    for sample in samples:
        with quiet_stderr():  # grappler's "remapper failed" chatter about the returned intermediates
            outputs = taps(tf.constant(np.asarray(sample, np.float32)[None]))
        for name, t in outputs.items():
            a = t.numpy().ravel()
            lows[name], highs[name] = min(lows[name], float(a.min())), max(highs[name], float(a.max()))
            values[name].append(a if a.size <= per else rng.choice(a, per, replace=False))
    ranges = {}
    for name in names:
        if name == "input":
            ranges[name] = graph.input_range()
        elif name == "output":  # 8-bit pixels: [0, 1], scale 1/255
            ranges[name] = (0.0, 1.0)
        elif name == "lfe":  # carried to the output by the global skip: clipping it costs more than it saves
            ranges[name] = (min(lows[name], 0.0), max(highs[name], 0.0))
        else:
            ranges[name] = mse_range(np.concatenate(values[name]), lows[name], highs[name])
    return ranges


def _int8_saved_model(model, path, samples, input_size=None, gpu_friendly: bool = False) -> bool:
    """Write the int8 export graph (:class:`_QuantGraph` with fake quants) as a SavedModel.

    Returns False (nothing written) for a model the graph does not know.
    """
    tf = _tf()
    try:
        graph = _QuantGraph(model, gpu_friendly=gpu_friendly)
    except ExportError:
        return False
    ranges = _tap_ranges(graph, samples)

    def fake_quant(name, t):
        lo, hi = ranges[name]
        return tf.quantization.fake_quant_with_min_max_vars(t, lo, hi, num_bits=8)

    channels = int(model.inputs[0].shape[-1])
    shape = [None, None, None, channels] if input_size is None else [1, input_size[0], input_size[1], channels]
    module = tf.Module()
    module.serve = tf.function(
        lambda lr_image: {TFLITE_OUTPUT: graph(lr_image, fake_quant, clip=False)},
        input_signature=[tf.TensorSpec(shape, tf.float32, name=TFLITE_INPUT)],
    )
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return True


def calibration_images(source=None, scale: int = 2, count: int = CALIBRATION_COUNT, patch=CALIBRATION_PATCH,
                       seed: int = 0) -> list[np.ndarray]:
    """Float32 ``(h, w, 3)`` crops in [0, 1] for int8 calibration.

    ``source``: an image folder (searched recursively) or a list of files;
    default ``<data>/train`` (:func:`default_data_dir`). Images are spread
    evenly over the sorted list, modcropped and downscaled by ``scale`` with
    the protocol's MATLAB bicubic (so they look like the model's
    low-resolution inputs), then cropped at random to ``patch`` (an int or
    ``(h, w)``; smaller images are used whole, or edge-padded when a fixed
    size is needed). The first crop is contrast-stretched to the full
    ``[0, 1]`` range so the calibrated input range is exactly that of 8-bit
    pixels.
    """
    from drn_tf.data import ImageReadError, list_images, read_image
    from drn_tf.imresize import bicubic_degrade, modcrop

    if source is None:
        source = default_data_dir() / "train"
        if not Path(source).is_dir():
            raise ExportError(
                f"int8 needs calibration images: {source} does not exist; set DRN_DATA to a data folder "
                "with a train/ folder of typical photos (drn export: or pass --calibration DIR)"
            )
    try:
        files = list_images(source)
    except (FileNotFoundError, ImageReadError) as exc:
        raise ExportError(f"int8 calibration images: {exc}") from None
    if not files:
        raise ExportError(f"no images found in {source} for int8 calibration")
    if count < 1:
        raise ExportError("calibration count must be >= 1")
    fixed = isinstance(patch, tuple)
    ph, pw = patch if fixed else (int(patch), int(patch))
    rng = np.random.default_rng(seed)
    picks = np.linspace(0, len(files) - 1, num=min(count, len(files))).round().astype(int)
    picks = list(picks) + list(rng.integers(0, len(files), size=max(0, count - len(picks))))
    samples: list[np.ndarray] = []
    for index in picks:
        try:
            hr = read_image(files[index], mode="rgb")
        except ImageReadError:
            continue
        hr = modcrop(hr, scale)
        lr = bicubic_degrade(hr, scale) if min(hr.shape[:2]) >= 4 * scale else hr
        h, w = lr.shape[:2]
        y = int(rng.integers(0, h - ph + 1)) if h > ph else 0
        x = int(rng.integers(0, w - pw + 1)) if w > pw else 0
        crop = lr[y : y + ph, x : x + pw]
        if fixed and crop.shape[:2] != (ph, pw):
            crop = np.pad(crop, ((0, ph - crop.shape[0]), (0, pw - crop.shape[1]), (0, 0)), mode="edge")
        samples.append(crop.astype(np.float32) / 255.0)
    if not samples:
        raise ExportError(f"none of the images in {source} could be read for int8 calibration")
    first = samples[0]
    lo, hi = float(first.min()), float(first.max())
    samples[0] = (first - lo) / (hi - lo) if hi > lo else np.linspace(0, 1, first.size, dtype=np.float32).reshape(
        first.shape
    )
    return samples


def _opcode_names(tflite_bytes: bytes) -> list[str]:
    """Names of the operators a TFLite flatbuffer uses (``CUSTOM:<name>`` for custom ones)."""
    from tensorflow.lite.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAsModel(tflite_bytes, 0)
    ops = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            name = f"CUSTOM:{(code.CustomCode() or b'').decode()}"
        ops.append(name)
    return ops


def tflite_ops(tflite_bytes: bytes) -> dict[str, int]:
    """Operator name -> number of uses in the main subgraph."""
    from tensorflow.lite.python import schema_py_generated as schema

    opcodes = _opcode_names(tflite_bytes)
    model = schema.Model.GetRootAsModel(tflite_bytes, 0)
    counts: dict[str, int] = {}
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for i in range(graph.OperatorsLength()):
            name = opcodes[graph.Operators(i).OpcodeIndex()]
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def check_builtin_only(tflite_bytes: bytes) -> None:
    """Raise :class:`ExportError` if any op is a Flex (TF) or other custom op."""
    bad = sorted({name for name in _opcode_names(tflite_bytes) if name.startswith("CUSTOM") or "Flex" in name})
    if bad:
        raise ExportError(
            f"the TFLite model needs ops outside the TFLite builtins ({', '.join(bad)}): it would need the "
            "TensorFlow (Flex) delegate, which Android apps do not ship by default"
        )


# Ops TensorFlow's GPU checker accepts but the LiteRT GPU delegate's documented op list lacks
# (older delegates reject them: "DEPTH_TO_SPACE: Operation is not supported"; tensorflow#39746, #51421).
GPU_UNLISTED_OPS = {"DEPTH_TO_SPACE": "use --gpu-friendly (pixel shuffle as TRANSPOSE_CONV)"}


def gpu_compatibility(tflite_bytes: bytes) -> tuple[bool, str]:
    """``(compatible, details)``: TensorFlow's GPU-delegate checker (``Analyzer``) and the documented op list.

    That checker (``tflite/tools/versioning/gpu_compatibility.cc``) accepts
    ``DEPTH_TO_SPACE``, which the delegate's documented op list lacks (and
    delegates in the field reject), so a model using an op of
    :data:`GPU_UNLISTED_OPS` is reported not compatible whatever it says.
    It cannot see run-time limits either: treat "compatible" as necessary,
    not sufficient.
    """
    tf = _tf()
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        tf.lite.experimental.Analyzer.analyze(model_content=tflite_bytes, gpu_compatibility=True)
    text = buffer.getvalue()
    ok = "looks compatible with GPU delegate" in text
    details = [line.strip() for line in text.splitlines() if "GPU COMPATIBILITY" in line or "Not supported" in line]
    for op in sorted(set(_opcode_names(tflite_bytes)) & set(GPU_UNLISTED_OPS)):
        ok = False
        details.append(f"{op} is not on the LiteRT GPU delegate's documented op list ({GPU_UNLISTED_OPS[op]})")
    return ok, "; ".join(details)


def _set_metadata(model_obj, payload: dict) -> None:
    from tensorflow.lite.python import schema_py_generated as schema

    data = json.dumps(payload, sort_keys=True).encode()
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(data, dtype=np.uint8)
    model_obj.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model_obj.buffers) - 1
    model_obj.metadata = [m for m in (model_obj.metadata or []) if m.name not in (METADATA_NAME, METADATA_NAME.encode())]
    model_obj.metadata.append(entry)


def _force_pixel_io(model_obj) -> None:
    """Give the uint8 input and output tensors scale 1/255 and zero point 0.

    The converter makes the uint8 I/O tensors inherit the calibrated ranges
    (the output's, for instance, is whatever the model reached on the
    calibration crops). The edge ops are ``QUANTIZE`` (uint8 <-> int8), which
    requantize between any two scales, so setting the uint8 side to 1/255
    makes the I/O plain 8-bit pixels without touching the int8 graph:
    output values outside [0, 1] saturate at 0 and 255, as clipping would.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    graph = model_obj.subgraphs[0]
    for index in list(graph.inputs) + list(graph.outputs):
        tensor = graph.tensors[index]
        if tensor.type != schema.TensorType.UINT8:
            continue
        q = tensor.quantization or schema.QuantizationParametersT()
        q.scale = [1.0 / 255.0]
        q.zeroPoint = [0]
        q.min, q.max = None, None
        tensor.quantization = q
    producers = {}
    for op in graph.operators:
        for out in op.outputs:
            producers[out] = op
    opcodes = model_obj.operatorCodes
    for index in graph.outputs:
        op = producers.get(index)
        if op is None:
            continue
        code = opcodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) != schema.BuiltinOperator.QUANTIZE:
            raise ExportError("int8 model: the output is not produced by a QUANTIZE op; cannot fix its scale")
    for index in graph.inputs:
        consumers = [op for op in graph.operators if index in list(op.inputs)]
        for op in consumers:
            code = opcodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) != schema.BuiltinOperator.QUANTIZE:
                raise ExportError("int8 model: the input is not consumed by a QUANTIZE op; cannot fix its scale")


def _int8_elu(model_obj) -> int:
    """Run ELU in int8: every ``DEQUANTIZE -> ELU -> QUANTIZE`` chain becomes one int8 ``ELU``.

    The converter leaves ELU in float inside a full-integer model (it has no
    int8 quantization spec for it), though the builtin ELU kernel takes int8
    (a 256-entry lookup table from the input's to the output's quantization,
    built at prepare time). The table holds the float ELU of every input
    level, quantized as the QUANTIZE op would: the outputs are identical
    (tested), with two ops and a float tensor fewer per ELU (measured 15%
    faster for drn_x2 int8, see README). Returns the number of ELUs changed.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    graph = model_obj.subgraphs[0]
    codes = model_obj.operatorCodes
    op_kind = lambda op: max(codes[op.opcodeIndex].builtinCode, codes[op.opcodeIndex].deprecatedBuiltinCode)  # noqa: E731
    producer = {int(t): op for op in graph.operators for t in op.outputs}
    consumers: dict = {}
    for op in graph.operators:
        for t in op.inputs:
            consumers.setdefault(int(t), []).append(op)
    graph_io = {int(t) for t in list(graph.inputs) + list(graph.outputs)}
    drop = []
    for op in graph.operators:
        if op_kind(op) != schema.BuiltinOperator.ELU:
            continue
        deq = producer.get(int(op.inputs[0]))
        after = consumers.get(int(op.outputs[0]), [])
        if (deq is None or op_kind(deq) != schema.BuiltinOperator.DEQUANTIZE or len(after) != 1
                or op_kind(after[0]) != schema.BuiltinOperator.QUANTIZE
                or graph.tensors[int(deq.inputs[0])].type != schema.TensorType.INT8
                or graph.tensors[int(after[0].outputs[0])].type != schema.TensorType.INT8
                or len(consumers.get(int(deq.outputs[0]), [])) != 1
                or {int(deq.outputs[0]), int(op.outputs[0])} & graph_io):
            continue
        op.inputs, op.outputs = deq.inputs, after[0].outputs
        drop += [deq, after[0]]
    graph.operators = [op for op in graph.operators if not any(op is d for d in drop)]
    return len(drop) // 2


def _postprocess(tflite_bytes: bytes, metadata: dict, pixel_io: bool) -> bytes:
    from tensorflow.lite.tools import flatbuffer_utils

    model_obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite_bytes))
    if pixel_io:
        _force_pixel_io(model_obj)
        metadata = dict(metadata, int8_elu=_int8_elu(model_obj))
    _set_metadata(model_obj, metadata)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model_obj))


def tflite_metadata(tflite) -> dict:
    """The ``drn_tf`` metadata of a TFLite file or bytes (empty dict if none)."""
    from tensorflow.lite.python import schema_py_generated as schema

    data = Path(tflite).read_bytes() if isinstance(tflite, (str, os.PathLike)) else bytes(tflite)
    model = schema.Model.GetRootAsModel(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if (entry.Name() or b"").decode() == METADATA_NAME:
            buffer = model.Buffers(entry.Buffer())
            return json.loads(bytes(buffer.DataAsNumpy()).decode())
    return {}


def convert_tflite(
    model,
    quantize: str = "float32",
    *,
    input_size=None,
    gpu_friendly: bool = False,
    calibration=None,
    calibration_count: int = CALIBRATION_COUNT,
    workdir=None,
) -> bytes:
    """Convert ``model`` to a TFLite flatbuffer (see the module docstring for the variants).

    ``input_size``: ``(H, W)`` or ``"HxW"`` for a fixed-shape ``[1, H, W, 3]``
    model (what Android apps usually ship; larger images are tiled, see
    :class:`TFLiteUpscaler`); default: dynamic height, width and batch.
    ``calibration`` (int8 only): a folder or list of image files, or a list
    of float32 ``(h, w, 3)`` arrays in [0, 1]; default a few crops of
    ``<data>/train``. ``gpu_friendly``: pixel shuffle as ``TRANSPOSE_CONV``
    (:func:`gpu_friendly_model`).
    """
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}; got {quantize!r}")
    input_size = parse_size(input_size)
    scale = model_scale(model)
    radius = model_radius(model)
    source = gpu_friendly_model(model) if gpu_friendly else model
    samples = None
    if quantize == "int8":
        if isinstance(calibration, (list, tuple)) and calibration and isinstance(calibration[0], np.ndarray):
            samples = [np.asarray(s, np.float32) for s in calibration]
            if input_size is not None and any(s.shape[:2] != input_size for s in samples):
                raise ExportError(f"calibration arrays must be {input_size[0]}x{input_size[1]} for this fixed-size model")
        else:
            samples = calibration_images(
                calibration, scale=scale, count=calibration_count, patch=input_size or CALIBRATION_PATCH
            )
    recipe = None
    with tempfile.TemporaryDirectory(prefix="drn-tflite-", dir=workdir) as tmp:
        saved = Path(tmp) / "saved_model"
        if quantize == "int8" and _int8_saved_model(model, saved, samples, input_size, gpu_friendly):
            recipe = INT8_RECIPE
        else:
            _float_saved_model(source, saved, input_size)
        flat = convert_saved_model(saved, quantize, samples)
    metadata = {
        "format": "drn_tf.tflite/1",
        "scale": scale,
        "receptive_radius": radius,
        "quantize": quantize,
        "gpu_friendly": bool(gpu_friendly),
        "input_size": list(input_size) if input_size else None,
        "input": TFLITE_INPUT,
        "output": TFLITE_OUTPUT,
        "io": "uint8 pixels (scale 1/255, zero point 0)" if quantize == "int8" else "float32 RGB in [0, 1]",
    }
    if quantize == "int8":
        metadata["int8_recipe"] = recipe or "min-max calibration of the Keras model"
    return _postprocess(flat, metadata, pixel_io=quantize == "int8")


def convert_saved_model(saved_dir, quantize: str = "float32", samples=None) -> bytes:
    """``TFLiteConverter.from_saved_model`` on the ``serving_default`` signature, builtin ops only.

    ``samples`` (int8): float32 arrays fed to the signature's single input.
    Raises :class:`ExportError` when an op would need the Flex delegate
    (conversion error, or a custom/Flex op in the result).
    """
    tf = _tf()
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_dir), signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantize == "int8":
        if not samples:
            raise ExportError("int8 conversion needs calibration samples")
        loaded = tf.saved_model.load(str(saved_dir))
        (input_name,) = loaded.signatures["serving_default"].structured_input_signature[1].keys()
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8

        def representative():
            for sample in samples:
                yield {input_name: np.asarray(sample, np.float32)[None]}

        converter.representative_dataset = representative
    elif quantize != "float32":
        raise ExportError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}; got {quantize!r}")
    try:
        with quiet_stderr():
            flat = converter.convert()
    except Exception as exc:  # ConverterError, and anything the MLIR passes raise
        text = str(exc)
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        ops = sorted(set(re.findall(r"'(tf\.[A-Za-z0-9_]+)' op is neither", text)))
        for match in re.finditer(r"(?:Flex|Custom|TF Select) ops: ([^\n]+)", text):
            ops += [f"tf.{name.strip()}" for name in match.group(1).split(",") if f"tf.{name.strip()}" not in ops]
        if ops or any(k in text for k in ("ERROR_NEEDS_FLEX_OPS", "ERROR_NEEDS_CUSTOM_OPS", "Select TF", "Flex")):
            raise ExportError(
                f"TFLite conversion needs TensorFlow ops that are not TFLite builtins ({', '.join(ops) or '?'}): "
                "they would need the TensorFlow (Flex) delegate, which this export refuses (builtin ops only, so the "
                "model runs in a plain LiteRT interpreter)"
            ) from None
        raise ExportError(f"TFLite conversion failed: {(lines or [type(exc).__name__])[0]}") from None
    check_builtin_only(flat)
    return flat


# ---------------------------------------------------------------- running TFLite


class TFLiteUpscaler:
    """Runs a DRN TFLite model with the LiteRT interpreter on uint8 images.

    Dynamic-size models: the input is resized to the image
    (``resize_tensor_input`` + ``allocate_tensors``). Fixed-size models
    (``--input-size``): the image is cut into tiles of the model's size that
    overlap by the receptive radius, so every kept output pixel sees all the
    input it depends on and the result equals a whole-image run; images
    smaller than the tile are edge-padded (results near the padded edges then
    differ slightly). This is the procedure an Android app follows.
    """

    def __init__(self, model, num_threads: int | None = None, overlap: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        data = Path(model).read_bytes() if isinstance(model, (str, os.PathLike)) else bytes(model)
        self.metadata = tflite_metadata(data)
        with quiet_stderr():
            self.interpreter = Interpreter(model_content=data, num_threads=num_threads or os.cpu_count())
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        signature = [int(v) for v in self.input["shape_signature"]]
        self.fixed = None if any(v < 0 for v in signature[1:3]) else (signature[1], signature[2])
        self.scale = int(self.metadata.get("scale") or 0)
        self.overlap = int(overlap if overlap is not None else self.metadata.get("receptive_radius", 16))
        self.uint8_io = self.input["dtype"] == np.uint8
        self.interpreter.allocate_tensors()
        self._shape = None

    def run(self, batch: np.ndarray) -> np.ndarray:
        """One invocation on ``(1, h, w, 3)`` in the model's own input dtype; raw output."""
        if self._shape != batch.shape:
            if self.fixed is None:
                self.interpreter.resize_tensor_input(self.input["index"], list(batch.shape))
                self.interpreter.allocate_tensors()
            self._shape = batch.shape
        self.interpreter.set_tensor(self.input["index"], batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])

    def _to_input(self, lr: np.ndarray) -> np.ndarray:
        if self.uint8_io:
            return lr[None].astype(np.uint8)
        return lr[None].astype(np.float32) / 255.0

    def _to_float(self, y: np.ndarray) -> np.ndarray:
        if y.dtype == np.uint8:
            scale, zero = self.output["quantization"]
            return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
        return y.astype(np.float32)

    def predict(self, lr: np.ndarray) -> np.ndarray:
        """uint8 ``(h, w, 3)`` -> float32 ``(h*s, w*s, 3)`` in [0, 1]."""
        lr = np.asarray(lr)
        if lr.ndim != 3:
            raise ValueError(f"expected an (h, w, c) image, got shape {lr.shape}")
        if self.fixed is None or lr.shape[:2] == self.fixed:
            return self._to_float(self.run(self._to_input(lr)))[0]
        return self._predict_tiled(lr)

    def _predict_tiled(self, lr: np.ndarray) -> np.ndarray:
        th, tw = self.fixed
        h, w = lr.shape[:2]
        ph, pw = max(h, th), max(w, tw)
        if (ph, pw) != (h, w):
            lr = np.pad(lr, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
        s = self.scale or None
        out = None
        r = self.overlap
        try:  # the one tiling plan of the project (drn_tf.inference)
            rows, cols = tile_starts(ph, th, r), tile_starts(pw, tw, r)
        except ValueError as exc:
            raise ExportError(str(exc)) from None
        for y0, a0, a1 in rows:
            for x0, b0, b1 in cols:
                sr = self._to_float(self.run(self._to_input(lr[y0 : y0 + th, x0 : x0 + tw])))[0]
                if s is None:
                    s = sr.shape[0] // th
                if out is None:
                    out = np.zeros((ph * s, pw * s, sr.shape[-1]), np.float32)
                out[a0 * s : a1 * s, b0 * s : b1 * s] = sr[(a0 - y0) * s : (a1 - y0) * s, (b0 - x0) * s : (b1 - x0) * s]
        return out[: h * s, : w * s]

    def predict_uint8(self, lr: np.ndarray) -> np.ndarray:
        from drn_tf.metrics import to_uint8

        return to_uint8(self.predict(lr))


# ---------------------------------------------------------------- report


@dataclass
class VariantResult:
    name: str
    description: str
    size_bytes: int | None = None
    psnr: float | None = None
    ssim: float | None = None
    max_diff: float | None = None
    mean_diff: float | None = None
    latency_ms: float | None = None
    ops: dict = field(default_factory=dict)
    gpu: tuple | None = None
    extra_psnr: dict = field(default_factory=dict)  # more benchmark sets (Set14): name -> PSNR
    note: str = ""


REPORT_VARIANTS = (
    "keras",
    "saved_model",
    "tflite-float32",
    "tflite-float16",
    "tflite-dynamic",
    "tflite-int8",
    "tflite-float32-gpu",
)


def interleaved_latency(fns: dict, runs: int = 10, warmup: int = 2, all_runs: bool = False) -> dict:
    """Median seconds per call of each function, timed in round-robin order.

    Interleaving spreads load changes on a shared machine over all the
    variants instead of penalising whichever ran during a busy spell.
    ``all_runs``: the list of every timed run's seconds instead of the median.
    """
    for fn in fns.values():
        for _ in range(max(0, warmup)):
            fn()
    times = {name: [] for name in fns}
    for _ in range(max(1, runs)):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    if all_runs:
        return times
    return {name: statistics.median(values) for name, values in times.items()}


def _set5_pairs(data_dir: Path, scale: int, limit: int | None = None, set_name: str = "Set5"):
    """(folder, [(name, LR, HR)]) of ``<data_dir>/benchmark/<set_name>`` (or of ``data_dir`` itself, a folder
    of images) by the evaluation protocol (``evaluation.load_pair``: a grey file stays one channel, as
    ``drn evaluate`` scores it)."""
    from drn_tf.data import list_images
    from drn_tf.evaluation import load_pair

    named = data_dir / "benchmark" / set_name
    folder = named if named.is_dir() else data_dir
    files = list_images(folder)
    if not files:
        raise ExportError(f"no benchmark images in {folder} (pass --data with benchmark/{set_name})")
    return folder, [(path.name, *load_pair(path, scale)) for path in files[:limit]]


def _as_rgb(lr: np.ndarray) -> np.ndarray:
    """A protocol LR as the RGB the runtimes take (a grey one replicated)."""
    return np.repeat(lr, 3, axis=-1) if lr.shape[-1] == 1 else lr


def _protocol_uint8(sr: np.ndarray, grey: bool) -> np.ndarray:
    """A runtime's RGB output (float in [0, 255], or uint8) as the protocol scores it: for a grey LR the three
    channels averaged back to one, as ``drn evaluate`` does; rounded to uint8."""
    from drn_tf.metrics import to_uint8

    if grey:
        sr = sr.astype(np.float64).mean(axis=-1, keepdims=True)
    return sr if sr.dtype == np.uint8 else to_uint8(sr / 255.0)


def _protocol_sr(upscale, lr: np.ndarray) -> np.ndarray:
    """uint8 SR of ``upscale`` (an RGB runtime) for a protocol LR (see :func:`_protocol_uint8`)."""
    return _protocol_uint8(upscale(_as_rgb(lr)), lr.shape[-1] == 1)


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def build_report(
    model,
    description: str,
    data_dir=None,
    *,
    variants=REPORT_VARIANTS,
    latency_size=(256, 256),
    runs: int = 10,
    warmup: int = 2,
    calibration=None,
    calibration_count: int = CALIBRATION_COUNT,
    num_threads: int | None = None,
    workdir=None,
    keep_dir=None,
    limit_images: int | None = None,
    extra_sets=("Set14",),
    progress=None,
) -> tuple[str, list[VariantResult]]:
    """Export every variant, measure it, and return ``(markdown, results)``.

    Per variant: file size, Set5 Y-PSNR/SSIM by the project's protocol
    (LR = MATLAB bicubic of the modcropped HR; SR clipped and rounded),
    max/mean absolute difference from the Keras model's clipped output in
    8-bit levels over the Set5 SR images, and the median latency of one
    ``latency_size`` input after warm-up on this machine. ``extra_sets``:
    benchmark sets (``<data>/benchmark/<name>``, skipped if absent) whose
    PSNR is reported too.
    """
    import keras

    from drn_tf.metrics import psnr_y, ssim_y, to_uint8
    from drn_tf.train import predict_image

    tf = _tf()
    say = progress or (lambda msg: None)
    unknown = [v for v in variants if v not in REPORT_VARIANTS]
    if unknown:
        raise ExportError(f"unknown report variant(s) {', '.join(unknown)}; choose from {', '.join(REPORT_VARIANTS)}")
    if "keras" not in variants:
        variants = ("keras", *variants)
    scale = model_scale(model)
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    folder, pairs = _set5_pairs(data_dir, scale, limit_images)
    extra = {}
    for set_name in extra_sets or ():
        if (data_dir / "benchmark" / set_name).is_dir() and folder == data_dir / "benchmark" / "Set5":
            extra[set_name] = _set5_pairs(data_dir, scale, limit_images, set_name)[1]
    threads = num_threads or os.cpu_count()
    lh, lw = parse_size(latency_size)
    rng = np.random.default_rng(0)
    lat_uint8 = rng.integers(0, 256, size=(1, lh, lw, 3), dtype=np.uint8)
    lat_float = lat_uint8.astype(np.float32) / 255.0

    reference = {}
    for name, lr, _ in pairs:
        reference[name] = np.clip(predict_image(model, _as_rgb(lr)), 0.0, 1.0) * 255.0

    results: list[VariantResult] = []
    timers = {}
    tmp_ctx = tempfile.TemporaryDirectory(prefix="drn-report-", dir=workdir)
    out_dir = Path(keep_dir) if keep_dir else Path(tmp_ctx.name)
    out_dir.mkdir(parents=True, exist_ok=True)

    def score(result: VariantResult, upscale):
        psnrs, ssims, maxd, sumd, count = [], [], 0.0, 0.0, 0
        for name, lr, hr in pairs:
            sr = upscale(_as_rgb(lr))  # float in [0, 255] (uint8 variants: their integers)
            sr8 = _protocol_uint8(sr, lr.shape[-1] == 1)
            psnrs.append(psnr_y(sr8, hr, scale))
            ssims.append(ssim_y(sr8, hr, scale))
            diff = np.abs(sr.astype(np.float64) - reference[name])
            maxd = max(maxd, float(diff.max()))
            sumd += float(diff.sum())
            count += diff.size
        result.psnr, result.ssim = float(np.mean(psnrs)), float(np.mean(ssims))
        for set_name, set_pairs in extra.items():
            values = []
            for _, lr, hr in set_pairs:
                values.append(psnr_y(_protocol_sr(upscale, lr), hr, scale))
            result.extra_psnr[set_name] = float(np.mean(values))
        result.max_diff, result.mean_diff = maxd, sumd / count

    try:
        for variant in variants:
            say(f"{variant} ...")
            if variant == "keras":
                r = VariantResult("keras", "Keras model (float32), the reference")
                path = out_dir / "model.keras"
                model.save(path)
                r.size_bytes = path.stat().st_size
                score(r, lambda lr: np.clip(predict_image(model, lr), 0.0, 1.0) * 255.0)
                timers[variant] = lambda: model.predict_on_batch(lat_float)
                r.note = "output clipped to [0, 1] by the harness"
            elif variant == "saved_model":
                r = VariantResult("saved_model", "SavedModel for TF Serving, `serving_default` (uint8 in/out)")
                version_dir = export_saved_model(model, out_dir / "saved_model", version=1, overwrite=True)
                r.size_bytes = _dir_size(version_dir)
                loaded = tf.saved_model.load(str(version_dir))
                serve = loaded.signatures["serving_default"]

                def run_sm(lr, serve=serve):
                    return serve(**{SERVING_INPUT: tf.constant(lr[None])})[SERVING_OUTPUT].numpy()[0]

                score(r, run_sm)
                lat = tf.constant(lat_uint8)
                timers[variant] = lambda serve=serve, lat=lat: serve(**{SERVING_INPUT: lat})
            else:
                quantize = variant.split("-")[1]
                gpu = variant.endswith("-gpu")
                r = VariantResult(
                    variant,
                    f"TFLite {quantize}" + (", pixel shuffle as TRANSPOSE_CONV (--gpu-friendly)" if gpu else ""),
                )
                flat = convert_tflite(
                    model,
                    quantize,
                    gpu_friendly=gpu,
                    calibration=calibration,
                    calibration_count=calibration_count,
                    workdir=workdir,
                )
                path = write_atomic(out_dir / f"drn_{variant}.tflite", flat)
                r.size_bytes = path.stat().st_size
                r.ops = tflite_ops(flat)
                r.gpu = gpu_compatibility(flat)
                runner = TFLiteUpscaler(flat, num_threads=threads)
                if runner.uint8_io:
                    score(r, lambda lr, runner=runner: runner.run(lr[None].astype(np.uint8))[0])
                    lat = lat_uint8
                else:
                    score(r, lambda lr, runner=runner: runner.predict(lr) * 255.0)
                    lat = lat_float
                timers[variant] = lambda runner=runner, lat=lat: runner.run(lat)
            results.append(r)
            say(f"{variant}: {r.psnr:.3f} dB" + "".join(f", {k} {v:.3f} dB" for k, v in r.extra_psnr.items()))
        say(f"latency: {len(timers)} variants x ({warmup} warm-up + {runs} timed runs), interleaved ...")
        latencies = interleaved_latency(timers, runs, warmup)
        for r in results:
            r.latency_ms = 1e3 * latencies[r.name]
    finally:
        tmp_ctx.cleanup()
    markdown = _report_markdown(
        results, description, folder, scale, (lh, lw), runs, warmup, threads, len(pairs), keras.__version__, tf
    )
    return markdown, results


def _machine() -> str:
    from drn_tf.utils import cpu_model

    cpu = cpu_model()
    try:
        load = ", load average {:.1f} when the report finished".format(os.getloadavg()[0])
    except OSError:
        load = ""
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}{load}"


def _report_markdown(results, description, folder, scale, lat_size, runs, warmup, threads, n_images, keras_version, tf):
    try:
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - version lookup only
        litert = "?"
    lines = [
        "# Export report",
        "",
        f"Model: {description}, x{scale}. Generated by `drn export report` on "
        f"{time.strftime('%Y-%m-%d %H:%M')}.",
        "",
    ]
    if "untrained" in description:
        lines += [
            "**The model is untrained**: its PSNR/SSIM say nothing about the method; only sizes, latencies and "
            "the differences between variants are meaningful. Rerun with the trained model "
            "(`drn export report --model assets/drn_x2.keras -o assets/export_report.md`).",
            "",
        ]
    lines += [
        f"Machine: {_machine()}; TensorFlow {tf.__version__}, Keras {keras_version}, LiteRT (ai-edge-litert) "
        f"{litert}; TFLite run with {threads} threads (XNNPACK, the interpreter's default).",
        "",
        f"Quality: {folder} ({n_images} images), the project's protocol (HR modcropped, LR by MATLAB bicubic, "
        "SR clipped and rounded, Y channel, scale pixels shaved). Difference: absolute difference from the "
        "Keras model's output clipped to [0, 1], in 8-bit levels (1 = 1/255), over all SR pixels of the set; "
        "uint8 variants are compared as the integers they return. "
        + "".join(f"{k} PSNR: the same protocol on benchmark/{k}. " for k in results[0].extra_psnr)
        + "Latency: median of "
        f"{runs} runs after {warmup} warm-up runs on one {lat_size[0]}x{lat_size[1]} input (x{scale} output), "
        "invocation only (Keras: `predict_on_batch`; SavedModel: the `serving_default` signature; TFLite: "
        "`invoke`), the variants timed in turn, round after round, so load changes hit them alike.",
        "",
        "| variant | what | size | PSNR (dB) | SSIM | max diff | mean diff | latency (ms) |"
        + "".join(f" {k} PSNR (dB) |" for k in results[0].extra_psnr),
        "|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(results[0].extra_psnr),
    ]
    for r in results:
        size = "-" if r.size_bytes is None else f"{r.size_bytes / 1e6:.2f} MB"
        lines.append(
            f"| {r.name} | {r.description} | {size} | {r.psnr:.3f} | {r.ssim:.4f} | {r.max_diff:.2f} | "
            f"{r.mean_diff:.4f} | {r.latency_ms:.1f} |" + "".join(f" {v:.3f} |" for v in r.extra_psnr.values())
        )
    keras = results[0]
    sets = ", ".join([folder.name, *keras.extra_psnr])
    lines += ["", f"PSNR change from the Keras model ({sets}):", ""]
    for r in results[1:]:
        change = [f"{r.psnr - keras.psnr:+.3f}"] + [f"{v - keras.extra_psnr[k]:+.3f}" for k, v in r.extra_psnr.items()]
        lines.append(f"- {r.name}: {' / '.join(change)} dB")
    tflite = [r for r in results if r.ops]
    if tflite:
        lines += [
            "",
            "## TFLite operators",
            "",
            "All builtin (no Flex/custom op: the export refuses otherwise). GPU: TensorFlow's GPU-delegate "
            "compatibility checker (`tf.lite.experimental.Analyzer`, necessary but not sufficient).",
            "",
            "| variant | operators (count) | GPU delegate check |",
            "|---|---|---|",
        ]
        for r in tflite:
            ops = ", ".join(f"{k} ({v})" for k, v in r.ops.items())
            gpu = "compatible" if r.gpu and r.gpu[0] else f"not compatible: {r.gpu[1] if r.gpu else '?'}"
            lines.append(f"| {r.name} | {ops} | {gpu} |")
    lines.append("")
    return "\n".join(lines)
