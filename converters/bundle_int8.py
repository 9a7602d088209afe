#!/usr/bin/env python
"""Calibrate the int8 export of every bundled model once, and ship the result: ``assets/int8.json``
holds, per preset with a bundled ``.keras`` model, the SHA-256 of its weights, the int8 recipe and the
calibrated range of every quantised tensor (:func:`drn_tf.export.int8.int8_ranges`, a few KB).

With it ``drn upscale --runtime litert-int8`` (``drn_tf.upscale(..., runtime="litert-int8")``) converts a
bundled model to int8 on a fresh install without calibration images, and gets the same model as a
conversion calibrated on the training images. Rerun after changing a bundled model or the int8 recipe
(``tests/test_runtimes.py`` fails until then):

    DRN_DATA=../shared/data python converters/bundle_int8.py            # every bundled preset
    DRN_DATA=../shared/data python converters/bundle_int8.py drn_x2     # one

Calibration: ``<DRN_DATA>/train`` (the 291 training images) and the regular-structure crops the recipe
generates itself (:func:`drn_tf.core.patterns.structure_crops`), as ``drn export tflite --quantize int8
--calibration <DRN_DATA>/train`` calibrates (without ``--calibration`` a bundled preset uses these ranges).
Each preset takes minutes of CPU; name them one at a time to spread the work.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from drn_tf.models.backend import import_backend_quietly

    import_backend_quietly()
    from drn_tf.core.utils import assets_dir, write_atomic
    from drn_tf.export.int8 import INT8_RECIPE, STRUCTURE_COUNT, calibration_images, int8_ranges
    from drn_tf.inference.runtimes import INT8_MANIFEST, weights_digest
    from drn_tf.models.drn import DRN, bundled_model_path
    from drn_tf.models.presets import preset_names

    manifest_path = assets_dir() / INT8_MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    names = argv or [n for n in preset_names() if bundled_model_path(n) is not None]
    for name in names:
        model = DRN.from_preset(name)
        scale = model.get_config()["scale"]
        samples = calibration_images(None, scale=scale)
        manifest[name] = {"weights": weights_digest(model), "recipe": INT8_RECIPE,
                          "calibration": f"{len(samples)} crops of the data folder's train/ (the 291 training images) "
                                         f"and {STRUCTURE_COUNT} generated regular-structure crops",
                          "ranges": {k: list(v) for k, v in int8_ranges(model, samples).items()}}
        write_atomic(manifest_path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        print(f"{name}: {len(manifest[name]['ranges'])} ranges -> {manifest_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
