"""Where the tests find the checkout and the data: one definition for every test module.

``DATA`` is ``$DRN_DATA`` when set, else ``../shared/data`` beside the checkout (as in CI)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("DRN_DATA", ROOT.parent / "shared" / "data"))
