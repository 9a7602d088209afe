#!/usr/bin/env python
"""Export a DRN model as a SavedModel for TF Serving (thin wrapper of ``drn export saved-model``).

    python converters/to_saved_model.py --preset drn_x2 -o serving/drn_x2
    python converters/to_saved_model.py --model assets/drn_x2.keras -o serving/drn_x2 --version 3

Writes ``DIR/<version>/`` with the signatures ``serving_default`` (uint8
images -> uint8 SR images) and ``upscale_bytes`` (PNG/JPEG bytes -> PNG
bytes); the logic lives in :mod:`drn_tf.export.tflite`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drn_tf.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["export", "saved-model", *sys.argv[1:]]))
