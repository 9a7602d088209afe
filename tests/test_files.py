"""One rule for which files of a folder are image inputs (:func:`drn_tf.core.imageio.is_image_name`),
the same in every folder walk: benchmark/training folders, ``drn upscale`` and ``drn beam``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drn_tf.core.imageio import is_image_name, list_images
from drn_tf.inference.files import expand_inputs

TREE = ["a.png", "sub/c.jpg", "sub/deeper/d.PNG", ".hidden.png", ".thumbnails/b.png", "sub/._c.jpg",
        "notes.txt", "sub/model.keras"]
IMAGES = ["a.png", "sub/c.jpg", "sub/deeper/d.PNG"]


@pytest.fixture
def folder(tmp_path):
    for rel in TREE:
        f = tmp_path / "in" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        if f.suffix.lower() in (".png", ".jpg"):
            Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(f, format="PNG" if f.suffix.lower() == ".png" else "JPEG")
        else:
            f.write_text("x")
    return tmp_path / "in"


def test_the_rule():
    assert [r for r in TREE if is_image_name(r)] == IMAGES
    assert not is_image_name("") and is_image_name(Path("x/y.webp")) and not is_image_name(Path(".x/y.webp"))


def test_every_folder_walk_takes_the_same_files(folder):
    assert [str(f.relative_to(folder)) for f in list_images(folder)] == sorted(IMAGES)
    plan = expand_inputs([str(folder)])
    assert not plan.errors and sorted(str(j.rel) for j in plan.jobs) == sorted(IMAGES)
    assert [f.name for f in list_images(folder / ".hidden.png")] == [".hidden.png"]  # named directly: taken


def test_beam_layout_uses_the_rule(folder):
    pytest.importorskip("apache_beam")
    from drn_tf.inference.beam import Layout

    layout = Layout(output_dir=str(folder.parent / "out"), scale=2, base=str(folder))
    assert sorted(r for r in TREE if layout.wanted(str(folder / r))) == sorted(IMAGES)
