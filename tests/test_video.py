"""Videos: every frame upscaled, rate and audio kept, lossless frames equal drn upscale's, resumable."""

from __future__ import annotations

import numpy as np
import pytest

from drn_tf.cli.main import main

av = pytest.importorskip("av")


@pytest.fixture
def m2(model_files):
    return str(model_files[2])


def make_clip(path, n=12, w=32, h=24, fps=12, rotation=0):
    """A small H.264 clip with a 440 Hz AAC sine track."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps, options={"crf": "10"})
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        if rotation:
            v.set_display_rotation(rotation)
        a = out.add_stream("aac", rate=16000, layout="mono")
        base = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
        for i in range(n):
            out.mux(v.encode(av.VideoFrame.from_ndarray(np.roll(base, i, axis=1), format="rgb24")))
        out.mux(v.encode(None))
        t = np.arange(int(16000 * n / fps)) / 16000
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        for i in range(0, samples.shape[1], 1024):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, i:i + 1024]), format="fltp", layout="mono")
            f.sample_rate, f.pts = 16000, i
            out.mux(a.encode(f))
        out.mux(a.encode(None))
    return path


def facts(path):
    with av.open(str(path)) as c:  # the rate read while the file is open (a closed container's streams are gone)
        rate = c.streams.video[0].average_rate
        audio = [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size] if c.streams.audio else []
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return rate, frames, audio


def test_clip_comes_out_twice_the_size_with_its_frames_rate_and_audio(tmp_path, capsys, m2):
    clip = make_clip(tmp_path / "clip.mp4")
    rc = main(["upscale", str(clip), "--model", m2, "--runtime", "keras"])
    assert rc == 0, capsys.readouterr().err
    rate, frames, audio = facts(clip)
    rate2, frames2, audio2 = facts(tmp_path / "clip_x2.mp4")
    assert len(frames2) == len(frames) == 12 and frames2[0].shape == (48, 64, 3)
    assert rate2 == rate
    assert audio2 == audio and audio
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # work folder and temporary file gone


def _upscaler(m2):
    from drn_tf.inference.picture import Upscaler
    from drn_tf.inference.runtimes import load_runtime

    rt = load_runtime(m2, None, None, "keras")
    return Upscaler(runtime_for=lambda s: rt, scale=2)


def test_lossless_frames_equal_drn_upscale_of_each_frame(tmp_path, m2):
    from drn_tf.inference.picture import upscale_image
    from drn_tf.inference.video import VideoOptions, upscale_video

    clip = make_clip(tmp_path / "clip.mp4", n=6)
    up = _upscaler(m2)
    upscale_video(clip, tmp_path / "out.mkv", up, VideoOptions(codec="ffv1", segment_frames=4))
    _, frames, _ = facts(clip)
    _, out, _ = facts(tmp_path / "out.mkv")
    assert len(out) == 6
    for k in (0, 5):
        assert np.array_equal(out[k], upscale_image(frames[k], up))


def test_a_stopped_job_resumes_without_redoing_finished_segments(tmp_path, m2):
    from drn_tf.inference.video import VideoOptions, upscale_video, work_dir

    clip = make_clip(tmp_path / "clip.mp4", n=10)
    up = _upscaler(m2)
    opts = VideoOptions(codec="libx264", lossless=True, segment_frames=4)

    def stop(k):
        raise KeyboardInterrupt

    dst = tmp_path / "clip_x2.mp4"
    with pytest.raises(KeyboardInterrupt):
        upscale_video(clip, dst, up, opts, on_segment=stop)
    assert not dst.exists() and (work_dir(dst) / "seg00000.mkv").is_file()
    done = upscale_video(clip, dst, up, opts)
    assert done.resumed_frames == 4 and done.frames == 10
    upscale_video(clip, tmp_path / "whole.mp4", up, opts)
    _, a, audio_a = facts(dst)
    _, b, audio_b = facts(tmp_path / "whole.mp4")
    assert len(a) == 10 and all(np.array_equal(x, y) for x, y in zip(a, b)) and audio_a == audio_b


def test_rotation_is_kept(tmp_path, m2):
    from drn_tf.inference.video import VideoOptions, upscale_video

    clip = make_clip(tmp_path / "clip.mp4", n=3, rotation=90)
    upscale_video(clip, tmp_path / "out.mp4", _upscaler(m2), VideoOptions())
    with av.open(str(tmp_path / "out.mp4")) as c:
        frame = next(c.decode(video=0))
    assert frame.rotation == 90 and (frame.width, frame.height) == (64, 48)


def test_a_corrupt_video_is_one_line_and_the_batch_goes_on(tmp_path, capsys, m2):
    from PIL import Image

    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 50)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ok.png")
    rc = main(["upscale", str(tmp_path), "--model", m2, "--runtime", "keras"])
    err = capsys.readouterr().err
    assert rc == 1 and (tmp_path / "ok_x2.png").is_file()
    lines = [line for line in err.splitlines() if "error:" in line and "failed" not in line]
    assert len(lines) == 1 and "bad.mp4" in lines[0], err
