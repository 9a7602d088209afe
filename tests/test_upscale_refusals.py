"""Refusals said in one line: a huge header before decoding, a file where a folder is needed,
outputs that exist already (said once for a folder job)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from drn_tf.cli.main import main


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def test_a_header_claiming_12000x12000_is_refused_before_decoding(tmp_path, capsys, model_files, monkeypatch):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 12000, 12000, 8, 2, 0, 0, 0))
                     + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b""))
    assert bomb.stat().st_size < 200

    def no_decoding(*a, **k):
        raise AssertionError("decoded")

    # every module holding read_image, all imported before any is patched: a module first imported under
    # the patch would keep the patched function after the test
    import importlib

    holders = [importlib.import_module(m) for m in ("drn_tf.core.imageio", "drn_tf.core.protocol",
                                                     "drn_tf.data.patches")]
    for holder in holders:
        monkeypatch.setattr(holder, "read_image", no_decoding)
    monkeypatch.setattr(Image.Image, "load", no_decoding)
    rc = main(["upscale", str(bomb), "--model", str(model_files[2]), "--runtime", "keras"])
    err = capsys.readouterr().err
    assert rc == 1 and "bomb.png" in err and "over the limit" in err, err


def test_a_file_where_a_folder_is_needed_is_one_clear_line(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in" / "a.png")
    (tmp_path / "notadir").write_text("x")
    assert main(["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "notadir")]) == 2
    err = capsys.readouterr().err.strip()
    assert "notadir is a file, not a folder" in err and "File exists" not in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("argv", [["--crf", "70"], ["--crf", "20", "--lossless"], ["--width", "0"]])
def test_bad_video_and_size_options_are_argument_errors(tmp_path, capsys, argv):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), *argv]) == 2


def _no_backend(monkeypatch):
    """Starting TensorFlow fails the test: the refusal must come before it."""
    import drn_tf.models.backend

    def boom(*a, **k):
        raise AssertionError("TensorFlow was started before the refusal")

    monkeypatch.setattr(drn_tf.models.backend, "import_backend_quietly", boom)


def _read_only(path, monkeypatch):
    """``path`` read-only for this user (root ignores modes: there os.access is told so)."""
    import os

    path.chmod(0o555 if path.is_dir() else 0o444)
    if os.geteuid() == 0:
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **k: False if (mode & os.W_OK and os.path.realpath(p)
                                                                          == os.path.realpath(path)) else real(p, mode, **k))


def test_two_files_into_a_file_where_a_folder_is_needed(tmp_path, capsys):
    for name in ("a", "b"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / f"{name}.png")
    (tmp_path / "notadir").write_text("x")
    assert main(["upscale", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "notadir")]) == 2
    err = capsys.readouterr().err.strip()
    assert "notadir is a file, not a folder" in err and "File exists" not in err and len(err.splitlines()) == 1


def test_a_glob_matching_nothing_makes_no_output_folder(tmp_path, capsys):
    rc = main(["upscale", str(tmp_path / "nothing*.png"), "-o", str(tmp_path / "out")])
    assert rc == 1 and "no files match" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_rerun_says_once_that_outputs_exist_and_is_not_a_failure_but_exits_1(tmp_path, capsys, monkeypatch):
    """Rerunning a folder job: outputs that exist are said once (one error line suggesting --skip-existing) and
    counted apart from failures; exit 1: they were not written."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / f"{name}.png")
        (out / f"{name}_x2.png").write_bytes(b"done")
    _no_backend(monkeypatch)  # nothing is left to do: TensorFlow never starts
    assert main(["upscale", str(src), "-o", str(out), "--scale", "2"]) == 1
    err = capsys.readouterr().err
    assert "failed" not in err and "3 not redone (output exists)" in err, err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "3 outputs exist" in errors[0] and "--skip-existing" in errors[0]


def test_a_read_only_folder_beside_the_inputs_is_refused_before_tensorflow(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / f"{name}.png")
    _read_only(folder, monkeypatch)
    _no_backend(monkeypatch)
    try:
        rc = main(["upscale", str(folder), "--scale", "2"])
    finally:
        folder.chmod(0o755)
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert rc == 1 and errors == [f"drn upscale: error: 2 outputs cannot be written: folder {folder} is not writable"]


def test_a_read_only_output_file_is_refused_before_tensorflow(tmp_path, capsys, monkeypatch):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "out.png").write_bytes(b"keep")
    _read_only(tmp_path / "out.png", monkeypatch)
    _no_backend(monkeypatch)
    rc = main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "out.png"), "--scale", "2", "--overwrite"])
    err = capsys.readouterr().err
    assert rc == 1 and f"output {tmp_path / 'out.png'} is read-only" in err, err
    assert (tmp_path / "out.png").read_bytes() == b"keep"


def test_evaluate_into_a_file_where_a_folder_is_needed(tmp_path, capsys):
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "hr.png")
    (tmp_path / "afile").write_text("x")
    for option, target in (("--json", "afile/res.json"), ("--save-images", "afile/images")):
        rc = main(["evaluate", "--data", str(tmp_path / "hr.png"), "--method", "bicubic", "--scale", "2",
                   option, str(tmp_path / target)])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and "afile is a file, not a folder" in err and "File exists" not in err, err
        assert len(err.splitlines()) == 1
