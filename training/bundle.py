"""Average checkpoints into a bundled ``.keras`` model: :func:`drn_tf.train.engine.average_models`.

Uniform weight averaging (as in SWA) of ``.keras`` files, a run's ``checkpoint/ckpt-N.weights.h5``
(its EMA weights when it kept one), whole run directories (their kept checkpoints) or, with
``--preset``, bare ``.weights.h5`` files; one source is copied as it is. The result is a float32
model, so weights trained on JAX (with mixed_bfloat16) load into the TensorFlow model.

    python training/bundle.py -o assets/drn_x2.keras runs/gpu/best.keras runs/gpu/last.keras runs/gpu
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", help="preset of bare .weights.h5 inputs (not needed for .keras files and runs)")
    p.add_argument("-o", "--out", required=True, help="output .keras file")
    p.add_argument("sources", nargs="+", help=".keras files, run directories or checkpoint .weights.h5 files")
    args = p.parse_args(argv)
    from drn_tf.train.engine import average_models

    files = average_models(args.sources, args.out, preset=args.preset)
    print(f"wrote {args.out}: the mean of {len(files)} checkpoints ({', '.join(map(str, files))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
