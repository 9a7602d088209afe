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

    monkeypatch.setattr("drn_tf.core.imageio.read_image", no_decoding)
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


def test_rerunning_a_folder_job_says_once_that_outputs_exist(tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / f"{name}.png")
        (out / f"{name}_x2.png").write_bytes(b"done")
    assert main(["upscale", str(src), "-o", str(out), "--scale", "2"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "3 outputs exist" in errors[0] and "--skip-existing" in errors[0]


@pytest.mark.parametrize("argv", [["--crf", "70"], ["--crf", "20", "--lossless"], ["--width", "0"]])
def test_bad_video_and_size_options_are_argument_errors(tmp_path, capsys, argv):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), *argv]) == 2
