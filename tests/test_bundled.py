"""Every bundled model: loads with safe_mode=True, has its preset's parameter
count, and beats bicubic on Set5 by the margins below (measured here, by the
protocol, not read from a file)."""

from __future__ import annotations

import pytest

from drn_tf import DRN, bundled_model_path
from drn_tf.inference.evaluation import evaluate_folder
from drn_tf.models.analysis import count_params
from drn_tf.models.drn import load_model
from drn_tf.models.presets import PRESETS, get_preset

MARGIN_DB = {2: 2.0, 3: 1.5, 4: 1.0}
REQUIRED = ["drn_x2", "drn_x3", "drn_x4"]


@pytest.mark.parametrize("name", REQUIRED)
def test_main_presets_are_bundled(name):
    assert bundled_model_path(name) is not None, f"assets/{name}.keras is missing"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_bundled_model_quality(name, set5):
    path = bundled_model_path(name)
    if path is None:
        pytest.skip(f"no bundled model for {name}")
    config = get_preset(name)["config"]
    model = load_model(path)  # safe_mode=True
    assert isinstance(model, DRN)
    assert model.count_params() == count_params(config)
    assert model.get_config()["scale"] == config["scale"]
    # from_preset picks the bundled file up
    assert [w.shape for w in DRN.from_preset(name).weights] == [w.shape for w in model.weights]
    s = config["scale"]
    drn = evaluate_folder(set5, s, model)
    bicubic = evaluate_folder(set5, s, method="bicubic")
    assert drn.psnr - bicubic.psnr >= MARGIN_DB[s], (drn.psnr, bicubic.psnr)
    assert drn.ssim > bicubic.ssim
