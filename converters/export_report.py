#!/usr/bin/env python
"""Measure every export variant (thin wrapper of ``drn export report``).

    python converters/export_report.py --model assets/drn_x2.keras -o assets/export_report.md

Per variant (Keras, SavedModel, TFLite float32/float16/dynamic/int8, GPU-
friendly float32): file size, Set5 PSNR/SSIM by the project's protocol,
difference from the Keras model, latency on a 256x256 input on this machine.
The logic lives in :mod:`drn_tf.export.tflite`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drn_tf.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["export", "report", *sys.argv[1:]]))
