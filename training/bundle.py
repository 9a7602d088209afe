"""Turn trained weight files into a bundled ``.keras`` model for a preset.

Several weight files (checkpoints of the same preset) are averaged uniformly
(checkpoint averaging, as in SWA); one file is used as it is. The model is
rebuilt in float32 from the preset, so weights trained on JAX (with
mixed_bfloat16) load into the TensorFlow model.

    python training/bundle.py --preset drn_x2 -o assets/drn_x2.keras \\
        runs/gpu1/drn_x2.weights.h5 runs/gpu1/drn_x2.last.weights.h5 runs/gpu2/drn_x2.weights.h5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def bundle(preset: str, weight_files: list[str], out: str) -> None:
    import numpy as np

    from drn_tf import DRN
    from drn_tf.train import atomic_save_model

    weights = []
    for f in weight_files:
        model = DRN.from_preset(preset, load_weights=False)
        model.load_weights(f)
        weights.append(model.get_weights())
    averaged = [np.mean(np.stack(ws), axis=0).astype(ws[0].dtype) for ws in zip(*weights)]
    model = DRN.from_preset(preset, load_weights=False)
    model.set_weights(averaged)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_save_model(model, out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", required=True)
    p.add_argument("-o", "--out", required=True, help="output .keras file")
    p.add_argument("weights", nargs="+", help=".weights.h5 or .keras files of the preset (averaged if several)")
    args = p.parse_args(argv)
    bundle(args.preset, args.weights, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
