"""The int8 saturation guard (drn_tf.inference.saturation): the int8 file's saturation maps, the blocks they
flag, and the float rerun of those regions, which must equal the float model's whole-image output there."""

import warnings

import numpy as np
import pytest

from drn_tf.inference import saturation as S
from paths import load_tool


def _box_model(radius: int, scale: int):
    """A stand-in float model with a receptive radius: a (2r+1)^2 box mean (edge-replicated at the image's
    borders, as a network's padding is fixed there) upscaled by pixel repetition."""
    def run(lr):
        x = np.pad(lr.astype(np.float64), ((radius, radius), (radius, radius), (0, 0)), mode="edge")
        h, w = lr.shape[:2]
        out = sum(x[i : i + h, j : j + w] for i in range(2 * radius + 1) for j in range(2 * radius + 1))
        out /= (2 * radius + 1) ** 2
        return np.repeat(np.repeat(out, scale, axis=0), scale, axis=1).astype(np.float32)

    return run


def test_block_scores_count_clipped_channels_per_block():
    a = np.zeros((1, 2, 3, 4), np.uint8)
    a[0, 0, 0, :2] = 255  # half the channels clipped in block (0, 0)
    b = np.zeros((1, 2, 3, 8), np.uint8)
    b[0, 1, 2, :] = 255  # every channel in block (1, 2)
    b[0, 0, 0, 0] = 254  # one level below the top is not clipped
    scores = S.block_scores([a, b])
    assert scores.shape == (2, 3)
    np.testing.assert_allclose(scores, [[0.25, 0, 0], [0, 0, 0.5]])
    with pytest.raises(ValueError):
        S.block_scores([])


def test_flagged_blocks_grow_by_one_block():
    scores = np.zeros((5, 6))
    scores[2, 3] = 0.5
    scores[0, 0] = S.THRESHOLD  # not above the threshold
    mask = S.flagged_blocks(scores)
    expected = np.zeros((5, 6), bool)
    expected[1:4, 2:5] = True
    np.testing.assert_array_equal(mask, expected)


def test_float_regions_are_the_boxes_of_connected_flagged_blocks():
    mask = np.zeros((5, 7), bool)  # blocks of 4 px; image 19 x 27 (partial last blocks)
    mask[0, 0] = mask[1, 1] = True  # diagonal neighbours: one group
    mask[3:5, 5:7] = True  # a group at the partial corner
    mask[4, 2] = True  # alone
    regions = S.float_regions(mask, block=4, shape=(19, 27))
    assert sorted(regions) == [(0, 8, 0, 8), (12, 19, 20, 27), (16, 19, 8, 12)]
    assert S.float_regions(np.zeros((3, 3), bool), 4, (12, 12)) == []


def test_float_plan_whole_image_local_regions_or_nothing():
    shape, scores = (80, 96), np.zeros((10, 12))
    assert S.float_plan(scores, 8, shape) == []
    scores[4, 5] = S.THRESHOLD * 2  # one hot block: it and its neighbours
    assert S.float_plan(scores, 8, shape) == [(24, 48, 32, 56)]
    spread = np.full((10, 12), S.IMAGE_THRESHOLD * 2)  # clipping a little everywhere: a structure image
    spread[:, 2:] = 0  # 2 columns of 12
    assert (spread > S.IMAGE_THRESHOLD).mean() < S.IMAGE_SHARE and S.float_plan(spread, 8, shape) == []
    spread[:, :] = S.IMAGE_THRESHOLD * 2
    assert S.float_plan(spread, 8, shape) == [(0, 80, 0, 96)]


