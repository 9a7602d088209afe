"""Which model a command uses, decided in one place: :func:`resolve`.

The rules (every command, the training's ``init_from`` and the Python API go
through them):

* a ``keras.Model`` is used as given; a path is loaded as a ``.keras`` file,
  every failure (missing, empty, not a zip, corrupt) a one-line
  :class:`ModelError`;
* otherwise the preset (default ``drn_x{scale}``, ``drn_x2`` without a scale)
  is used with its bundled trained model ``assets/<preset>.keras``;
* a preset without bundled weights raises :class:`NoTrainedModelError`, unless
  the caller opts out with ``allow_untrained=True`` (export and benchmark, whose
  sizes and latencies do not depend on the weights): then a freshly initialised
  model is returned, marked ``trained=False``, and the caller says so;
* a ``scale`` that the model does not have raises :class:`ModelError`.

The answer, :class:`Resolved`, carries the model, whether it is trained, where it
came from and a one-line description for reports. :func:`resolve_model` is the
short form that returns the model alone (refusing random weights). Also here:
:func:`model_scale` and :func:`model_receptive_radius`, facts read from any model.
"""

from __future__ import annotations

import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class ModelError(ValueError):
    """No usable model: missing/corrupt file, wrong scale, no bundled weights."""


class NoTrainedModelError(ModelError):
    """The preset ``preset`` has no bundled trained model (and random weights were not allowed)."""

    def __init__(self, preset: str):
        super().__init__(no_bundled_model_message(preset))
        self.preset = preset


# ---------------------------------------------------------------- model facts


def model_scale(model) -> int:
    """Upscaling factor of ``model``: from its config, else from a probe run."""
    try:
        cfg = model.get_config()
        if "scale" in cfg:
            return int(cfg["scale"])
    except Exception:  # noqa: BLE001 - any config problem: probe instead
        pass
    probe = np.zeros((1, 8, 8, 3), np.float32)
    out = np.asarray(model.predict_on_batch(probe))
    if out.shape[1] % 8 or out.shape[2] % 8 or out.shape[1] != out.shape[2]:
        raise ModelError(f"cannot infer the scale of the model: 8x8 input gave {out.shape[1:3]}")
    return out.shape[1] // 8


def model_receptive_radius(model) -> int | None:
    """Receptive radius (LR pixels) of ``model``; None if it cannot be told."""
    radius = getattr(model, "receptive_radius", None)
    if isinstance(radius, int):
        return radius
    try:
        cfg = model.get_config()
        from drn_tf.models.drn import receptive_radius
        from drn_tf.models.layers import upsampler_stages

        return receptive_radius(
            int(cfg["num_groups"]),
            int(cfg["num_blocks"]),
            len(upsampler_stages(int(cfg["scale"]), cfg.get("upsampler", "single"))),
        )
    except Exception:  # noqa: BLE001
        return None


def check_scale(model, scale: int | None, name: str = "model") -> int:
    """The scale of ``model``; :class:`ModelError` if ``scale`` is given and differs."""
    s = model_scale(model)
    _check_scale_value(s, scale, name)
    return s


def _check_scale_value(s: int, scale: int | None, name: str) -> None:
    if scale is not None and int(scale) != s:
        raise ModelError(f"{name} is a x{s} model, but x{scale} was asked for (--scale {scale})")


# ---------------------------------------------------------------- model resolution

_MODEL_CACHE: dict = {}  # one entry: the last file or bundled model resolved with cache=True


def no_bundled_model_message(preset: str) -> str:
    return f"no trained model bundled for preset {preset}; pass --model FILE"


@dataclass(frozen=True)
class Resolved:
    """What :func:`resolve` decided: the model and where it came from."""

    model: object
    trained: bool  # False only for a freshly initialised preset (allow_untrained=True)
    source: str  # "file", "bundled", "fresh" or "object" (a model passed in)
    name: str  # the file path, the preset name, or the model's name
    path: Path | None = None  # the file loaded (a file or a preset's bundled model)
    note: str | None = None  # a choice the caller should tell the user about (e.g. a fallback)

    @property
    def description(self) -> str:
        """One line for reports and messages, e.g. ``preset drn_x2, trained bundled weights (drn_x2.keras)``."""
        if self.source == "bundled":
            return f"preset {self.name}, trained bundled weights ({self.path.name})"
        if self.source == "fresh":
            return f"preset {self.name}, freshly initialised, untrained (no bundled weights)"
        if self.source == "object":
            return f"model {self.name}"
        return self.name


