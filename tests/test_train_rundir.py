"""The run directory's epoch end (:func:`drn_tf.train.rundir.commit_epoch`) when a write fails: no file of the
failed epoch outlives it, the committed ``state.json`` stays as it was. No training, no Keras."""

from __future__ import annotations

import errno

import pytest

import drn_tf.core.utils
from drn_tf.train import rundir, state


def _commit(run, epoch, improved=True, best_file=None):
    return rundir.commit_epoch(run, epoch=epoch, step=5 * epoch, model_file=b"model %d" % epoch,
                               weights_file=b"weights %d" % epoch, improved=improved, best_psnr=30.0 + epoch,
                               best_epoch=epoch, best_file=best_file, wall_s=1.0, backend="tensorflow", extra={},
                               keep=2, need=1000)


def _disk_full_at(monkeypatch, name):
    """The disk is full when ``name`` is written (the write function raising ENOSPC, as on a real full disk)."""
    real = drn_tf.core.utils.write_atomic

    def write_atomic(path, data, **kw):
        if path.name == name:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data, **kw)

    monkeypatch.setattr(drn_tf.core.utils, "write_atomic", write_atomic)


def _files(run):
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())


@pytest.mark.parametrize("full_at", ["last.keras", "ckpt-000002.weights.h5", "state.json"])
def test_a_full_disk_at_an_epoch_end_leaves_no_file_the_committed_state_does_not_name(tmp_path, monkeypatch,
                                                                                     full_at):
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    first = _commit(run, 1)
    committed = (run / "checkpoint" / "state.json").read_text()
    before = _files(run)
    _disk_full_at(monkeypatch, full_at)
    with pytest.raises(state.DiskSpaceError, match=f"{full_at}: no space left on device"):
        _commit(run, 2, best_file=first["best_file"])
    assert (run / "checkpoint" / "state.json").read_text() == committed
    left = [f for f in _files(run) if f.startswith("checkpoint/")]
    assert left == [f for f in before if f.startswith("checkpoint/")]  # no best-000002.keras, no ckpt-000002
    assert [f for f in _files(run) if ".tmp" in f] == []
    monkeypatch.undo()
    assert _commit(run, 2, best_file=first["best_file"])["best_file"] == "best-000002.keras"  # the rerun's epoch


def test_a_failed_first_epoch_end_leaves_an_empty_checkpoint_folder(tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    _disk_full_at(monkeypatch, "state.json")
    with pytest.raises(state.DiskSpaceError):
        _commit(run, 1)
    assert list((run / "checkpoint").iterdir()) == [] and rundir.read_state(run) is None


def test_an_interrupt_mid_epoch_end_removes_the_epochs_files_too(tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    first = _commit(run, 1)
    real = drn_tf.core.utils.write_atomic

    def write_atomic(path, data, **kw):
        if path.name == "state.json":
            raise KeyboardInterrupt
        return real(path, data, **kw)

    monkeypatch.setattr(drn_tf.core.utils, "write_atomic", write_atomic)
    with pytest.raises(KeyboardInterrupt):
        _commit(run, 2, best_file=first["best_file"])
    assert sorted(p.name for p in (run / "checkpoint").iterdir()) == ["best-000001.keras", "ckpt-000001.weights.h5",
                                                                      "state.json"]


def test_a_failed_start_removes_only_the_folders_it_made_and_never_a_checkpoint(tmp_path):
    run = tmp_path / "a" / "b" / "run"
    created = rundir.missing_folders(run)
    assert created == [run, run.parent, run.parent.parent]
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("x")
    (run / "checkpoint").mkdir()
    assert rundir.remove_failed_start(run, created) and not (tmp_path / "a").exists()

    run.mkdir(parents=True)
    (tmp_path / "a" / "mine.txt").write_text("x")  # a parent that holds something else stays
    assert rundir.remove_failed_start(run, created) and not run.parent.exists() and (tmp_path / "a").is_dir()

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "config.yaml").write_text("x")
    assert rundir.missing_folders(existing) == []
    assert not rundir.remove_failed_start(existing, []) and (existing / "config.yaml").exists()

    with_ckpt = tmp_path / "ckpt"
    created = rundir.missing_folders(with_ckpt)
    (with_ckpt / "checkpoint").mkdir(parents=True)
    (with_ckpt / "checkpoint" / "ckpt-000001.weights.h5").write_bytes(b"w")
    assert not rundir.remove_failed_start(with_ckpt, created) and (with_ckpt / "checkpoint").is_dir()

    with_model = tmp_path / "model"  # the first epoch end wrote last.keras, then its state.json failed
    created = rundir.missing_folders(with_model)
    (with_model / "checkpoint").mkdir(parents=True)
    (with_model / "last.keras").write_bytes(b"m")
    assert not rundir.remove_failed_start(with_model, created) and (with_model / "last.keras").is_file()
