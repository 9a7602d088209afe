"""``--precision bf16``: the network computed in bfloat16, on CPUs that do it natively (AVX512_BF16 or AMX-BF16).

Two engines (runtimes of :data:`drn_tf.inference.runtimes.RUNTIMES`):

* ``keras-bf16``: the Keras model rebuilt from its configuration under the ``mixed_bfloat16`` policy
  (:func:`bf16_model`: bf16 convolutions, float32 variables; the first convolution, the upsampler and the
  mean shifts stay float32, as the model is built for mixed precision) with the weights copied;
* ``openvino-bf16``: the OpenVINO IR with ``INFERENCE_PRECISION_HINT=bf16``.

``drn upscale --precision bf16`` with ``--runtime auto`` measures both once on the machine and keeps the faster
(:mod:`drn_tf.inference.autoselect`); ``--runtime keras`` / ``openvino`` pick their own (:data:`BF16_OF`).
Elsewhere bf16 is refused in one line (:func:`check_bf16_cpu`): without the instructions it is emulated,
slower than float32. ``DRN_BF16_EMULATE=1`` lifts the refusal for ``keras-bf16`` alone, to check bf16's
quality on any CPU (its speed there says nothing).
"""

from __future__ import annotations

import os

PRECISIONS = ("float32", "bf16")
BF16_OF = {"keras": "keras-bf16", "openvino": "openvino-bf16", "keras-bf16": "keras-bf16",
           "openvino-bf16": "openvino-bf16"}  # the runtime computing in bf16 for a --runtime
EMULATE_ENV = "DRN_BF16_EMULATE"


class PrecisionError(ValueError):
    """A precision this CPU or this runtime cannot compute in (one line)."""


def bf16_refusal(flags=None, what: str = "--precision bf16") -> str | None:
    """None where this CPU computes bf16 natively, else the one line that refuses ``what``."""
    from drn_tf.core.utils import cpu_flags, cpu_has_bf16, cpu_model

    flags = cpu_flags() if flags is None else flags
    if cpu_has_bf16(flags):
        return None
    return (f"{what} needs a CPU with AVX512_BF16 or AMX-BF16; this one ({cpu_model()}) has "
            f"{', '.join(flags) or 'neither'}: use float32 (the default)")


def check_bf16_cpu(flags=None, env=None, what: str = "--precision bf16") -> None:
    """:class:`PrecisionError` naming ``what`` unless bf16 is native here (or ``DRN_BF16_EMULATE=1``; OpenVINO's
    own check still refuses ``openvino-bf16`` then: it would silently compute in float32)."""
    env = os.environ if env is None else env
    refusal = bf16_refusal(flags, what)
    if refusal and env.get(EMULATE_ENV) != "1":
        raise PrecisionError(refusal)


def runtime_for_precision(name: str, precision: str | None) -> str:
    """The runtime that runs ``name`` (a resolved runtime) in ``precision``: float32 is ``name`` itself; bf16 is
    :data:`BF16_OF` of it, :class:`PrecisionError` for a runtime without a bf16 engine."""
    precision = precision or "float32"
    if precision not in PRECISIONS:
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "float32":
        return name
    if name not in BF16_OF:
        raise PrecisionError(f"--precision bf16 runs on keras or openvino (or auto), not {name}")
    return BF16_OF[name]


def bf16_model(model):
    """A copy of the Keras DRN ``model`` computing under the ``mixed_bfloat16`` policy, its weights copied."""
    import keras

    saved = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy("mixed_bfloat16")
        clone = model.__class__.from_config(model.get_config())
    finally:
        keras.config.set_dtype_policy(saved)
    clone.set_weights(model.get_weights())
    return clone


__all__ = ["BF16_OF", "PRECISIONS", "PrecisionError", "bf16_model", "bf16_refusal", "check_bf16_cpu",
           "runtime_for_precision"]
