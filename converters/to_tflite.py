#!/usr/bin/env python
"""Convert a DRN model to TFLite for Android / LiteRT (thin wrapper of ``drn export tflite``).

    python converters/to_tflite.py --preset drn_x2 --quantize float16 -o drn_x2_fp16.tflite
    python converters/to_tflite.py --model assets/drn_x2.keras --quantize int8 \\
        --calibration ../shared/data/train --input-size 256x256 -o drn_x2_int8_256.tflite
    python converters/to_tflite.py --preset drn_x2 --gpu-friendly --input-size 256x256 -o drn_x2_gpu.tflite

Builtin ops only; int8 is full-integer with uint8 pixel input/output. The
logic lives in :mod:`drn_tf.export.tflite`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drn_tf.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["export", "tflite", *sys.argv[1:]]))
