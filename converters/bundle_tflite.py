#!/usr/bin/env python
"""Ship the TFLite files of every bundled model: ``assets/tflite/<preset>-float32.tflite`` and
``<preset>-int8.tflite`` (the int8 one from the bundled ranges, ``assets/int8.json``), and
``assets/tflite/manifest.json`` naming, per preset, the SHA-256 of the ``.keras`` file they come from, its
weights digest (the key of ``assets/int8.json``), the versions that converted them and each file's SHA-256,
size, and for int8 the recipe, the digest of the ranges and the format of its saturation maps.

With them ``drn upscale --runtime litert`` / ``--runtime litert-int8`` (``drn_tf.upscale``, ``drn beam``) on a
bundled preset opens the shipped file: no conversion, no TensorFlow or Keras import
(:mod:`drn_tf.inference.export_cache`). A shipped file is used only while its ``.keras`` file, the int8 recipe,
the bundled ranges and the saturation maps' format are the ones it was made from; ``tests/test_tf_free.py`` fails until this is rerun after
any of them changes (after ``converters/bundle_int8.py`` for a new recipe or new weights):

    python converters/bundle_tflite.py            # every bundled preset
    python converters/bundle_tflite.py drn_x2     # one

Conversions go through the user cache (:func:`drn_tf.inference.export_cache.cached_tflite` on the loaded
model), so a rerun with nothing changed converts nothing.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

QUANTIZATIONS = ("float32", "int8")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from drn_tf.models.backend import import_backend_quietly

    import_backend_quietly()
    from drn_tf.core.utils import assets_dir, write_atomic
    from drn_tf.export.tflite_metadata import drn_metadata
    from drn_tf.inference import export_cache as X
    from drn_tf.models.presets import preset_names
    from drn_tf.models.resolve import bundled_file, resolve_model

    folder = assets_dir() / X.BUNDLED_EXPORTS
    manifest_path = folder / X.BUNDLED_MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    names = argv or [n for n in preset_names() if bundled_file(n) is not None]
    for name in names:
        path = bundled_file(name)
        if path is None:
            print(f"{name}: no bundled .keras model", file=sys.stderr)
            return 2
        model = resolve_model(preset=name)
        entry = {"keras": path.name, "keras_sha256": X.file_sha256(path), "weights": X.weights_digest(model),
                 "versions": X.versions(), "files": {}}
        for quantize in QUANTIZATIONS:
            ranges = X.bundled_int8_ranges(model) if quantize == "int8" else None
            if quantize == "int8" and ranges is None:
                print(f"{name}: no current int8 ranges in assets/{X.INT8_MANIFEST}; run converters/bundle_int8.py "
                      f"{name} first", file=sys.stderr)
                return 2
            data = X.cached_tflite(model, quantize, progress=lambda m: print(f"{name}: {m}", flush=True)).read_bytes()
            target = write_atomic(folder / f"{name}-{quantize}.tflite", data)
            item = {"file": target.name, "sha256": X.file_sha256(target), "bytes": len(data)}
            if quantize == "int8":
                meta = drn_metadata(data)
                item.update(recipe=meta.get("int8_recipe"), ranges_sha256=X.ranges_digest(ranges),
                            saturation=(meta.get("saturation") or {}).get("format"))
            entry["files"][quantize] = item
            print(f"{name}: {target.name} {len(data) / 1e6:.2f} MB", flush=True)
        manifest[name] = entry
        write_atomic(manifest_path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    total = sum(item["bytes"] for e in manifest.values() for item in e["files"].values())
    print(f"{len(manifest)} presets, {total / 1e6:.1f} MB in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
