"""Train DRN with TensorFlow: the same as ``drn train`` (see ``drn train --help``).

    python training/train.py --config training/configs/drn_x2.yaml [--out RUN_DIR] [--set sec.key=value ...]

The engine is :mod:`drn_tf.train.engine` (TensorFlow or JAX, by ``KERAS_BACKEND``);
``training/gpu_session.sh`` runs it on a GPU host with JAX only (no TensorFlow, no internet access).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drn_tf.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
