"""Starting from weights that exist: a model initialised from another (:func:`init_from`, ``model.init_from``
/ ``--init-from``), and checkpoints of one model averaged into one (:func:`average_models`, ``drn average``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drn_tf.train import rundir
from drn_tf.train.state import plain_clone, save_model_file, weight_values


def _checkpoint_values(path, preset=None):
    """(model, weight values) of one source of :func:`average_models`."""
    import warnings

    from drn_tf.models.build import from_preset
    from drn_tf.models.resolve import load_model_file

    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        model = load_model_file(path)  # ModelError (a ValueError) naming the file and the reason
        return model, model.get_weights()
    run = path.parent.parent
    if (run / rundir.CONFIG).is_file() and path.parent.name == rundir.CHECKPOINT:
        import yaml

        from drn_tf.train.config import resolve_config
        from drn_tf.train.recipe import build_model

        model = build_model(resolve_config(yaml.safe_load((run / rundir.CONFIG).read_text())))
        model.load_weights(path)  # weights and optimizer state: the EMA when the run kept one
        return model, weight_values(model)
    if preset is None:
        raise ValueError(f"{path}: a weights file outside a run's checkpoint/ folder; name its preset")
    model = from_preset(preset, load_weights=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.load_weights(path)
    return model, model.get_weights()


def average_models(sources, out, preset=None) -> list[Path]:
    """Uniform average of the weights of several checkpoints of one model (checkpoint averaging, as in SWA),
    written to ``out`` as a bare float32 ``.keras`` file (atomically). Returns the files averaged.

    ``sources``: ``.keras`` files (a run's ``model/best/last.keras``, ``checkpoint/best-N.keras``, bundled
    models), a run's ``checkpoint/ckpt-N.weights.h5`` (the EMA weights when the run kept one; the model
    from the run's ``config.yaml``), run directories (all their kept ``ckpt-N.weights.h5``), or bare
    ``.weights.h5`` files of ``preset``. Raises ``ValueError`` when the architectures differ."""
    files: list[Path] = []
    for src in sources:
        src = Path(src)
        if src.is_dir():
            found = rundir.checkpoint_files(src)
            if not found:
                raise FileNotFoundError(f"{src}: no checkpoint/ckpt-*.weights.h5 to average")
            files += found
        elif src.is_file():
            files.append(src)
        elif set("*?[") & set(str(src)):
            raise FileNotFoundError(f"{src}: no file matches this pattern")
        else:
            raise FileNotFoundError(f"{src}: no such file or run directory")
    first, total = None, None
    for f in files:
        model, values = _checkpoint_values(f, preset)
        if first is None:
            first, shapes = model, [v.shape for v in values]
            total = [np.asarray(v, np.float64) for v in values]
            continue
        if [v.shape for v in values] != shapes or type(model) is not type(first):
            raise ValueError(f"{f}: not the architecture of {files[0]}")
        for acc, v in zip(total, values):
            acc += v
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_model_file(first, out, [(acc / len(files)).astype(np.float32) for acc in total])
    return files


def init_from(model, source) -> dict:
    """Copy into ``model`` the layers of ``source`` that match by name and weight shapes.

    The upsampler is copied only from a model of the same scale (from another
    scale its shapes differ anyway). ``source``: a ``.keras`` file, a run
    directory (its ``model.keras``, else ``best.keras``/``last.keras``), a
    ``.weights.h5`` file of a DRN with the same layer names, or a preset name
    with bundled weights. Returns ``{"source", "loaded", "skipped"}`` (layer
    names). Call outside ``strategy.scope()``; the assignment reaches every replica.
    """
    import warnings

    from drn_tf.models.presets import PRESETS
    from drn_tf.models.resolve import NoTrainedModelError, resolve

    src_path = Path(str(source)).expanduser()
    if src_path.is_dir():
        for name in (rundir.MODEL, rundir.BEST, rundir.LAST):
            if (src_path / name).is_file():
                src_path = src_path / name
                break
        else:
            raise FileNotFoundError(f"{source}: run directory holds no model.keras, best.keras or last.keras")
    if not src_path.is_file() and str(source) in PRESETS:
        try:
            resolved = resolve(preset=str(source))  # its bundled trained model, never random weights
        except NoTrainedModelError:
            raise FileNotFoundError(f"preset {source} has no bundled weights to start from") from None
    elif not src_path.is_file():
        raise FileNotFoundError(f"{source}: no such model file, run directory or preset with bundled weights")
    elif src_path.name.endswith(".weights.h5"):
        resolved = None
    else:
        resolved = resolve(src_path)
    src_scale = None
    if resolved is None:
        # Load into a copy of ``model`` whose weights are NaN first: what is finite afterwards was in the file.
        source_model = plain_clone(model)
        source_model.set_weights([np.full(w.shape, np.nan, w.dtype) for w in source_model.get_weights()])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            source_model.load_weights(src_path, skip_mismatch=True)
    else:
        source_model, src_path = resolved.model, resolved.path
        src_scale = getattr(source_model, "scale", None)
    loaded, skipped = [], []
    src_layers = {layer.name: layer for layer in source_model.layers}
    for layer in model.layers:
        if not layer.weights:
            continue
        src = src_layers.get(layer.name)
        sw = src.get_weights() if src is not None else None
        ok = (
            sw is not None
            and [tuple(w.shape) for w in sw] == [tuple(w.shape) for w in layer.weights]
            and all(np.isfinite(w).all() for w in sw)
            and not (layer.name == "upsampler" and src_scale is not None and src_scale != getattr(model, "scale", None))
        )
        if ok:
            layer.set_weights(sw)
            loaded.append(layer.name)
        else:
            skipped.append(layer.name)
    return {"source": str(src_path), "loaded": loaded, "skipped": skipped}
