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


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("drn average: error: ") and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture
def no_averaging(monkeypatch):
    import drn_tf.train.warmstart

    def fail(*a, **k):
        raise AssertionError("the checkpoints were read although the output cannot be written")

    monkeypatch.setattr(drn_tf.train.warmstart, "average_models", fail)


def test_an_unwritable_output_folder_is_refused_up_front_in_one_line(two_models, tmp_path, capsys, no_averaging,
                                                                     monkeypatch):
    import os

    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    (tmp_path / "dir.keras").mkdir()
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    real_access = os.access
    # a read-only folder, also for root (who may write in a folder of mode 0o555)
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: str(path) != str(ro) and real_access(path, mode, **kw))
    cases = [(blocker / "avg.keras", f"-o: cannot write {blocker / 'avg.keras'}: {blocker} is a file, not a folder"),
             (tmp_path / "dir.keras", f"-o: output {tmp_path / 'dir.keras'} is a folder"),
             (ro / "avg.keras", f"-o: cannot write {ro / 'avg.keras'}: folder {ro} is not writable"),
             (ro / "new" / "avg.keras", f"-o: cannot write {ro / 'new' / 'avg.keras'}: folder {ro} is not writable")]
    for out, message in cases:
        assert main(["average", "-o", str(out), *map(str, two_models)]) == 2
        line = _one_error_line(capsys)
        assert line == f"drn average: error: {message}", line
    assert not (ro / "new").exists()


def test_overwrite_never_replaces_a_source(two_models, tmp_path, capsys, no_averaging):
    import shutil

    src = tmp_path / "m.keras"
    shutil.copy(two_models[0], src)
    before = src.read_bytes()
    (tmp_path / "link.keras").symlink_to(src)
    (tmp_path / "hard.keras").hardlink_to(src)
    for out in (src, tmp_path / "." / "m.keras", tmp_path / "link.keras", tmp_path / "hard.keras"):
        assert main(["average", "--overwrite", "-o", str(out), str(two_models[1]), str(src)]) == 2
        line = _one_error_line(capsys)
        assert f"-o {out} is the source {src} itself" in line, line
    assert src.read_bytes() == before


def test_a_pattern_that_matches_nothing_creates_no_output_folder(two_models, tmp_path, capsys):
    out = tmp_path / "new" / "sub" / "avg.keras"
    assert main(["average", "-o", str(out), str(tmp_path / "runs" / "*.keras")]) == 2
    assert "no file matches this pattern" in _one_error_line(capsys)
    assert not (tmp_path / "new").exists()