@pytest.mark.parametrize("whole", [False, True])
def test_patched_regions_equal_the_whole_image_float_run(rng, monkeypatch, whole):
    """Each region is run with the receptive radius of context (clipped at the image's edges): its pixels are
    exactly the whole-image run's, wherever it lies; above WHOLE the image is run whole instead."""
    radius, scale = 3, 2
    run = _box_model(radius, scale)
    lr = rng.integers(0, 256, (37, 45, 3)).astype(np.uint8)
    reference = run(lr)
    sr = np.full(reference.shape, -1.0, np.float32)
    regions = [(0, 8, 0, 16), (16, 24, 8, 16), (32, 37, 40, 45)]
    if whole:
        monkeypatch.setattr(S, "WHOLE", 0.05)
    calls = []

    def counted(crop):
        calls.append(crop.shape)
        return run(crop)

    work = S.patch_float(sr, lr, regions, counted, scale, radius)
    if whole:
        assert calls == [lr.shape] and work == 37 * 45
        np.testing.assert_allclose(sr, reference, atol=1e-6)
        return
    assert len(calls) == 3 and work == sum(a * b for a, b, _ in calls)
    inside = np.zeros(reference.shape[:2], bool)
    for r0, r1, c0, c1 in regions:
        inside[r0 * scale : r1 * scale, c0 * scale : c1 * scale] = True
    np.testing.assert_allclose(sr[inside], reference[inside], atol=1e-6)
    assert (sr[~inside] == -1).all()  # nothing else touched


# ---------------------------------------------------------------- a real int8 file


@pytest.fixture(scope="module")
def guarded(fresh_drn_s):
    """A small random DRN, int8 ranges calibrated on smooth low-contrast images only (so full-contrast stripes
    clip), converted with and without saturation maps, and its float32 file."""
    from drn_tf.export import int8 as EI
    from drn_tf.export.tflite import convert_tflite

    model = fresh_drn_s(2)
    gen = np.random.default_rng(3)
    smooth = []
    for _ in range(6):
        y, x = np.mgrid[0:48, 0:48] / 48.0
        base = 0.5 + 0.08 * np.sin(2 * np.pi * (gen.random() * y + gen.random() * x))
        smooth.append(np.repeat(base[..., None], 3, axis=-1).astype(np.float32))
    saved = EI.STRUCTURE_WEIGHT
    EI.STRUCTURE_WEIGHT = 0.0
    try:
        ranges = EI.int8_ranges(model, smooth)
    finally:
        EI.STRUCTURE_WEIGHT = saved
    return {
        "model": model,
        "maps": convert_tflite(model, "int8", int8_ranges=ranges, saturation_maps=True),
        "plain": convert_tflite(model, "int8", int8_ranges=ranges),
        "float": convert_tflite(model, "float32"),
    }


