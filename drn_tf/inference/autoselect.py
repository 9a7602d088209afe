"""``--runtime auto``: the runtime that runs the network fastest on this machine, measured once and cached.

The first ``auto`` run on a machine times the installed candidates (:data:`CANDIDATES`: the float runtimes
keras, litert, onnxruntime, openvino, the ones whose output is the Keras model's within float rounding;
never an int8 one, which changes the output) on one small input, interleaved round after round
(:func:`measure_runtimes`; a few seconds, said once on stderr; a runtime's file is converted first when
it is not cached yet), and keeps the winner in ``<cache>/auto_runtime.json`` (the user cache folder of
:func:`drn_tf.core.utils.default_cache_dir`). The entry's key (:func:`selection_key`) is the CPU model and
flags, the versions of drn_tf and of the runtimes' packages (``importlib.metadata``: no framework is
imported for it), the candidates and the model's family and size (:func:`model_tag`: the architecture,
so ``drn_x2`` and ``drn_x2_photo`` share one entry). Later runs read the entry: a cached winner that is
not keras starts without TensorFlow.

``--precision bf16`` chooses the same way among the bf16 engines (keras-bf16, openvino-bf16).

Robustness: the file is written atomically (a killed run never leaves half a file); a corrupt file counts
as empty (measured again, then replaced); where the cache folder cannot be written, or nothing can be
measured (no model at hand, every candidate failed), ``auto`` falls back to the CPU-flag rule
(:data:`AUTO_RULE`), without an error. ``DRN_AUTO_RUNTIME`` = ``remeasure`` measures again and replaces
the entry, ``rule`` never measures (the CPU-flag rule), ``measure`` (default) measures once.

A GPU visible to TensorFlow (:func:`drn_tf.inference.devices.gpu_visible`) makes ``auto`` the Keras model
before anything is timed: the CPU runtimes do not use it.

This module imports no framework: the runtimes are built by the function the caller passes
(:func:`drn_tf.inference.runtimes.resolve_runtime` passes its runtime table).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

CANDIDATES = {  # precision -> runtimes `auto` chooses among (names of drn_tf.inference.runtimes.RUNTIMES)
    "float32": ("keras", "litert", "onnxruntime", "openvino"),
    "bf16": ("keras-bf16", "openvino-bf16"),
}
REQUIRES = {  # runtime -> the modules it needs (find_spec: nothing imported)
    "keras": ("tensorflow",),
    "keras-bf16": ("tensorflow",),
    "litert": ("tensorflow", "ai_edge_litert"),
    "onnxruntime": ("tensorflow", "tf2onnx", "onnx", "onnxruntime"),
    "openvino": ("tensorflow", "tf2onnx", "onnx", "openvino"),
    "openvino-bf16": ("tensorflow", "tf2onnx", "onnx", "openvino"),
}
KEY_PACKAGES = ("tensorflow", "keras", "ai-edge-litert", "onnxruntime", "openvino", "tf2onnx", "onnx")
ENV = "DRN_AUTO_RUNTIME"  # measure (default) | remeasure | rule
MODES = ("measure", "remeasure", "rule")
CACHE_NAME = "auto_runtime.json"
MEASURE_SIZE = (128, 128)  # LR input of the measurement: 0.07 MP out at x2, ~0.2 s a run for drn_x2 on 2 cores
MEASURE_ROUNDS = 3
MEASURE_WARMUP = 1
ANNOUNCE = "choosing the fastest runtime on this CPU (once) ..."

# The rule where nothing is measured, from the CPU flags, measured 256x256 x2 with drn_x2 (keras
# `predict_on_batch` against LiteRT float32 `invoke`, interleaved): AVX-512 (AMD EPYC, avx512f + avx512_vnni,
# 2 cores): Keras 720 ms, LiteRT 824 ms (assets/benchmark.md) -> keras; AVX2 only (same machine kind, no
# AVX-512): Keras 1,398 ms, LiteRT 1,096 ms -> litert. oneDNN's AVX-512 convolutions put Keras ahead.
AUTO_RULE = "keras on CPUs with AVX-512 (avx512f), litert otherwise"
BF16_RULE = "keras-bf16 (the Keras model under the mixed_bfloat16 policy)"


@dataclass
class Choice:
    """What ``auto`` chose: ``runtime``; ``how``: ``measured`` (now), ``cached`` (an earlier measurement),
    ``rule`` (the CPU-flag rule), ``only`` (one candidate installed), ``gpu`` (a GPU is visible);
    ``timings``: seconds per run of each candidate (None: it failed) when measured now or cached; ``note``:
    why the rule was used."""

    runtime: str
    how: str
    timings: dict = field(default_factory=dict)
    note: str = ""


def rule_runtime(flags=None, precision: str = "float32") -> str:
    """The runtime of the CPU-flag rule (:data:`AUTO_RULE`; bf16: :data:`BF16_RULE`)."""
    if precision == "bf16":
        return "keras-bf16"
    from drn_tf.core.utils import cpu_flags

    flags = cpu_flags() if flags is None else flags
    return "keras" if "avx512f" in flags else "litert"


def installed(names, find=None) -> tuple[str, ...]:
    """The runtimes of ``names`` whose modules (:data:`REQUIRES`) are installed; ``find(module)`` -> bool."""
    if find is None:
        import importlib.util

        def find(module):
            try:
                return importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                return False

    return tuple(n for n in names if all(find(m) for m in REQUIRES.get(n, ())))


# ---------------------------------------------------------------- the key


ARCH_FIELDS = ("scale", "channels", "growth", "num_blocks", "num_groups", "upsampler", "activation")


def tag_of_config(config: dict, architecture: str = "DRN") -> str:
    """``DRN channels=64,growth=16,...``: a model's family and size from its configuration."""
    return architecture + " " + ",".join(f"{k}={config.get(k)}" for k in ARCH_FIELDS)


