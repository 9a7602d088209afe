"""Training/validation data: image reading, LR/HR pairs, the numpy sampler and tf.data."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from drn_tf.core.imageio import ImageReadError, read_image
from drn_tf.core.imresize import bicubic_degrade, imresize, modcrop
from drn_tf.core.tiling import dihedral, undihedral
from drn_tf.data.patches import PatchSampler, load_pairs
from drn_tf.data.tfdata import (
    OnTheFlySampler,
    bicubic_downscale_tf,
    dataset_from_sampler,
    make_train_dataset,
    make_val_dataset,
)


def undo(y: np.ndarray, k: int) -> np.ndarray:
    """Inverse of :func:`dihedral` (written independently: rotate back, then unflip)."""
    x = np.rot90(y, -(k % 4), axes=(-3, -2))
    return x[..., ::-1, :] if k >= 4 else x


def coord_image(h: int, w: int, tag: int) -> np.ndarray:
    """HR whose pixels say where they are: R = row, G = column, B = image tag."""
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = np.arange(h)[:, None]
    img[..., 1] = np.arange(w)[None, :]
    img[..., 2] = tag
    return img


def locate(hr_patch: np.ndarray):
    """(tag, top, left, k) of a coordinate-image patch, found from its pixels alone."""
    found = []
    for k in range(8):
        x = undo(hr_patch, k)
        r, g = x[..., 0].astype(int), x[..., 1].astype(int)
        if (np.diff(r, axis=0) == 1).all() and (np.diff(r, axis=1) == 0).all() and \
                (np.diff(g, axis=1) == 1).all() and (np.diff(g, axis=0) == 0).all():
            found.append((int(x[0, 0, 2]), int(r[0, 0]), int(g[0, 0]), k))
    assert len(found) == 1, found  # the 8 transforms of such a patch are all different
    return found[0]


@pytest.fixture(scope="module")
def coord_pairs():
    hrs = [coord_image(120, 96, 0), coord_image(90, 150, 40), coord_image(144, 144, 80)]
    return hrs


def _pairs(hrs, s):
    hrs = [modcrop(h, s) for h in hrs]
    return [bicubic_degrade(h, s) for h in hrs], hrs


def check_batch(lr_b, hr_b, lrs, hrs, s, p, seen_k=None):
    tags = {int(h[0, 0, 2]): i for i, h in enumerate(hrs)}
    assert lr_b.shape == (len(lr_b), p, p, 3) and hr_b.shape == (len(lr_b), p * s, p * s, 3)
    for lr_p, hr_p in zip(lr_b, hr_b):
        tag, top, left, k = locate(hr_p)
        i = tags[tag]
        assert top % s == 0 and left % s == 0  # the HR crop is the LR crop times s
        t, l = top // s, left // s
        np.testing.assert_array_equal(hr_p, dihedral(hrs[i][top : top + p * s, left : left + p * s], k))
        np.testing.assert_array_equal(lr_p, dihedral(lrs[i][t : t + p, l : l + p], k))
        if seen_k is not None:
            seen_k.add(k)


def test_undo_inverts_dihedral_and_the_8_are_distinct(rng):
    x = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    outs = [dihedral(x, k) for k in range(8)]
    for k in range(8):
        np.testing.assert_array_equal(undo(outs[k], k), x)
    assert len({o.tobytes() + bytes(o.shape) for o in outs}) == 8


def test_dihedral_of_a_batch_is_that_of_each_image_and_undihedral_inverts_it(rng):
    """One implementation for the sampler (one image) and the self-ensemble (a batch)."""
    batch = rng.integers(0, 256, (3, 5, 7, 2), dtype=np.uint8)
    for k in range(8):
        out = dihedral(batch, k)
        for i in range(3):
            np.testing.assert_array_equal(out[i], dihedral(batch[i], k))
            np.testing.assert_array_equal(undihedral(dihedral(batch[i], k), k), batch[i])
        np.testing.assert_array_equal(undihedral(out, k), batch)
        np.testing.assert_array_equal(undo(out[1], k), batch[1])


@pytest.mark.parametrize("s", [2, 3])
def test_numpy_sampler_pairs_are_aligned_crops(coord_pairs, s):
    lrs, hrs = _pairs(coord_pairs, s)
    p = 12
    sampler = PatchSampler(lrs, hrs, s, patch_size=p, batch_size=32, steps_per_epoch=10, seed=5)
    seen_k = set()
    for i in range(4):
        lr_b, hr_b = sampler.batch_uint8(i)
        check_batch(lr_b, hr_b, lrs, hrs, s, p, seen_k)
        lr_f, hr_f = sampler.batch(i)  # the float batch is the same patches / 255
        np.testing.assert_array_equal(lr_f, lr_b.astype(np.float32) * np.float32(1 / 255))
        np.testing.assert_allclose(hr_f * 255, hr_b, atol=1e-4)
    assert seen_k == set(range(8))  # every flip/rotation occurs


def test_sampler_determinism(coord_pairs):
    lrs, hrs = _pairs(coord_pairs, 2)
    a = PatchSampler(lrs, hrs, 2, patch_size=12, batch_size=8, seed=1)
    b = PatchSampler(lrs, hrs, 2, patch_size=12, batch_size=8, seed=1)
    c = PatchSampler(lrs, hrs, 2, patch_size=12, batch_size=8, seed=2)
    np.testing.assert_array_equal(a.batch_uint8(3, 1)[1], b.batch_uint8(3, 1)[1])
    assert not np.array_equal(a.batch_uint8(3, 1)[1], c.batch_uint8(3, 1)[1])
    assert not np.array_equal(a.batch_uint8(3, 1)[1], a.batch_uint8(3, 2)[1])  # epochs differ
    noaug = PatchSampler(lrs, hrs, 2, patch_size=12, batch_size=16, seed=1, augment=False)
    assert {locate(h)[3] for h in noaug.batch_uint8(0)[1]} == {0}


@pytest.mark.parametrize("workers", [0, 3])
def test_sampler_in_keras_gives_the_same_batches_with_worker_threads(coord_pairs, workers):
    # training/train_gpu.py --workers: keras cuts batches in threads ahead of the step; order and epochs must hold
    import keras

    lrs, hrs = _pairs(coord_pairs, 2)
    kw = {"workers": workers, "use_multiprocessing": False} if workers else {}
    sampler = PatchSampler(lrs, hrs, 2, patch_size=12, batch_size=4, steps_per_epoch=6, seed=3, **kw)
    inp = keras.Input((12, 12, 3))
    identity = keras.Model(inp, keras.layers.Identity()(inp))
    for epoch in range(2):  # predict ends with on_epoch_end: the second call sees epoch 1
        seen = identity.predict(sampler, verbose=0)
        expected = np.concatenate([sampler.batch(i, epoch)[0] for i in range(6)])
        np.testing.assert_array_equal(seen, expected)
    assert sampler.epoch == 2


def test_tfdata_pairs_are_aligned_and_equal_the_sampler(coord_pairs):
    s, p = 2, 12
    lrs, hrs = _pairs(coord_pairs, s)
    ds, sampler = make_train_dataset(None, s, pairs=(lrs, hrs), patch_size=p, batch_size=8, steps_per_epoch=3,
                                     seed=7, return_sampler=True, num_steps=7)
    assert ds.element_spec[0].shape == (8, p, p, 3) and ds.element_spec[1].dtype == tf.float32
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == 7
    for g, (lr_b, hr_b) in enumerate(batches):
        want = sampler.batch(g % 3, epoch=g // 3)  # global batch g = (epoch, index)
        np.testing.assert_array_equal(lr_b, want[0])
        np.testing.assert_array_equal(hr_b, want[1])
        check_batch(np.rint(lr_b * 255).astype(np.uint8), np.rint(hr_b * 255).astype(np.uint8), lrs, hrs, s, p)
    # determinism: a fresh pipeline (parallel map) gives the same stream; another seed does not
    again = list(make_train_dataset(None, s, pairs=(lrs, hrs), patch_size=p, batch_size=8, steps_per_epoch=3,
                                    seed=7, num_steps=7, num_parallel_calls=4).as_numpy_iterator())
    for x, y in zip(batches, again):
        np.testing.assert_array_equal(x[1], y[1])
    other = next(iter(make_train_dataset(None, s, pairs=(lrs, hrs), patch_size=p, batch_size=8, seed=8)))
    assert not np.array_equal(other[1].numpy(), batches[0][1])
    # resuming at step 4 continues the same stream
    resumed = next(iter(make_train_dataset(None, s, pairs=(lrs, hrs), patch_size=p, batch_size=8,
                                           steps_per_epoch=3, seed=7, start_step=4)))
    np.testing.assert_array_equal(resumed[1].numpy(), batches[4][1])


def test_tfdata_sharding(coord_pairs):
    lrs, hrs = _pairs(coord_pairs, 2)
    sampler = PatchSampler(lrs, hrs, 2, patch_size=12, batch_size=4, steps_per_epoch=100, seed=3)
    shards = [list(dataset_from_sampler(sampler, num_shards=2, shard_index=k, num_steps=3, uint8=True)
                   .as_numpy_iterator()) for k in range(2)]
    for k in range(2):
        for t, (lr_b, hr_b) in enumerate(shards[k]):
            assert lr_b.dtype == np.uint8
            np.testing.assert_array_equal(hr_b, sampler.batch_uint8(2 * t + k)[1])  # global index 2t + k
    assert not np.array_equal(shards[0][0][1], shards[1][0][1])
    opts = dataset_from_sampler(sampler).options()
    assert opts.experimental_distribute.auto_shard_policy == tf.data.experimental.AutoShardPolicy.OFF
    # tf.distribute input context: per-replica batch of the global batch, pipeline id = shard
    ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=4)
    ds, smp = make_train_dataset(None, 2, pairs=(lrs, hrs), patch_size=12, batch_size=16, seed=3,
                                 steps_per_epoch=100, input_context=ctx, return_sampler=True)
    assert smp.batch_size == 4
    first = next(iter(ds))
    np.testing.assert_array_equal(first[0].numpy(), smp.batch(1)[0])
    with pytest.raises(ValueError):
        dataset_from_sampler(sampler, num_shards=2, shard_index=2)


def _write_folder(tmp_path, coord_pairs):
    folder = tmp_path / "hr"
    folder.mkdir()
    for i, hr in enumerate(coord_pairs):
        Image.fromarray(hr).save(folder / f"img{i}.png")
    (folder / "notes.png").write_text("this is not an image")
    (folder / "empty.png").write_bytes(b"")
    good = folder / "img0.png"
    (folder / "truncated.png").write_bytes(good.read_bytes()[:200])
    return folder


def test_unreadable_files_are_skipped_by_name_or_refused(tmp_path, coord_pairs):
    folder = _write_folder(tmp_path, coord_pairs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lrs, hrs, names = load_pairs(folder, 2, cache_dir=tmp_path / "cache")
    assert sorted(n.split("/")[-1] for n in names) == ["img0.png", "img1.png", "img2.png"]
    text = " ".join(str(w.message) for w in caught)
    for bad in ("notes.png", "empty.png", "truncated.png"):
        assert bad in text
    with pytest.raises(ImageReadError, match="empty.png|notes.png|truncated.png"):
        load_pairs(folder, 2, cache_dir=False, on_error="raise")
    with pytest.raises(ImageReadError, match="empty.png|notes.png|truncated.png"):
        make_train_dataset(folder, 2, patch_size=12, batch_size=4, cache_dir=False, on_error="raise")
    # the cached LR is what the protocol's bicubic gives, and the dataset runs on the rest
    np.testing.assert_array_equal(lrs[0], bicubic_degrade(modcrop(coord_pairs[0], 2), 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = make_train_dataset(folder, 2, patch_size=12, batch_size=4, cache_dir=tmp_path / "cache", num_steps=2)
    for lr_b, hr_b in ds.as_numpy_iterator():
        check_batch(np.rint(lr_b * 255).astype(np.uint8), np.rint(hr_b * 255).astype(np.uint8),
                    [bicubic_degrade(modcrop(h, 2), 2) for h in coord_pairs], [modcrop(h, 2) for h in coord_pairs],
                    2, 12)


def test_images_too_small_for_the_patch_are_skipped_in_one_warning(tmp_path, rng):
    for i, side in enumerate((40, 18, 16, 30)):
        Image.fromarray(rng.integers(0, 256, (side, side + 3, 3), dtype=np.uint8)).save(tmp_path / f"im{i}.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lrs, _, names = load_pairs(tmp_path, 2, cache_dir=False, min_lr_size=10)
    assert sorted(Path(n).name for n in names) == ["im0.png", "im3.png"]
    assert [lr.shape[:2] for lr in lrs] == [(20, 21), (15, 16)]  # files in sorted order: im0, im3
    (warning,) = [str(w.message) for w in caught]
    # named as too small (not unreadable), with the files' own sizes and the size needed
    assert "unreadable" not in warning and "too small for the patch (WxH < 20x20" in warning
    assert "2 of 4" in warning and "im1.png (21x18)" in warning and "im2.png (19x16)" in warning
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(FileNotFoundError, match=r"no usable images .*\(5 images: 1 unreadable, 4 too small for the "
                                                r"patch \(WxH < 42x42\)\)"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load_pairs(tmp_path, 2, cache_dir=False, min_lr_size=21)


def test_a_skipped_image_is_reported_once(tmp_path, rng, caplog, capsys):
    """One warning per skipped file, not also a log record (the CLI printed both)."""
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with warnings.catch_warnings(record=True) as caught, caplog.at_level("INFO"):
        warnings.simplefilter("always")
        load_pairs(tmp_path, 2, cache_dir=False)
    assert [str(w.message) for w in caught] == [f"skipping unreadable image: {tmp_path / 'bad.png'}: "
                                                "not an image file PIL can read"]
    assert [r.getMessage() for r in caplog.records] == []
    assert capsys.readouterr().err == ""


def test_an_unwritable_lr_cache_is_warned_about_once_and_leaves_no_temporary_file(tmp_path, rng, monkeypatch):
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(tmp_path / f"im{i}.png")
    cache = tmp_path / "cache"
    import drn_tf.core.utils

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(drn_tf.core.utils.os, "fsync", full)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lrs, _, _ = load_pairs(tmp_path, 2, cache_dir=cache)
    assert len(lrs) == 3
    assert [str(w.message) for w in caught] == [f"LR cache {cache} not used: No space left on device"]
    assert list(cache.iterdir()) == []


def test_image_modes_convert_to_rgb_the_same_way(tmp_path, rng):
    rgb = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (20, 24), dtype=np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    rgba = np.dstack([rgb, rng.integers(0, 256, (20, 24), dtype=np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(rgb).quantize(64).save(tmp_path / "palette.png")
    g16 = (grey.astype(np.uint16) * 257 + rng.integers(0, 200, grey.shape)).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "grey16.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = read_image(tmp_path / "grey.png", mode="rgb")
        assert g.shape == (20, 24, 3) and (g == grey[..., None]).all()
        assert read_image(tmp_path / "grey.png").shape == (20, 24, 1)  # "keep": single channel
        np.testing.assert_array_equal(read_image(tmp_path / "rgba.png", mode="rgb"), rgb)  # alpha dropped
        with Image.open(tmp_path / "palette.png") as im:
            np.testing.assert_array_equal(read_image(tmp_path / "palette.png", mode="rgb"), np.asarray(im.convert("RGB")))
        g16_read = read_image(tmp_path / "grey16.png", mode="rgb")
        assert g16_read.dtype == np.uint8
        np.testing.assert_array_equal(g16_read[..., 0], np.floor(g16 / 65535 * 255 + 0.5).astype(np.uint8))
        # load_pairs (training) uses exactly these conversions
        _, hrs, names = load_pairs(tmp_path, 2, cache_dir=False)
    for hr, name in zip(hrs, names):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r".*grey16\.png: I;16 image converted to 8 bits")  # checked above
            np.testing.assert_array_equal(hr, modcrop(read_image(name, mode="rgb"), 2))


def test_val_dataset(tmp_path, set5):
    ds = make_val_dataset(set5, 3)
    assert int(ds.cardinality()) == 5
    lrs, hrs, _ = load_pairs(set5, 3, cache_dir=tmp_path)
    for (lr, hr), lr0, hr0 in zip(ds.as_numpy_iterator(), lrs, hrs):
        assert lr.shape == (1,) + lr0.shape and hr.shape == (1,) + hr0.shape
        np.testing.assert_allclose(lr[0] * 255, lr0, atol=1e-3)
        np.testing.assert_allclose(hr[0] * 255, hr0, atol=1e-3)


def test_model_evaluate_on_the_val_dataset_gives_the_protocol_numbers_grey_included(fresh_drn_s, set14):
    # Set14 has a grey image (bridge): model.evaluate with the Keras metrics must equal drn evaluate
    import keras

    from drn_tf.inference.evaluation import evaluate_folder
    from drn_tf.models.metrics import YPSNR, YSSIM

    keras.utils.set_random_seed(0)
    model = fresh_drn_s(3)  # untrained: any deterministic model will do
    ds = make_val_dataset(set14, 3)
    shapes = [hr.shape[-1] for _, hr in ds.as_numpy_iterator()]
    assert 1 in shapes and 3 in shapes  # the set mixes grey and colour
    model.compile(loss="mae", metrics=[YPSNR(border=3), YSSIM(border=3)])
    got = model.evaluate(ds, verbose=0, return_dict=True)
    want = evaluate_folder(set14, 3, model, progress=False)
    assert got["psnr_y"] == pytest.approx(want.psnr, abs=2e-3)
    assert got["ssim_y"] == pytest.approx(want.ssim, abs=2e-5)


@pytest.mark.parametrize("s", [2, 4])
def test_on_the_fly_lr_equals_cached_crops(coord_pairs, rng, s):
    # the measured alternative (LR made per patch, numpy or TF) gives the cached crops exactly
    hr = modcrop(rng.integers(0, 256, (96, 120, 3), dtype=np.uint8), s)
    lr = bicubic_degrade(hr, s)
    sampler = PatchSampler([lr], [hr], s, patch_size=8, batch_size=6, seed=0)
    otf = OnTheFlySampler(sampler)
    want = np.stack([lr[sp.top : sp.top + 8, sp.left : sp.left + 8] for sp in sampler.specs(0, 0)])
    np.testing.assert_array_equal(otf.lr_numpy(0), want)
    np.testing.assert_array_equal(otf.lr_tf(0), want)
    np.testing.assert_array_equal(bicubic_downscale_tf(hr[None], s).numpy()[0], imresize(hr, 1 / s))


@pytest.mark.slow  # a subprocess that imports TensorFlow: ~10-20 s on 2 busy cores
def test_live_iterator_at_exit_does_not_hang(tmp_path):
    # an iterator still alive when the interpreter exits used to hang the process in
    # Py_FinalizeEx (tf.data prefetch thread waiting on a Python call); tfdata frees
    # such iterators from an atexit hook. The hang is a race: without the hook this
    # script hung in 3 of 6 runs (2-core CPU), with it in none of 6.
    import subprocess
    import sys

    script = tmp_path / "live_iterator.py"
    script.write_text(
        "import numpy as np\n"
        "from drn_tf.data.patches import PatchSampler\n"
        "from drn_tf.data.tfdata import dataset_from_sampler, make_val_dataset\n"
        "rng = np.random.default_rng(0)\n"
        "hrs = [rng.integers(0, 256, (200, 200, 3), dtype=np.uint8) for _ in range(3)]\n"
        "lrs = [h[::2, ::2].copy() for h in hrs]\n"
        "it = iter(dataset_from_sampler(PatchSampler(lrs, hrs, 2, 48, 16, 10**6), num_parallel_calls=None))\n"
        "for _ in range(20):\n"
        "    next(it)\n"
        "val = iter(make_val_dataset(None, 2, pairs=(lrs, hrs)))\n"
        "next(val)\n"
        "print('finished', flush=True)\n"
    )
    env = dict(__import__("os").environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "finished" in proc.stdout
