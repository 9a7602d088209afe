"""The int8 TFLite recipe: calibration images and activation ranges.

The DRN forward pass is rewritten with TensorFlow ops (:class:`_QuantGraph`),
in a form that quantises well (exact int8 input, output mean folded into the
last convolution, clip before the pixel shuffle), with a hook on every
activation. Ranges come from :func:`calibration_images` (LR-like crops of the
training images), plus regular-structure crops generated in code
(:func:`drn_tf.core.patterns.structure_crops`, weight :data:`STRUCTURE_WEIGHT`),
run through that graph: full range for the LFE, MSE-optimal (:func:`mse_range`)
elsewhere, a pre-activation tensor's error measured after its activation;
``_int8_saved_model`` writes the graph with fake quantisation for
:func:`drn_tf.export.tflite.convert_tflite` to convert. ``INT8_RECIPE`` names
the recipe in the file's metadata and the runtime cache key.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drn_tf.core.utils import quiet_stderr
from drn_tf.export.common import (
    TFLITE_INPUT,
    TFLITE_OUTPUT,
    ExportError,
    _tf,
    default_data_dir,
)

# int8 calibration: number of LR crops and their size (dynamic-size models)
CALIBRATION_COUNT = 24
CALIBRATION_PATCH = 96
# regular-structure crops (:func:`drn_tf.core.patterns.structure_crops`) in the range search, and their weight
STRUCTURE_COUNT = 24
STRUCTURE_WEIGHT = 0.003
# pre-activation taps' ranges by the error after their activation
ACTIVATION_AWARE = True
# saturation maps: extra outputs of the int8 file the litert-int8 runtime runs (convert_tflite's
# ``saturation_maps``), read by :mod:`drn_tf.inference.saturation`: per mapped tap, the per-channel maximum
# over SATURATION_BLOCK x SATURATION_BLOCK LR pixels, where the top int8 level means "clipped here".
# Mapped: the convolutions' outputs (SATURATION_TAP_KINDS), not the LFE's (full range) or the image's (clamped
# to [0, 1] by design). Each map reads its whole tap from memory, which is not free next to int8
# convolutions: the convolutions' outputs (a third of the taps) flag the regular structures as well as
# every tap's maps did, at about 4.5 % of a photo's int8 time instead of 7 % (docs/export.md).
SATURATION_BLOCK = 8
SATURATION_PREFIX = "saturation_"
SATURATION_TAP_KINDS = (".conv", ".compress", "body_end")  # tap names ending so: a convolution's output
SATURATION_FORMAT = (f"saturation/2: per-channel {SATURATION_BLOCK}x{SATURATION_BLOCK} max of every convolution's "
                     "output but the LFE's and the image's")


def saturation_taps(names) -> list[str]:
    """The taps of ``names`` (:func:`tap_names`) that get a saturation map, in order."""
    return [n for n in names if n.endswith(SATURATION_TAP_KINDS)]


def saturation_output(index: int) -> str:
    """The signature name of the int8 file's ``index``-th saturation map (``saturation_NN``, in tap order)."""
    return f"{SATURATION_PREFIX}{index:02d}"


# ---------------------------------------------------------------- int8: activation ranges

