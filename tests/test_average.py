"""``drn average``: the command over :func:`drn_tf.train.warmstart.average_models` (whose run-directory
and checkpoint cases tests/test_train.py covers)."""

from __future__ import annotations

import numpy as np
import pytest

from drn_tf.cli.main import main
from drn_tf.models.drn import load_model


@pytest.fixture(scope="module")
def two_models(fresh_drn_s, tmp_path_factory):
    folder = tmp_path_factory.mktemp("average")
    paths = []
    for seed in (1, 2):
        import keras

        keras.utils.set_random_seed(seed)
        m = fresh_drn_s(2)
        m(np.zeros((1, 8, 8, 3), np.float32))
        paths.append(folder / f"m{seed}.keras")
        m.save(paths[-1])
    return paths


def test_average_writes_the_mean_of_the_weights(two_models, tmp_path, capsys):
    out = tmp_path / "avg.keras"
    assert main(["average", "-o", str(out), *map(str, two_models)]) == 0
    assert "the mean of 2 checkpoints" in capsys.readouterr().out
    a, b = (load_model(p).get_weights() for p in two_models)
    avg = load_model(out).get_weights()
    assert any(not np.allclose(x, y) for x, y in zip(a, b))  # the two differ, so the mean says something
    for x, y, m in zip(a, b, avg):
        np.testing.assert_allclose(m, (x.astype(np.float64) + y) / 2, rtol=1e-6, atol=1e-7)


def test_average_errors_are_one_line(fresh_drn_s, two_models, tmp_path, capsys):
    other = tmp_path / "x3.keras"
    m = fresh_drn_s(3)
    m(np.zeros((1, 8, 8, 3), np.float32))
    m.save(other)
    junk = tmp_path / "junk.keras"
    junk.write_text("not a model")
    exists = tmp_path / "exists.keras"
    exists.write_bytes(b"keep")
    cases = [
        ([str(two_models[0]), str(other)], tmp_path / "a.keras", "not the architecture of"),
        ([str(junk)], tmp_path / "b.keras", "not a valid .keras model file"),
        ([str(tmp_path / "missing")], tmp_path / "c.keras", "no such file or run directory"),
        ([str(two_models[0])], exists, "output exists (pass --overwrite"),
        ([str(two_models[0])], tmp_path / "d.h5", "must be a .keras file"),
    ]
    for sources, out, message in cases:
        capsys.readouterr()
        assert main(["average", "-o", str(out), *sources]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("drn average: error: ") and message in err[0], err
    assert exists.read_bytes() == b"keep"
    assert not (tmp_path / "a.keras").exists() and not (tmp_path / "b.keras").exists()
