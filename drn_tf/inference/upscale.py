"""The ``drn_tf.upscale`` Python API: images of any channel layout through any
runtime, by the one tiling assembly (:mod:`drn_tf.inference.tiled`, whose
:func:`upscale_array`, :func:`super_resolve` and :func:`iter_tiles` are
re-exported here), at the model's scale or any output size
(:mod:`drn_tf.inference.outsize`).
"""

from __future__ import annotations

import numpy as np

from drn_tf.core.metrics import to_uint8
from drn_tf.core.protocol import to_float01
from drn_tf.core.tiling import auto_tile
from drn_tf.inference.tiled import iter_tiles, predict_image, super_resolve, upscale_array


# ---------------------------------------------------------------- the Python API


def upscale(
    image,
    scale: int | None = None,
    *,
    model=None,
    preset: str | None = None,
    tile="auto",
    tile_overlap: int | None = None,
    self_ensemble: bool = False,
    runtime: str = "keras",
    kind: str = "auto",
    outscale: float | None = None,
    size: tuple | None = None,
    max_side: int | None = None,
    precision: str = "float32",
    device: str | None = None,
) -> np.ndarray:
    """Super-resolve an image array; returns uint8 in the input's channel layout.

    ``image``: uint8 (or uint16/float in [0, 1]) ``(H, W)``, ``(H, W, 1)``,
    ``(H, W, 3)`` or ``(H, W, 4)`` (alpha upscaled with bicubic), or an image file's path.
    ``kind``: which variant of a preset suits the input: ``"photo"`` (fine-tuned for JPEG-compressed
    inputs), ``"clean"``, or ``"auto"`` (photo for a JPEG file's path, clean for arrays and other files);
    a photo variant without bundled weights falls back to the clean one. A ``model`` is used as it is.
    ``scale``: 2, 3 or 4 (default: the model's scale, else 2).
    Model: ``model`` (a ``keras.Model``, a ``.keras`` path or a
    :class:`~drn_tf.inference.runtime.Runtime`, used as it is), else
    ``preset``, else ``drn_x{scale}``; a preset needs its bundled trained
    model (:class:`ModelError` otherwise). ``tile``: LR tile side, ``"auto"``
    (tile images above 512x512 pixels) or None (whole image at once).
    ``runtime``: a name of :data:`drn_tf.inference.runtimes.RUNTIMES`
    (``"keras"``, the default here; ``"litert"``: the float32 TFLite export,
    same output within float rounding; ``"litert-int8"``: full-integer, faster,
    slightly different output) or ``"auto"`` (the faster float runtime on this
    CPU; ``drn upscale``'s default). TFLite files are built on first use and cached.
    ``precision``: ``"float32"``, or ``"bf16"`` on CPUs with AVX512_BF16 / AMX (:mod:`drn_tf.inference.bf16`;
    :class:`ModelError` elsewhere). ``device``: ``"cpu"``, ``"gpu"`` or ``"gpu:N"`` for the Keras model
    (:mod:`drn_tf.inference.devices`; :class:`ModelError` naming the visible devices when absent).

    Any output size (instead of ``scale``): ``outscale`` (a factor, e.g. 1.5 or 8), ``size`` ``(width,
    height)`` (one of them None: by the aspect ratio; both: exactly that box) or ``max_side``; the bundled
    models of ``preset``'s family (``model`` alone when given) run in a row for factors above 4, then
    MATLAB bicubic gives the exact size (:mod:`drn_tf.inference.outsize`); uint16 input gives uint16.
    """
    import os

    from drn_tf.core.degrade import KINDS, input_kind
    from drn_tf.inference.runtimes import load_runtime
    from drn_tf.models.resolve import ModelError, preset_for_kind

    if isinstance(image, (str, os.PathLike)):
        from drn_tf.core.imageio import read_image

        chosen = input_kind(image, kind).kind
        image = read_image(image, mode="keep")
    elif kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    else:
        chosen = "clean" if kind == "auto" else kind  # an array tells nothing of its past
    if model is None:
        try:
            preset, _ = preset_for_kind(preset, chosen, scale)
        except ValueError as exc:
            raise ModelError(str(exc)) from None
    if outscale is not None or size is not None or max_side is not None:
        return _upscale_to(np.asarray(image), outscale, size, max_side, model=model, preset=preset, tile=tile,
                           tile_overlap=tile_overlap, self_ensemble=self_ensemble, runtime=runtime,
                           precision=precision, device=device)
    m = load_runtime(model, preset, scale, runtime, precision=precision, device=device)
    arr = np.asarray(image)
    overlap = tile_overlap if tile_overlap is not None else m.receptive_radius
    return upscale_array(
        arr, m, tile=auto_tile(arr.shape, tile, overlap), tile_overlap=overlap, self_ensemble=self_ensemble
    )


def _upscale_to(arr, outscale, size, max_side, *, model, preset, tile, tile_overlap, self_ensemble, runtime,
                precision=None, device=None):
    """:func:`upscale` to any size: a :class:`~drn_tf.inference.picture.Upscaler` over the preset family."""
    from drn_tf.inference.outsize import SizeRequest, preset_for_scale
    from drn_tf.inference.picture import Upscaler, upscale_image
    from drn_tf.inference.runtimes import load_runtime

    width, height = size if size is not None else (None, None)
    request = SizeRequest(outscale=outscale, width=width, height=height, max_side=max_side)
    loaded: dict = {}
    if model is not None:
        only = load_runtime(model, None, None, runtime, precision=precision, device=device)
        loaded[only.scale] = only
    scales = tuple(loaded) or (2, 3, 4)

    def runtime_for(s):
        if s not in loaded:
            loaded[s] = load_runtime(None, preset_for_scale(preset, s), s, runtime, precision=precision,
                                     device=device)
        return loaded[s]

    up = Upscaler(runtime_for=runtime_for, scale=scales[0], scales=scales, request=request, tile=tile,
                  tile_overlap=tile_overlap, self_ensemble=self_ensemble)
    return upscale_image(arr if arr.dtype in (np.uint8, np.uint16) else to_uint8(to_float01(arr)), up)


__all__ = ["iter_tiles", "predict_image", "super_resolve", "upscale", "upscale_array"]