# Identifies the int8 recipe below (metadata, and the key of the runtime's .tflite cache).
INT8_RECIPE = ("taps/4: exact input, folded output mean, [0,1] output, full-range LFE, MSE ranges elsewhere "
               f"(after the activation for pre-activation taps; {STRUCTURE_COUNT} structure crops weighted "
               f"{STRUCTURE_WEIGHT:g}), int8 ELU")


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
        from drn_tf.models import layers as L

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

    @staticmethod
    def conv(t, kb):
        """A 'SAME' convolution with bias; ``kb``: (kernel, bias)."""
        import tensorflow as tf  # (not _tf(): this runs inside tf.function tracing)

        return tf.nn.bias_add(tf.nn.conv2d(t, kb[0], 1, "SAME"), kb[1])

    def pad_input(self, x):
        """The LFE's zero padding of ``x - mean``, as padding of ``x - input_shift`` with ``mean - c`` per
        channel (one PADV2 each; in int8 rounded to a grey level, on the padded border only)."""
        import tensorflow as tf

        c = self.input_shift
        return tf.concat(
            [tf.pad(ch, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=float(m - c))
             for ch, m in zip(tf.split(x, len(self.mean), axis=-1), self.mean)],
            axis=-1,
        )

    def block(self, z, kb, act, neg, growth, hook, name):
        """One residual distilling block, ``y + pad(z)`` as in the Keras layer; taps ``NAME.conv/.act/.add``.
        (``tools/int8_variants/`` times other forms of it by overriding this method.)"""
        import tensorflow as tf

        a = self.apply_activation(hook(f"{name}.conv", self.conv(z, kb)), act, neg)
        a = hook(f"{name}.act", a)
        return hook(f"{name}.add", a + tf.pad(z, [[0, 0], [0, 0], [0, 0], [0, growth]]))

    def __call__(self, x, hook=lambda name, t: t, clip: bool = True):
        """``x``: float [0, 1] NHWC. ``clip=False`` leaves out the final clip (the int8 graph's output
        fake quant clamps to [0, 1] itself, so the clip's MINIMUM and RELU would be two passes for nothing)."""
        import tensorflow as tf

        conv = self.conv
        # The input tap: x - c with c = round(255 * max(mean)) / 255 is exact in int8 (pixels stay on
        # the 1/255 grid, 256 levels from -c to 1 - c); the per-channel rest of the mean shift goes into
        # the LFE bias (:meth:`pad_input` pads with the rest of the mean).
        # Subtracting c rather than folding the whole mean into the LFE keeps the input centred, which
        # measured better (drn_s_x2 Set5 loss 0.086 vs 0.093 dB: the weights' int8 rounding error
        # times a non-zero input mean is a bias).
        x = self.pad_input(hook("input", x - self.input_shift))
        kernel, bias = self.lfe
        y0 = hook("lfe", tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "VALID"), bias + self.lfe_shift))
        y = y0
        for g, (blocks, compress, comp_act, slope) in enumerate(self.groups):
            z = y
            for b, (kb, act, neg, growth) in enumerate(blocks):
                z = self.block(z, kb, act, neg, growth, hook, f"g{g}b{b}")
            e = hook(f"g{g}.compress", conv(z, compress))
            e = hook(f"g{g}.act", self.apply_activation(e, comp_act, slope))
            y = hook(f"g{g}.out", e + y)
        y = hook("body_end", conv(y, self.body_end))
        if self.global_skip:
            y = hook("skip", y + y0)
        # the output tap (range [0, 1]) quantizes the image straight to grey levels
        u = hook("output", conv(y, self.up))
        return self.shuffle(tf.clip_by_value(u, 0.0, 1.0) if clip else u)