def _stripes(h=40, w=48, period=4):
    row = ((np.arange(w) // (period // 2)) % 2 * 255).astype(np.uint8)
    return np.repeat(np.repeat(row[None, :, None], h, axis=0), 3, axis=2)


def _smooth(h=40, w=48):
    y, x = np.mgrid[0:h, 0:w]
    v = 128 + 12 * np.sin(x / 7.0) * np.cos(y / 9.0)
    return np.repeat(v[..., None], 3, axis=2).round().astype(np.uint8)


def test_saturation_maps_are_described_and_leave_the_image_alone(guarded):
    from drn_tf.export import int8 as EI
    from drn_tf.export.tflite_metadata import drn_metadata, read_metadata
    from drn_tf.inference.litert import LiteRTRuntime

    meta = drn_metadata(guarded["maps"])["saturation"]
    taps = EI.saturation_taps(EI.tap_names(guarded["model"]))
    # every convolution's output but the LFE's and the image's: one per block, one per group, the body's end
    config = guarded["model"].get_config()
    groups, blocks = config["num_groups"], config["num_blocks"]
    assert len(taps) == groups * (blocks + 1) + 1 and "lfe" not in taps and "output" not in taps
    assert meta["taps"] == taps and meta["block"] == EI.SATURATION_BLOCK and meta["format"] == EI.SATURATION_FORMAT
    assert "saturation" not in drn_metadata(guarded["plain"])
    outputs = read_metadata(guarded["maps"])["subgraphs"][0]["outputs"]
    assert [o["name"] for o in outputs] == ["sr_image"] + [f"saturation_{i:02d}" for i in range(len(taps))]
    rt, plain = LiteRTRuntime(guarded["maps"], guard=False), LiteRTRuntime(guarded["plain"])
    details = rt.interpreter.get_output_details()
    assert len(details) == 1 + len(taps) and rt.output["index"] == details[0]["index"]
    for image in (_stripes(), _smooth()):
        np.testing.assert_array_equal(rt.run(image[None]), plain.run(image[None]))  # the image output is the same
        maps = [rt.interpreter.get_tensor(d["index"]) for d in details[1:]]
        assert all(m.shape[1:3] == (5, 6) for m in maps)  # 40 x 48 in blocks of 8


def test_guard_reruns_clipped_regions_in_float_and_leaves_the_rest(guarded):
    from drn_tf.inference.litert import LiteRTRuntime

    float_rt = LiteRTRuntime(guarded["float"])
    opened = []

    def fallback():
        opened.append(1)
        return float_rt

    rt = LiteRTRuntime(guarded["maps"], fallback=fallback)
    alone = LiteRTRuntime(guarded["maps"], guard=False)
    smooth = _smooth()
    np.testing.assert_array_equal(rt.run_batch(smooth[None]), alone.run_batch(smooth[None]))
    assert rt.float_pixels == 0 and not opened  # nothing clipped: int8 only, the float file never opened

    stripes = _stripes()
    got, int8_only = rt.run_batch(stripes[None])[0], alone.run_batch(stripes[None])[0]
    reference = float_rt.run_batch(stripes[None])[0]
    assert opened == [1] and rt.float_pixels > 0
    assert np.abs(got - reference).mean() < 0.25 * np.abs(int8_only - reference).mean()
    assert np.abs(int8_only - reference).max() > 0.05  # int8 alone really clipped here
    # where the guard ran float, the pixels are the float model's whole-image output
    same = np.isclose(got, reference, atol=1e-5).all(axis=-1)
    assert same.mean() > 0.5


def test_without_a_fallback_clipping_is_reported_once(guarded):
    from drn_tf.inference.litert import LiteRTRuntime

    rt = LiteRTRuntime(guarded["maps"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rt.run_batch(_stripes()[None])
        rt.run_batch(_stripes()[None])
    messages = [str(w.message) for w in caught if "clipped" in str(w.message)]
    assert len(messages) == 1 and "float runtime" in messages[0]


def test_drn_upscale_reruns_a_checkerboard_in_float_and_says_so(tmp_path, capsys):
    """``drn upscale --runtime litert-int8`` on drn_s_x2 (the shipped files): a full-contrast checkerboard clips
    all over, so it comes out as the float32 file gives it, and the summary says how much ran in float; a
    smooth image stays int8 and the summary says nothing of it."""
    from PIL import Image

    from drn_tf.cli.main import main
    from drn_tf.core import patterns as P
    from drn_tf.models.drn import bundled_model_path

    if bundled_model_path("drn_s_x2") is None:
        pytest.skip("drn_s_x2 not bundled")
    lr, _ = P.structure_pairs(2, ["checker_6"])["checker_6"]
    Image.fromarray(lr).save(tmp_path / "checker.png")
    Image.fromarray(_smooth(60, 60)).save(tmp_path / "smooth.png")
    out = {}
    for runtime in ("litert", "litert-int8"):
        capsys.readouterr()
        assert main(["upscale", str(tmp_path / "checker.png"), "--preset", "drn_s_x2", "--runtime", runtime,
                     "-o", str(tmp_path / runtime)]) == 0
        out[runtime] = (np.asarray(Image.open(tmp_path / runtime / "checker_x2.png")), capsys.readouterr().out)
    np.testing.assert_array_equal(out["litert-int8"][0], out["litert"][0])
    assert "100% of the pixels ran in float32" in out["litert-int8"][1]
    assert "float32" not in out["litert"][1]
    assert main(["upscale", str(tmp_path / "smooth.png"), "--preset", "drn_s_x2", "--runtime", "litert-int8",
                 "-o", str(tmp_path / "s")]) == 0
    assert "float32" not in capsys.readouterr().out


def test_drn_upscale_counts_float_pixels_over_every_model_of_a_chain(tmp_path, capsys):
    """``drn upscale --outscale 8 --runtime litert-int8`` on drn_s_x2 runs drn_s_x2 then drn_s_x4: the summary's
    share of pixels run in float32 is over the pixels of both models (what each reran in float over what each
    ran), not the first model's alone. A smooth image with a checkerboard in one corner: the share differs
    between the first model and the chain."""
    from PIL import Image

    from drn_tf.cli.main import main
    from drn_tf.core import patterns as P
    from drn_tf.inference.outsize import upscale_to_size
    from drn_tf.inference.runtimes import load_runtime
    from drn_tf.models.drn import bundled_model_path

    if bundled_model_path("drn_s_x2") is None or bundled_model_path("drn_s_x4") is None:
        pytest.skip("drn_s_x2 / drn_s_x4 not bundled")
    checker, _ = P.structure_pairs(2, ["checker_6"])["checker_6"]
    image = _smooth(64, 64)
    image[:16, :16] = checker[:16, :16]
    Image.fromarray(image).save(tmp_path / "corner.png")
    assert main(["upscale", str(tmp_path / "corner.png"), "--preset", "drn_s_x2", "--runtime", "litert-int8",
                 "--outscale", "8", "-o", str(tmp_path / "out")]) == 0
    said = capsys.readouterr().out

    runtimes = {s: load_runtime(preset=f"drn_s_x{s}", runtime="litert-int8") for s in (2, 4)}
    before = {s: (rt.float_pixels, rt.pixels) for s, rt in runtimes.items()}
    upscale_to_size(image, runtimes.__getitem__, (512, 512), (2, 4))
    counts = {s: (rt.float_pixels - before[s][0], rt.pixels - before[s][1]) for s, rt in runtimes.items()}
    first = counts[2][0] / counts[2][1]
    chain = sum(f for f, _ in counts.values()) / sum(p for _, p in counts.values())
    assert counts[4][0] > 0 and f"{first:.0%}" != f"{chain:.0%}"  # the second model reran a share of its own
    assert f"; {chain:.0%} of the pixels ran in float32 (where int8 activations clipped)" in said


def test_the_summary_counts_a_runtime_watched_twice_from_its_first_watch():
    """A cached runtime handed out again (another group of inputs, or a chain's model of the run's own scale)
    is counted once, from when the run first watched it; what it ran before the run is not counted."""
    from types import SimpleNamespace

    from drn_tf.cli.commands.upscale.report import Tally

    runtime = SimpleNamespace(float_pixels=5, pixels=10)  # ran before this run
    tally = Tally()
    tally.watch(runtime)
    runtime.float_pixels, runtime.pixels = 6, 14
    tally.watch(runtime)
    runtime.float_pixels, runtime.pixels = 8, 20
    assert tally.float_share() == 3 / 10


def test_guard_rule_replay_pastes_float_where_the_chosen_taps_clipped():
    """tools/int8_guard_rule.py's replay: a block flagged by the chosen taps takes the float output (the loss
    against float is then 0); a clip only in a tap outside the set leaves the int8 error in place."""
    tool = load_tool("int8_guard_rule")

    def collected(clipping_tap):
        maps = np.zeros((2, 4, 4))
        maps[clipping_tap, 1, 1] = 0.5  # half the channels clipped in one block
        err_float = np.full((4, 4), 10.0)
        err_int8 = err_float.copy()
        err_int8[1, 1] = 1000.0  # the int8 error is there
        image = {"maps": maps, "err_int8": err_int8, "err_float": err_float, "lr_shape": (32, 32)}
        return {"taps": ["g0b0.conv", "g0b0.act"], "radius": 2, "images": {"Set5/a": image}}

    for tap_set in ("all", "convs"):
        loss, work, pixels = tool.replay(collected(0), tap_set, 0.03, 0.5, 0.9)["Set5/a"]
        assert loss == pytest.approx(0.0) and 0 < work < pixels == 32 * 32, tap_set  # the 3x3 blocks around it
    loss, work, _ = tool.replay(collected(1), "convs", 0.03, 0.5, 0.9)["Set5/a"]  # .act is not a mapped tap
    assert work == 0 and loss == pytest.approx(10 * np.log10((15 * 10 + 1000) / 160))
    assert tool.replay(collected(1), "all", 0.03, 0.5, 0.9)["Set5/a"][0] == pytest.approx(0.0)
    loss, work, _ = tool.replay(collected(0), "convs", 0.6, 0.5, 0.9)["Set5/a"]  # a threshold above the score
    assert work == 0 and loss == pytest.approx(10 * np.log10((15 * 10 + 1000) / 160))


def test_guard_rule_misses_tell_the_rounding_floor_from_clipping(capsys):
    """tools/int8_guard_rule.py's table of misses: an image above 0.10 dB that gets no more added MSE than the
    preset's photos is int8's rounding floor; one that gets more is clipping the maps did not flag."""
    tool = load_tool("int8_guard_rule")

    def image(float_mse, added):  # one 8x8 LR block at x2: 256 HR pixels
        return {"maps": np.zeros((1, 1, 1)), "err_float": np.full((1, 1), 256 * float_mse),
                "err_int8": np.full((1, 1), 256 * (float_mse + added)), "lr_shape": (8, 8)}

    images = {"Set5/photo": image(50.0, 1.0),  # 0.09 dB: not a miss, sets the photos' range
              "random/smooth": image(1.0, 0.5),  # 1.76 dB, half the photo's added MSE
              "random/clipped": image(20.0, 5.0)}  # 0.97 dB, five times it
    tool._misses({"drn_s_x2": {"taps": ["g0b0.conv"], "radius": 2, "images": images}}, "convs", 0.03, 0.5, 0.9)
    rows = {line.split(" | ")[1]: line for line in capsys.readouterr().out.splitlines() if line.startswith("| drn_s_x2")}
    assert set(rows) == {"random/smooth", "random/clipped"}
    assert rows["random/smooth"].endswith("| rounding floor |") and "| 1.76 |" in rows["random/smooth"]
    assert "| 48.1 | 0.50 |" in rows["random/smooth"]  # the float model's PSNR at MSE 1, the added MSE
    assert rows["random/clipped"].endswith("| more than photos |") and "| 5.00 |" in rows["random/clipped"]


@pytest.mark.parametrize("preset", ["drn_x2", "drn_s_x2"])
def test_shipped_int8_file_runs_the_sample_photo_in_int8_alone(preset):
    """The photo the speed tables time (the centre of assets/sample.jpg) has no clipped block with the shipped
    int8 file, so its timing is int8's, with the maps but no float rerun; uniform noise, which clips
    everywhere, would be timed as int8 plus a whole float run."""
    from drn_tf.bench.runtime_table import sample_input
    from drn_tf.core.utils import assets_dir
    from drn_tf.inference.litert import LiteRTRuntime

    path = assets_dir() / "tflite" / f"{preset}-int8.tflite"  # current: tests/test_tf_free.py
    rt = LiteRTRuntime(path, fallback=lambda: pytest.fail("the float model was opened"))
    rt.run_batch(sample_input((256, 256)))
    assert rt.maps and rt.pixels == 256 * 256 and rt.float_pixels == 0
    noise = np.random.default_rng(0).random((1, 64, 64, 3), dtype=np.float32)
    with pytest.warns(UserWarning):  # no fallback for this one: it only says that int8 clipped
        LiteRTRuntime(path).run_batch(noise)