def model_tag(model=None, preset: str | None = None, scale: int | None = None) -> str:
    """The model's family and size, without TensorFlow: a preset's configuration
    (:data:`drn_tf.models.presets.PRESETS`; ``preset`` None: the default of ``scale``), a ``.keras`` file's
    ``config.json``, or a model object's ``get_config()``; ``unknown`` when none can be read."""
    try:
        if model is None:
            from drn_tf.models.presets import get_preset
            from drn_tf.models.resolve import default_preset

            spec = get_preset(default_preset(preset, scale))
            return tag_of_config(spec["config"], spec.get("architecture", "DRN"))
        if isinstance(model, (str, os.PathLike)):
            import zipfile

            with zipfile.ZipFile(model) as z:
                doc = json.loads(z.read("config.json"))
            return tag_of_config(doc.get("config", {}), doc.get("class_name", "model"))
        return tag_of_config(model.get_config(), type(model).__name__)
    except Exception:  # noqa: BLE001 - anything unreadable: one shared "unknown" entry
        return "unknown"


def versions(packages=KEY_PACKAGES) -> dict:
    """drn_tf's version and each package's (``importlib.metadata``; None when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    from drn_tf.core.version import VERSION

    out = {"drn_tf": VERSION}
    for pkg in packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def selection_key(tag: str, candidates, precision: str = "float32") -> dict:
    """What a cached choice holds for: this CPU (model, flags), the versions, the candidates, the model."""
    from drn_tf.core.utils import cpu_flags, cpu_model

    return {"cpu": cpu_model(), "flags": cpu_flags(), "versions": versions(), "candidates": list(candidates),
            "precision": precision, "model": tag}


def key_digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


# ---------------------------------------------------------------- the cache


def cache_path() -> Path:
    """``auto_runtime.json`` in the user cache folder (``DRN_CACHE_DIR``, else ``~/.cache/drn_tf``)."""
    from drn_tf.core.utils import default_cache_dir

    return default_cache_dir() / CACHE_NAME


def read_cache(path: Path) -> dict:
    """The entries of the cache file; ``{}`` when it is missing, unreadable or corrupt."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def writable(path: Path) -> bool:
    """Whether the cache file can be (re)written: its folder exists or can be made, and is writable."""
    folder = Path(path).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK) and (not Path(path).exists() or os.access(path, os.W_OK))


def write_cache(path: Path, entries: dict) -> bool:
    """Write the entries atomically; False (nothing raised) when it cannot be written."""
    from drn_tf.core.utils import write_atomic

    try:
        write_atomic(path, json.dumps(entries, indent=1, sort_keys=True) + "\n")
    except OSError:
        return False
    return True


def cached_choice(tag: str, precision: str = "float32", path=None, candidates=None) -> Choice | None:
    """The cached winner for this machine and model, None when there is none (or it is not a candidate)."""
    candidates = installed(CANDIDATES[precision]) if candidates is None else candidates
    entry = read_cache(Path(path) if path else cache_path()).get(key_digest(selection_key(tag, candidates, precision)))
    if isinstance(entry, dict) and entry.get("runtime") in candidates:
        ms = entry.get("ms") if isinstance(entry.get("ms"), dict) else {}
        return Choice(entry["runtime"], "cached", {k: (v / 1e3 if v else None) for k, v in ms.items()})
    return None


