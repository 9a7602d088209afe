"""The model-resolution rules (:func:`drn_tf.models.resolve.resolve`) and the callers that use them."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

import drn_tf.models.drn as drn_mod
from drn_tf.models.resolve import (
    ModelError,
    NoTrainedModelError,
    Resolved,
    resolve,
    resolve_model,
)


@pytest.fixture
def no_bundled(monkeypatch):
    monkeypatch.setattr(drn_mod, "bundled_model_path", lambda name: None)


@pytest.fixture
def bundled_s_x2(monkeypatch, tmp_path, model_files):
    """An assets folder holding only drn_s_x2.keras (the fresh x2 model of the fixture)."""
    assets = tmp_path / "assets"
    assets.mkdir()
    shutil.copy(model_files[2], assets / "drn_s_x2.keras")
    monkeypatch.setattr(drn_mod, "ASSETS_DIR", assets)
    return assets / "drn_s_x2.keras"


def test_trained_weights_required_by_default(no_bundled):
    with pytest.raises(NoTrainedModelError, match="no trained model bundled for preset drn_s_x3; pass --model FILE") as e:
        resolve(preset="drn_s_x3")
    assert e.value.preset == "drn_s_x3" and isinstance(e.value, ModelError)
    with pytest.raises(NoTrainedModelError, match="preset drn_x4"):
        resolve(scale=4)  # the default preset drn_x{scale}
    with pytest.raises(NoTrainedModelError, match="preset drn_x2"):
        resolve_model()


def test_allow_untrained_gives_a_fresh_model_marked_untrained(no_bundled):
    r = resolve(preset="drn_s_x3", allow_untrained=True)
    assert isinstance(r, Resolved)
    assert r.trained is False and r.source == "fresh" and r.path is None
    assert r.model.scale == 3 and r.model.name == "drn_s_x3"
    assert "drn_s_x3" in r.description and "untrained" in r.description
    # the opt-out does not relax the other rules
    with pytest.raises(ModelError, match="preset drn_s_x3 is a x3 model, but x2 was asked for"):
        resolve(preset="drn_s_x3", scale=2, allow_untrained=True)
    with pytest.raises(ModelError, match="unknown preset"):
        resolve(preset="nope", allow_untrained=True)


def test_bundled_preset_is_trained_with_or_without_the_opt_out(bundled_s_x2):
    for allow in (False, True):
        r = resolve(preset="drn_s_x2", allow_untrained=allow)
        assert r.trained is True and r.source == "bundled" and r.path == bundled_s_x2
        assert r.description == "preset drn_s_x2, trained bundled weights (drn_s_x2.keras)"
        assert r.model.scale == 2
    with pytest.raises(ModelError, match="preset drn_s_x2 is a x2 model, but x4"):
        resolve(preset="drn_s_x2", scale=4)


def test_a_file_or_a_model_is_used_as_given(model_files, no_bundled):
    path = model_files[3]
    r = resolve(str(path), preset="drn_s_x2")  # the file wins over the preset
    assert r.trained is True and r.source == "file" and r.path == Path(path)
    assert str(path) in r.description and r.model.scale == 3
    assert resolve(path, scale=3).model.scale == 3
    with pytest.raises(ModelError, match=r"is a x3 model, but x2 was asked for \(--scale 2\)"):
        resolve(str(path), scale=2)
    with pytest.raises(ModelError, match="model file not found"):
        resolve(str(path.parent / "missing.keras"))
    same = resolve(r.model)
    assert same.model is r.model and same.trained is True and same.source == "object"
    with pytest.raises(ModelError, match="x3 model, but x4"):
        resolve(r.model, scale=4)


def test_cache_only_when_asked(model_files):
    path = str(model_files[2])
    assert resolve(path, cache=True).model is resolve(path, cache=True).model
    assert resolve_model(path) is resolve_model(path)  # resolve_model caches
    assert resolve(path).model is not resolve(path).model  # a caller that may change the model gets its own


def test_callers_follow_the_rules(no_bundled, capsys, tmp_path):
    """Export and benchmark opt out of trained weights and say so; training's init_from does not."""
    from drn_tf.bench.benchmark import load_benchmark_model
    from drn_tf.cli.commands.export import _load
    from drn_tf.export.common import ExportError, load_export_model
    from drn_tf.train.warmstart import init_from

    r = load_export_model(None, "drn_s_x2")
    assert r.trained is False and r.model.scale == 2
    with pytest.raises(ExportError, match="unknown preset"):
        load_export_model(None, "nope")
    assert load_benchmark_model("drn_s_x4").trained is False
    _load(SimpleNamespace(model=None, preset="drn_s_x2"))
    assert capsys.readouterr().err.strip() == (
        "drn export: warning: preset drn_s_x2, freshly initialised, untrained (no bundled weights)"
    )
    with pytest.raises(FileNotFoundError, match="preset drn_s_x2 has no bundled weights to start from"):
        init_from(r.model, "drn_s_x2")


def test_export_report_note_follows_the_flag_not_the_words():
    from drn_tf.bench.export_report import VariantResult, _report_markdown

    results = [VariantResult("keras", "Keras", psnr=30.0, ssim=0.9, max_diff=0.0, mean_diff=0.0, latency_ms=1.0)]
    tf = SimpleNamespace(__version__="2.x")
    args = (Path("Set5"), 2, (24, 24), 2, 1, 1, 5, "3.x", tf)
    note = "**The model is untrained**"
    assert note in _report_markdown(results, "some model", False, *args)
    assert note not in _report_markdown(results, "runs/untrained_idea/model.keras", True, *args)
