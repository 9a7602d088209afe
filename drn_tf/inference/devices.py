"""Where the Keras runtime runs: ``--device cpu|gpu[:N]`` (``drn upscale``, ``drn_tf.upscale(device=...)``).

* :func:`parse_device` turns the option into a TensorFlow device name (``cpu`` -> ``/CPU:0``,
  ``gpu`` -> ``/GPU:0``, ``gpu:1`` -> ``/GPU:1``);
* :func:`check_device` refuses a device TensorFlow does not see, in one line that lists the ones it does;
* :func:`gpu_visible`: whether ``auto`` should run the Keras model on a GPU instead of timing CPU runtimes.
  It imports TensorFlow only where TensorFlow is already loaded or a GPU driver is present
  (``/proc/driver/nvidia/gpus/*`` or ``/dev/kfd``, and ``CUDA_VISIBLE_DEVICES`` not emptied): on a
  machine without one, a runtime that needs no TensorFlow starts without it.

The device list comes from :func:`list_devices` (TensorFlow's logical devices), the one place tests replace.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

KINDS = ("cpu", "gpu")
_SPEC = re.compile(r"^(cpu|gpu)(?::(\d+))?$")


class DeviceError(ValueError):
    """A ``--device`` that is malformed or not visible to TensorFlow (one line)."""


def parse_device(spec: str | None) -> str | None:
    """``cpu`` / ``gpu`` / ``gpu:N`` (any case) -> ``/CPU:0`` / ``/GPU:0`` / ``/GPU:N``; None stays None."""
    if spec is None:
        return None
    m = _SPEC.match(str(spec).strip().lower())
    if not m:
        raise DeviceError(f"device must be cpu, gpu or gpu:N (N = 0, 1, ...); got {spec!r}")
    return f"/{m.group(1).upper()}:{int(m.group(2) or 0)}"


def list_devices() -> list[str]:
    """TensorFlow's logical devices as ``TYPE:N`` (``CPU:0``, ``GPU:0``, ...); imports TensorFlow."""
    import tensorflow as tf

    return [d.name.split("device:", 1)[-1] for d in tf.config.list_logical_devices()]


def check_device(spec: str | None, devices=None) -> str | None:
    """The TensorFlow device name of ``spec`` (:func:`parse_device`) if TensorFlow sees that device, else
    :class:`DeviceError` naming the visible ones. ``devices``: the visible list (default :func:`list_devices`)."""
    name = parse_device(spec)
    if name is None:
        return None
    visible = list_devices() if devices is None else list(devices)
    if name.lstrip("/") not in visible:
        kind = name.lstrip("/").split(":")[0]
        hint = "" if any(d.startswith(kind) for d in visible) else f" (no {kind} visible to TensorFlow)"
        raise DeviceError(f"device {spec}: no such device{hint}; visible devices: {', '.join(visible) or 'none'}")
    return name


def is_gpu(spec: str | None) -> bool:
    """Whether ``spec`` names a GPU (``gpu``, ``gpu:N``)."""
    return spec is not None and str(spec).strip().lower().startswith("gpu")


def gpu_driver_present() -> bool:
    """A cheap, TensorFlow-free sign of a usable GPU: an NVIDIA GPU in ``/proc/driver/nvidia/gpus`` or the
    ROCm device ``/dev/kfd``, unless ``CUDA_VISIBLE_DEVICES`` hides every GPU (empty or ``-1``)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    try:
        if gpus.is_dir() and any(gpus.iterdir()):
            return True
    except OSError:
        pass
    return Path("/dev/kfd").exists()


def gpu_visible(devices=None) -> bool:
    """Whether TensorFlow sees a GPU. ``devices``: the visible list (tests); else TensorFlow is asked only when
    it is already imported or :func:`gpu_driver_present` says a GPU is there (a CPU-only TensorFlow then
    still answers no)."""
    if devices is None:
        if "tensorflow" not in sys.modules and not gpu_driver_present():
            return False
        try:
            devices = list_devices()
        except Exception:  # noqa: BLE001 - no TensorFlow, or it cannot start: no GPU for us
            return False
    return any(str(d).upper().startswith("GPU") for d in devices)


__all__ = ["DeviceError", "check_device", "gpu_driver_present", "gpu_visible", "is_gpu", "list_devices",
           "parse_device"]