def check_model_file(path) -> Path:
    """The checks of a model file that need no Keras (missing, a folder, empty, a ``.keras`` that is not a zip),
    each a one-line :class:`ModelError`; returns the path."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: model file not found")
    if path.is_dir():
        raise ModelError(f"{path}: is a directory, expected a .keras model file")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: empty model file (0 bytes)")
    if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
        raise ModelError(f"{path}: not a valid .keras model file (not a zip archive: corrupt or truncated?)")
    return path


def model_file_config(path) -> dict:
    """The model's configuration in a ``.keras`` file's ``config.json`` (``config``: scale, name, ...), read
    without Keras; an empty dict when it cannot be read."""
    import json

    try:
        with zipfile.ZipFile(path) as z:
            config = json.loads(z.read("config.json")).get("config")
    except Exception:  # noqa: BLE001 - loading the model says what is wrong
        return {}
    return config if isinstance(config, dict) else {}


def load_model_file(path, scale: int | None = None):
    """Load a ``.keras`` file with a clear :class:`ModelError` for every failure."""
    path = check_model_file(path)
    from drn_tf.models.backend import import_backend_quietly

    import_backend_quietly()  # Keras starts here, without its start-up chatter
    from drn_tf.models.drn import load_model

    try:
        model = load_model(path)
    except Exception as exc:  # noqa: BLE001 - zip/h5/json/keras errors all mean "corrupt"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if len(reason) > 160:
            reason = reason[:160].rsplit(" ", 1)[0] + " ..."
        raise ModelError(f"{path}: cannot load model ({reason})") from None
    check_scale(model, scale, str(path))
    return model


def _cached(key, load, cache: bool):
    if not cache:
        return load()
    if key not in _MODEL_CACHE:
        _MODEL_CACHE.clear()
        _MODEL_CACHE[key] = load()
    return _MODEL_CACHE[key]


def bundled_file(name: str) -> Path | None:
    """The bundled ``.keras`` file of preset ``name`` (None: no trained weights bundled), found without importing
    Keras: :func:`drn_tf.models.drn.bundled_model_path` when that module is loaded already (its ``ASSETS_DIR``
    is where tools and tests point the presets), else the same rule (``assets_dir() / <asset>``) here."""
    drn = sys.modules.get("drn_tf.models.drn")
    if drn is not None:
        return drn.bundled_model_path(name)
    from drn_tf.core.utils import assets_dir
    from drn_tf.models.presets import get_preset

    path = assets_dir() / get_preset(name)["asset"]
    return path if path.is_file() else None


def default_preset(preset: str | None, scale: int | None = None) -> str:
    """``preset``, else the default model of ``scale``: ``drn_x{scale}`` (``drn_x2`` without a scale)."""
    return preset or f"drn_x{2 if scale is None else int(scale)}"


def preset_for_kind(preset: str | None, kind: str | None, scale: int | None = None) -> tuple[str, str | None]:
    """``(preset, note)``: the variant of ``preset`` trained for ``kind`` inputs (``clean`` | ``photo``; None:
    ``preset`` itself). A photo variant without bundled weights falls back to a bundled photo model of the
    same scale from another family (on JPEG inputs any photo model is far ahead of a clean one), else to
    the clean preset; ``note`` says so. ``preset`` None: the default of ``scale`` (:func:`default_preset`).
    Raises ValueError for an unknown preset or kind."""
    from drn_tf.models.presets import PRESETS, get_preset, variant

    preset = default_preset(preset, scale)
    if kind is None:
        return preset, None
    wanted = variant(preset, kind)
    if kind != "photo" or bundled_file(wanted) is not None:
        return wanted, None
    scale = get_preset(preset)["config"]["scale"]
    others = [n for n, p in sorted(PRESETS.items()) if p["kind"] == "photo" and p["config"]["scale"] == scale
              and n != wanted and bundled_file(n) is not None]
    fallback = others[0] if others else variant(preset, "clean")
    return fallback, f"no photo model is bundled for {wanted}: using {fallback}"


def resolve(model=None, preset: str | None = None, scale: int | None = None, *,
            allow_untrained: bool = False, cache: bool = False, kind: str | None = None) -> Resolved:
    """Decide which model to use, by the rules in this module's docstring.

    ``model``: a ``keras.Model`` (or any object with ``predict_on_batch``) or a
    path; else ``preset`` (default ``drn_x{scale}``). ``allow_untrained``: a
    preset without bundled weights gives a fresh model (``trained=False``)
    instead of :class:`NoTrainedModelError`. ``cache``: keep the last loaded
    file/bundled model and return that same object for the same file (reloaded
    if it changed): for callers that resolve repeatedly and do not modify the model.
    ``kind`` (``clean`` | ``photo``, presets only): the variant of the preset trained for that kind of
    input (``drn_x2`` -> ``drn_x2_photo``); a photo variant without bundled weights falls back to the
    clean one, said in ``Resolved.note``. A model file is used as it is, whatever ``kind``.
    Raises :class:`ModelError` (one line) for every failure.
    """
    if model is not None:
        if isinstance(model, (str, os.PathLike)):
            path = Path(model)
            st = path.stat() if path.is_file() else None
            key = ("file", str(path.resolve()), *((st.st_mtime_ns, st.st_size) if st else (None,)))
            loaded = _cached(key, lambda: load_model_file(path), cache)
            check_scale(loaded, scale, str(model))
            return Resolved(loaded, True, "file", str(model), path)
        check_scale(model, scale)
        return Resolved(model, True, "object", str(getattr(model, "name", type(model).__name__)))
    from drn_tf.models.backend import import_backend_quietly

    import_backend_quietly()  # Keras starts here, without its start-up chatter
    from drn_tf.models import build, drn

    name, note = _preset_target(preset, scale, kind)  # before loading anything
    path = drn.bundled_model_path(name)
    if path is None:
        if not allow_untrained:
            raise NoTrainedModelError(name)
        return Resolved(build.from_preset(name, load_weights=False), False, "fresh", name)

    def load():
        try:
            return drn.load_model(path)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{path}: cannot load the bundled model ({exc})") from None

    loaded = _cached(("preset", name, str(path)), load, cache)
    check_scale(loaded, scale, f"preset {name}")
    return Resolved(loaded, True, "bundled", name, path, note)


def _preset_target(preset: str | None, scale: int | None, kind: str | None) -> tuple[str, str | None]:
    """The preset :func:`resolve` and :func:`locate` go to, and the note that says why (a photo fallback):
    the default for ``scale``, its ``kind`` variant, its scale checked against ``scale``. Raises
    :class:`ModelError` (one line)."""
    from drn_tf.models.presets import get_preset

    name = default_preset(preset, scale)
    try:
        preset_scale = int(get_preset(name)["config"]["scale"])
        name, note = preset_for_kind(name, kind)
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    _check_scale_value(preset_scale, scale, f"preset {name}")
    return name, note


def locate(model=None, preset: str | None = None, scale: int | None = None, *, kind: str | None = None
           ) -> Resolved | None:
    """:func:`resolve` without loading anything: the ``.keras`` file it would load, as a :class:`Resolved`
    whose ``model`` is None (``source`` ``file`` or ``bundled``, ``path`` the file), its scale checked from
    the preset or the file's ``config.json``. None where only loading can tell (a model object, a file that
    is not a ``.keras`` zip with a config). Raises :class:`ModelError` (one line) as :func:`resolve` does:
    a missing or empty file, a wrong scale, a preset without bundled weights."""
    if model is not None:
        if not isinstance(model, (str, os.PathLike)):
            return None
        path = check_model_file(model)
        file_scale = model_file_config(path).get("scale") if path.suffix.lower() == ".keras" else None
        if not isinstance(file_scale, int):
            return None
        _check_scale_value(file_scale, scale, str(model))
        return Resolved(None, True, "file", str(model), path)
    name, note = _preset_target(preset, scale, kind)
    path = bundled_file(name)
    if path is None:
        raise NoTrainedModelError(name)
    return Resolved(None, True, "bundled", name, path, note)


def resolve_model(model=None, preset: str | None = None, scale: int | None = None):
    """The model :func:`resolve` picks (trained weights required; loaded models cached)."""
    return resolve(model, preset, scale, cache=True).model
