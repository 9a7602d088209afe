"""`import drn_tf` loads nothing heavy; its public names load on first use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_loads_no_framework_and_names_load_lazily():
    code = (
        "import sys, drn_tf\n"
        "heavy = [m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert drn_tf.get_preset('drn_x2')['config']['scale'] == 2\n"
        "assert 'keras' not in sys.modules  # presets are plain dicts\n"
        "import keras\n"
        "assert keras.saving.get_registered_object('drn_tf>DRN') is None  # not registered before use\n"
        "cls = drn_tf.DRN  # first use registers it\n"
        "assert keras.saving.get_registered_object('drn_tf>DRN') is cls\n"
        "assert drn_tf.metrics.YPSNR.__name__ == 'YPSNR' and callable(drn_tf.tfdata.make_val_dataset)\n"
        "try:\n"
        "    drn_tf.nothing\n"
        "except AttributeError as e:\n"
        "    assert 'nothing' in str(e)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]
