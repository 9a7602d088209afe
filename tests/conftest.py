"""Shared fixtures. The benchmark/training data lives beside the checkout in
``../shared/data`` (also in CI); ``DRN_DATA`` overrides the location."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from paths import DATA

# `--runtime auto` by the CPU-flag rule in tests (no measuring, no conversions, the same runtime on every
# run); tests/test_autoselect.py tests the measuring with fake timings.
os.environ.setdefault("DRN_AUTO_RUNTIME", "rule")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "benchmark" / "Set5").is_dir():
        pytest.fail(f"benchmark data not found at {DATA} (set DRN_DATA)")
    return DATA


@pytest.fixture(scope="session")
def set5(data_dir) -> Path:
    return data_dir / "benchmark" / "Set5"


@pytest.fixture(scope="session")
def set14(data_dir) -> Path:
    return data_dir / "benchmark" / "Set14"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def model_files(tmp_path_factory) -> dict:
    """Freshly initialised (untrained) ``drn_s`` models saved as ``.keras``, by scale."""
    from drn_tf.models.drn import DRN

    d = tmp_path_factory.mktemp("fresh_models")
    paths = {}
    for s in (2, 3, 4):
        paths[s] = d / f"drn_s_x{s}.keras"
        DRN.from_preset(f"drn_s_x{s}", load_weights=False).save(paths[s])
    return paths


@pytest.fixture(scope="session")
def fresh_drn_s():
    """``fresh_drn_s(scale=2, **overrides)``: a freshly initialised (untrained) ``drn_s`` model, new random
    weights on every call: the tiny model most tests need."""
    from drn_tf.models.drn import DRN

    def make(scale: int = 2, **overrides):
        return DRN.from_preset(f"drn_s_x{scale}", load_weights=False, **overrides)

    return make