# ---------------------------------------------------------------- measuring


def measure_runtimes(build: Callable, names, *, size=MEASURE_SIZE, rounds: int = MEASURE_ROUNDS,
                     warmup: int = MEASURE_WARMUP, timer: Callable = time.perf_counter) -> dict:
    """Median seconds of one ``run_batch`` on a ``size`` input per runtime of ``names``, the runtimes timed in
    turn round after round (a load change hits them alike). ``build(name)`` -> the runtime; one that cannot
    be built or run gets None. ``timer``: the clock (tests pass a fake one)."""
    import numpy as np

    h, w = size
    batch = np.random.default_rng(0).random((1, h, w, 3), dtype=np.float32)
    runtimes, times = {}, {}
    for name in names:
        try:
            runtimes[name] = build(name)
            for _ in range(max(0, warmup)):
                runtimes[name].run_batch(batch)
        except Exception:  # noqa: BLE001 - a runtime that cannot run here is not a candidate
            runtimes.pop(name, None)
        times[name] = []
    for _ in range(max(1, rounds)):
        for name, rt in list(runtimes.items()):
            t0 = timer()
            try:
                rt.run_batch(batch)
            except Exception:  # noqa: BLE001
                del runtimes[name]
                times[name] = []
                continue
            times[name].append(timer() - t0)
    return {name: (statistics.median(t) if t and name in runtimes else None) for name, t in times.items()}


def _stderr(message: str) -> None:
    print(f"drn: {message}", file=sys.stderr, flush=True)


def choose(tag: str, measure: Callable | None = None, *, precision: str = "float32", path=None, progress=None,
           env=None, find=None, flags=None) -> Choice:
    """The runtime ``auto`` runs for the model ``tag`` (:func:`model_tag`).

    ``measure(names)`` -> ``{name: seconds or None}`` (:func:`measure_runtimes` with the caller's builder);
    None: nothing can be measured (the cached choice, else the rule). ``path``: the cache file (default
    :func:`cache_path`); ``progress(message)``: where the one line about measuring goes (default stderr);
    ``env``: the environment (:data:`ENV`); ``find``: :func:`installed`'s module finder; ``flags``: the rule's
    CPU flags."""
    env = os.environ if env is None else env
    mode = (env.get(ENV) or "measure").strip().lower()
    candidates = installed(CANDIDATES[precision], find)
    rule = rule_runtime(flags, precision)
    if mode == "rule":
        return Choice(rule, "rule", note=f"{ENV}=rule")
    if not candidates:
        return Choice(rule, "rule", note="no candidate runtime is installed")
    if len(candidates) == 1:
        return Choice(candidates[0], "only")
    path = Path(path) if path is not None else cache_path()
    key = selection_key(tag, candidates, precision)
    digest = key_digest(key)
    if mode != "remeasure":
        hit = cached_choice(tag, precision, path, candidates)
        if hit is not None:
            return hit
    if measure is None:
        return Choice(rule, "rule", note="nothing to measure with")
    if not writable(path):
        return Choice(rule, "rule", note=f"the cache {path.parent} is not writable")
    (progress or _stderr)(ANNOUNCE)
    try:
        timings = dict(measure(candidates))
    except Exception as exc:  # noqa: BLE001 - measuring is an optimisation: never fatal
        return Choice(rule, "rule", note=f"measuring failed ({type(exc).__name__}: {exc})")
    valid = {n: t for n, t in timings.items() if n in candidates and t}
    if not valid:
        return Choice(rule, "rule", timings, note="no candidate could be measured")
    winner = min(valid, key=valid.get)
    entries = read_cache(path)
    entries[digest] = {"runtime": winner, "ms": {n: (round(t * 1e3, 2) if t else None) for n, t in timings.items()},
                       "key": key, "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
                       "input": f"{MEASURE_SIZE[0]}x{MEASURE_SIZE[1]}"}
    note = "" if write_cache(path, entries) else f"not cached: {path} could not be written"
    return Choice(winner, "measured", timings, note)


__all__ = ["AUTO_RULE", "CANDIDATES", "Choice", "ENV", "cached_choice", "choose", "installed", "measure_runtimes",
           "model_tag", "rule_runtime", "selection_key"]
