"""What every int8-variant script shares: the model (bundled drn_x2), the folder the results are written to
(the environment variable VARIANTS_DIR, default ./int8_variants_out) and the export of a variant of
``drn_tf.export.int8._QuantGraph``."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # this checkout's drn_tf
MODEL = ROOT / "assets" / "drn_x2.keras"
OUT = os.environ.get("VARIANTS_DIR", "int8_variants_out")
os.makedirs(OUT, exist_ok=True)


def export(name: str, block=None, pad_input=None, tap_ranges=None) -> None:
    """Convert the model to full int8 with ``_QuantGraph.block`` / ``.pad_input`` / ``_tap_ranges``
    replaced where given, write ``NAME.tflite`` into VARIANTS_DIR and print its ops."""
    import time

    from drn_tf.export import int8 as EI
    from drn_tf.export.tflite import convert_tflite, tflite_ops
    from drn_tf.models.drn import load_model

    if block is not None:
        EI._QuantGraph.block = block
    if pad_input is not None:
        EI._QuantGraph.pad_input = pad_input
    if tap_ranges is not None:
        EI._tap_ranges = tap_ranges
    t0 = time.time()
    flat = convert_tflite(load_model(str(MODEL)), "int8", calibration_count=EI.CALIBRATION_COUNT)
    with open(f"{OUT}/{name}.tflite", "wb") as fh:
        fh.write(flat)
    print(name, f"{time.time() - t0:.0f} s", tflite_ops(flat))