def _quantize(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``values`` quantized to 256 levels on ``[lo, hi]`` (int8 with a zero point), clamped, dequantized."""
    step = (hi - lo) / 255.0
    zero = np.round(-128.0 - lo / step)
    return (np.clip(np.round(values / step) + zero, -128, 127) - zero) * step


def _quant_error(values: np.ndarray, lo: float, hi: float, after=None) -> float:
    """Mean squared error of quantizing ``values`` to 256 levels on ``[lo, hi]``; with ``after`` (a numpy
    function: the activation that reads the tensor) the error of ``after(q)`` against ``after(values)``."""
    q = _quantize(values, lo, hi)
    if after is not None:
        return float(np.mean((after(q) - after(values)) ** 2))
    return float(np.mean((q - values) ** 2))


def mse_range(values: np.ndarray, lo: float, hi: float, steps: int = 41, after=None, extra=None,
              weight: float = 0.0) -> tuple[float, float]:
    """The ``[lo', hi']`` inside ``[lo, hi]`` (0 kept inside) with the least 8-bit quantization MSE on ``values``
    (plus ``weight`` times the MSE on ``extra``; ``after``: the error measured after that activation).

    Coordinate search over ``hi' = a*hi`` then ``lo' = a*lo`` then ``hi'``
    again, ``a`` in ``[0.2, 1]`` (down to 0.02 with ``after``: a leaky ReLU's
    or ELU's negative side hardly reaches the output): clipping rare large
    values buys a finer step for all the others.
    """
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo <= 0:
        return lo, hi

    def err(a, b):
        e = _quant_error(values, a, b, after)
        return e + weight * _quant_error(extra, a, b, after) if extra is not None and weight > 0 else e

    grid = np.linspace(0.2, 1.0, steps) if after is None else np.geomspace(0.02, 1.0, steps)
    best = (err(lo, hi), lo, hi)
    for which in ("hi", "lo", "hi"):
        base = hi if which == "hi" else lo
        if base == 0:
            continue
        for a in grid:
            cand = (best[1], base * a) if which == "hi" else (base * a, best[2])
            e = err(*cand)
            if e < best[0]:
                best = (e, *cand)
    return best[1], best[2]


def _tap_function(graph: _QuantGraph):
    """``taps(x)``: every tap's tensor of ``graph`` for a float batch ``x`` (a ``tf.function``)."""
    tf = _tf()

    @tf.function(reduce_retracing=True)
    def taps(x):
        out = {}

        def hook(name, t):
            out[name] = t
            return t

        graph(x, hook)
        return out

    return taps


def _activation_of(graph: _QuantGraph) -> dict:
    """``tap -> f``: the activation applied to a pre-activation tap (numpy), for the taps that have one."""
    def leaky(slope):
        return lambda v: np.where(v >= 0, v, slope * v)

    out = {}
    for g, (blocks, _compress, comp_act, slope) in enumerate(graph.groups):
        for b, (_kb, act, neg, _growth) in enumerate(blocks):
            out[f"g{g}b{b}.conv"] = leaky(0.0 if act == "relu" else neg) if act in ("relu", "leaky_relu") else None
        out[f"g{g}.compress"] = (lambda v: np.where(v >= 0, v, np.expm1(np.minimum(v, 0)))) if comp_act == "elu" else None
    return {k: f for k, f in out.items() if f is not None}


def _collect(graph: _QuantGraph, samples, keep: int, rng) -> tuple[list, dict, dict, dict]:
    """``(names, values, lows, highs)`` of every tap over ``samples``: up to ``keep`` values per tap (a random
    subset), the minimum and the maximum."""
    tf = _tf()
    names: list[str] = []

    def record(name, t):
        names.append(name)
        return t

    graph(tf.zeros([1, 4, 4, 3]), record)
    taps = _tap_function(graph)
    per = max(1, keep // max(1, len(samples)))
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
    return names, {n: np.concatenate(v) if v else np.zeros(1, np.float32) for n, v in values.items()}, lows, highs


def _tap_ranges(graph: _QuantGraph, samples, keep: int = 200_000, seed: int = 0) -> dict:
    """Range of every tap (see :class:`_QuantGraph`) from the calibration crops ``samples`` and, weighted by
    :data:`STRUCTURE_WEIGHT`, :data:`STRUCTURE_COUNT` regular-structure crops generated in code
    (:func:`drn_tf.core.patterns.structure_crops`)."""
    from drn_tf.core.patterns import structure_crops

    rng = np.random.default_rng(seed)
    names, values, lows, highs = _collect(graph, samples, keep, rng)
    extra = None
    if STRUCTURE_WEIGHT > 0 and STRUCTURE_COUNT > 0:
        crops = structure_crops(STRUCTURE_COUNT, graph.scale, CALIBRATION_PATCH)
        _, extra, elo, ehi = _collect(graph, crops, keep, rng)
        lows = {n: min(lows[n], elo[n]) for n in names}
        highs = {n: max(highs[n], ehi[n]) for n in names}
    activation = _activation_of(graph) if ACTIVATION_AWARE else {}
    ranges = {}
    for name in names:
        if name == "input":
            ranges[name] = graph.input_range()
        elif name == "output":  # 8-bit pixels: [0, 1], scale 1/255
            ranges[name] = (0.0, 1.0)
        elif name == "lfe":  # carried to the output by the global skip: clipping it costs more than it saves
            ranges[name] = (min(lows[name], 0.0), max(highs[name], 0.0))
        else:
            ranges[name] = mse_range(values[name], lows[name], highs[name], after=activation.get(name),
                                     extra=None if extra is None else extra[name], weight=STRUCTURE_WEIGHT)
    return ranges


def int8_ranges(model, samples) -> dict:
    """The calibrated range ``{tap: (lo, hi)}`` of every tap of ``model``'s int8 graph, from the float32
    calibration crops ``samples`` (:func:`calibration_images`). With these ranges the int8 export needs
    no calibration data (:func:`drn_tf.export.tflite.convert_tflite`'s ``int8_ranges``): what the
    bundled models ship in ``assets/int8.json`` (``converters/bundle_int8.py``)."""
    return {k: (float(lo), float(hi)) for k, (lo, hi) in _tap_ranges(_QuantGraph(model), samples).items()}


def tap_names(model) -> list[str]:
    """The taps of ``model``'s int8 graph, in order: the keys of :func:`int8_ranges` (one run on a 4x4 zero
    input, no calibration)."""
    names: list[str] = []

    def record(name, t):
        names.append(name)
        return t

    _QuantGraph(model)(_tf().zeros([1, 4, 4, 3]), record)
    return names


def range_samples(input_size=None, count: int = 2, seed: int = 0) -> list[np.ndarray]:
    """Stand-in calibration inputs for an export whose tap ranges are given: the converter still runs a
    representative set, which then sets only the input's range: each crop holds exact 0 and 1, as the
    first real calibration crop does (stretched to 8-bit pixels' full range)."""
    h, w = input_size or (CALIBRATION_PATCH, CALIBRATION_PATCH)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        x = rng.random((h, w, 3), dtype=np.float32)
        x[0, 0], x[-1, -1] = 0.0, 1.0
        out.append(x)
    return out


def _int8_saved_model(model, path, samples, input_size=None, gpu_friendly: bool = False, ranges=None,
                      saturation_maps: bool = False) -> list[str] | None:
    """Write the int8 export graph (:class:`_QuantGraph` with fake quants) as a SavedModel, with the tap
    ``ranges`` given (:func:`int8_ranges`) or calibrated on ``samples``.

    ``saturation_maps``: one more output per tap of :func:`saturation_taps`
    (``saturation_NN``, in tap order): the quantized tap max-pooled per channel
    over :data:`SATURATION_BLOCK`-pixel blocks, which the converter keeps at the
    tap's quantization, so its top level marks a block where the tap clipped.
    Returns the names of the taps with a map ([] without maps), or None
    (nothing written) for a model the graph does not know.
    """
    tf = _tf()
    try:
        graph = _QuantGraph(model, gpu_friendly=gpu_friendly)
    except ExportError:
        return None
    if ranges is None:
        ranges = _tap_ranges(graph, samples)
    mapped = saturation_taps(tap_names(model)) if saturation_maps else []
    outputs = {name: saturation_output(i) for i, name in enumerate(mapped)}

    def serve(lr_image):
        maps = {}

        def fake_quant(name, t):
            lo, hi = ranges[name]
            q = tf.quantization.fake_quant_with_min_max_vars(t, lo, hi, num_bits=8)
            if name in outputs:
                b = SATURATION_BLOCK
                maps[outputs[name]] = tf.nn.max_pool2d(q, b, b, "SAME")
            return q

        return {TFLITE_OUTPUT: graph(lr_image, fake_quant, clip=False), **maps}

    channels = int(model.inputs[0].shape[-1])
    shape = [None, None, None, channels] if input_size is None else [1, input_size[0], input_size[1], channels]
    module = tf.Module()
    module.serve = tf.function(serve, input_signature=[tf.TensorSpec(shape, tf.float32, name=TFLITE_INPUT)])
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return mapped


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
    from drn_tf.core.imageio import ImageReadError, list_images, read_image
    from drn_tf.core.imresize import bicubic_degrade, modcrop

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
