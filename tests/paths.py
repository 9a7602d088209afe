"""Where the tests find the checkout, the data and the measurement scripts: one definition for every test
module.

``DATA`` is ``$DRN_DATA`` when set, else ``../shared/data`` beside the checkout (as in CI)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("DRN_DATA", ROOT.parent / "shared" / "data"))


def load_tool(name: str):
    """The script ``tools/NAME.py`` as a module (the tools import each other by name: ``tools/`` is on the
    path while it loads)."""
    folder = str(ROOT / "tools")
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(folder)
