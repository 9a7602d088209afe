"""Video files: every frame upscaled, audio and subtitles copied as they are.

:func:`upscale_video` decodes the input with PyAV (FFmpeg; the optional
extra ``drn-tf[video]``), upscales each frame with an
:class:`~drn_tf.inference.picture.Upscaler` (any runtime, the same tiling as
images, any output size) and encodes it with a codec of :data:`CODECS`.

Resumable: frames are encoded in segments of ``segment_frames`` frames, each
written atomically into a hidden work folder beside the output
(``.NAME.drn-work/``) with the presentation times of its frames. A job that
is stopped (Ctrl-C, SIGTERM, a crash) and run again with the same input and
settings re-decodes the finished segments' frames but does not upscale or
encode them again. The last step muxes the segments' packets with the
input's original timestamps (frame rate and time base kept), the input's
audio and subtitle packets unchanged, and the input's rotation, into a
temporary file renamed into place; then the work folder is removed.
Encoders run without B-frames, so every segment's packets are in
presentation order and segments join without re-timing.
"""

from __future__ import annotations

import heapq
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".m4v", ".webm", ".avi")


class VideoError(ValueError):
    """A video that cannot be read or written; the message names the file and the reason."""


@dataclass(frozen=True)
class Codec:
    encoder: str
    pix_fmt: str
    containers: tuple  # output extensions that can hold it (the first: the fallback)
    options: Callable[[int], dict]  # crf -> encoder options
    lossless: tuple  # (encoder, pix_fmt, options) of its lossless mode
    default_crf: int | None


# --video-codec NAME -> how to encode it
CODECS = {
    "libx264": Codec("libx264", "yuv420p", (".mp4", ".mkv", ".mov", ".m4v"),
                     lambda crf: {"crf": str(crf), "preset": "medium", "bf": "0"},
                     ("libx264rgb", "rgb24", {"qp": "0", "preset": "medium", "bf": "0"}), 18),
    "libx265": Codec("libx265", "yuv420p", (".mp4", ".mkv", ".mov", ".m4v"),
                     lambda crf: {"crf": str(crf), "preset": "medium", "x265-params": "bframes=0:log-level=error"},
                     ("libx265", "gbrp", {"preset": "medium", "x265-params": "lossless=1:bframes=0:log-level=error"}),
                     22),
    "vp9": Codec("libvpx-vp9", "yuv420p", (".webm", ".mkv", ".mp4"),
                 lambda crf: {"crf": str(crf), "b": "0", "deadline": "good", "cpu-used": "4"},
                 ("libvpx-vp9", "gbrp", {"lossless": "1", "deadline": "good", "cpu-used": "4"}), 32),
    "ffv1": Codec("ffv1", "bgr0", (".mkv", ".avi"), lambda crf: {},
                  ("ffv1", "bgr0", {}), None),  # lossless always
}
DEFAULT_CODEC = "libx264"
SEGMENT_FRAMES = 100


@dataclass(frozen=True)
class VideoOptions:
    codec: str = DEFAULT_CODEC
    crf: int | None = None  # None: the codec's default
    lossless: bool = False
    segment_frames: int = SEGMENT_FRAMES

    def encoder(self) -> tuple[str, str, dict]:
        """``(encoder name, pixel format, options)``."""
        c = CODECS[self.codec]
        if self.lossless or c.default_crf is None:
            name, pix_fmt, options = c.lossless
            return name, pix_fmt, dict(options)
        return c.encoder, c.pix_fmt, c.options(self.crf if self.crf is not None else c.default_crf)


def is_video(path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def video_output_path(path: Path, options: VideoOptions) -> Path:
    """``path`` with an extension whose container holds the codec (else the codec's first one)."""
    containers = CODECS[options.codec].containers
    return path if path.suffix.lower() in containers else path.with_suffix(containers[0])


def _open(path):
    try:
        import av
    except ImportError:
        raise VideoError(f"{path}: videos need PyAV: pip install 'drn-tf[video]'") from None

    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{path}: cannot read the video: {exc}") from None


@dataclass
class VideoDone:
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    frames: int
    resumed_frames: int
    notes: list


# ---------------------------------------------------------------- the work folder


def work_dir(dst: Path) -> Path:
    return dst.parent / f".{dst.name}.drn-work"


def _manifest(src: Path, dst: Path, options: VideoOptions, up) -> dict:
    st = src.stat()
    req = up.request
    return {"input": str(Path(src).resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
            "options": asdict(options), "scale": up.scale, "scales": list(up.scales),
            "request": None if req is None else asdict(req), "tile": str(up.tile),
            "self_ensemble": up.self_ensemble, "model": getattr(up, "model_id", "")}


def _prepare_work(dst: Path, manifest: dict) -> Path:
    """The work folder of ``dst``: kept when it belongs to the same job, else emptied."""
    work = work_dir(dst)
    old = work / "manifest.json"
    if work.is_dir() and (not old.is_file() or json.loads(old.read_text()) != manifest):
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if not old.is_file():
        old.write_text(json.dumps(manifest))
    return work


def _segment_done(work: Path, k: int) -> bool:
    return (work / f"seg{k:05d}.mkv").is_file() and (work / f"seg{k:05d}.json").is_file()


# ---------------------------------------------------------------- encoding segments


def _encode_segment(work: Path, k: int, frames: list, options: VideoOptions, rate, time_base) -> None:
    """Encode ``frames`` (``[(pts, rgb uint8)]``) into segment ``k``, atomically (video file, then its
    list of presentation times, which marks it finished)."""
    import av

    name, pix_fmt, opts = options.encoder()
    h, w = frames[0][1].shape[:2]
    tmp = work / f"seg{k:05d}.tmp.mkv"
    with av.open(str(tmp), "w", format="matroska") as out:
        stream = out.add_stream(name, rate=rate, options=opts)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        stream.codec_context.time_base = time_base
        stream.codec_context.max_b_frames = 0
        for pts, rgb in frames:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = pts, time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    os.replace(tmp, work / f"seg{k:05d}.mkv")
    (work / f"seg{k:05d}.json.tmp").write_text(json.dumps([p for p, _ in frames]))
    os.replace(work / f"seg{k:05d}.json.tmp", work / f"seg{k:05d}.json")


def _upscale_segments(src, work, up, options, progress, on_segment):
    """Decode ``src``, upscale and encode every segment not yet in ``work``; ``(in size, out size, frames,
    frames found done, rotation)``."""
    from drn_tf.inference.picture import upscale_image

    n = options.segment_frames
    container = _open(src)
    with container:
        if not container.streams.video:
            raise VideoError(f"{src}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate, tb = stream.average_rate or stream.guessed_rate or Fraction(25), stream.time_base
        total = stream.frames or (int(float(stream.duration * tb) * float(rate)) if stream.duration else None)
        batch, index, k, resumed, rotation = [], 0, 0, 0, 0
        in_size = out_size = None
        t0, fresh = time.perf_counter(), 0
        for frame in _decode(container, stream, src):
            if in_size is None:
                in_size, rotation = (frame.width, frame.height), int(getattr(frame, "rotation", 0) or 0)
            k = index // n
            if _segment_done(work, k):
                resumed += 1
            else:
                rgb = upscale_image(frame.to_ndarray(format="rgb24"), up)
                out_size = (rgb.shape[1], rgb.shape[0])
                _check_even(src, out_size, options)
                batch.append((frame.pts if frame.pts is not None else index, rgb))
                fresh += 1
            index += 1
            if batch and index % n == 0:
                _encode_segment(work, k, batch, options, rate, tb)
                batch = []
                if on_segment is not None:
                    on_segment(k)
            if progress is not None:
                dt = time.perf_counter() - t0
                progress(index, total or None, fresh / dt if dt > 0 and fresh else 0.0)
        if batch:
            _encode_segment(work, index // n, batch, options, rate, tb)
        if index == 0:
            raise VideoError(f"{src}: the video has no frames")
    if out_size is None:  # every segment was there already: the size from the first one
        out_size = _segment_size(work)
    return in_size, out_size, index, resumed, rotation


def _decode(container, stream, src):
    import av

    try:
        yield from container.decode(stream)
    except av.FFmpegError as exc:
        raise VideoError(f"{src}: cannot decode the video: {exc}") from None


def _check_even(src, size, options):
    name, pix_fmt, _ = options.encoder()
    if pix_fmt.startswith("yuv420") and (size[0] % 2 or size[1] % 2):
        raise VideoError(f"{src}: {pix_fmt} ({name}) needs even sides, the output would be {size[0]}x{size[1]}; "
                         "ask for an even size, or use --lossless or --video-codec ffv1")


def _segment_size(work: Path):
    import av

    with av.open(str(work / "seg00000.mkv")) as c:
        s = c.streams.video[0].codec_context
        return s.width, s.height


# ---------------------------------------------------------------- the final mux


def _segment_packets(work: Path, time_base, rate):
    """The video packets of every segment, in order, with their frames' original times (seconds, packet)."""
    duration = max(1, round(1 / (Fraction(rate) * time_base))) if rate else 0
    k = 0
    while _segment_done(work, k):
        times = json.loads((work / f"seg{k:05d}.json").read_text())
        c = _open(work / f"seg{k:05d}.mkv")
        with c:
            packets = [p for p in c.demux(c.streams.video[0]) if p.size]
            for pts, packet in zip(times, packets):
                packet.pts = packet.dts = pts
                packet.duration = duration
                packet.time_base = time_base
                yield float(pts * time_base), packet
        k += 1


def _other_packets(container, streams):
    """The input's audio and subtitle packets, in order: (seconds, packet)."""
    if not streams:
        return
    for packet in container.demux(*streams):
        if packet.size and packet.dts is not None:
            yield float((packet.dts or 0) * packet.time_base), packet


def _mux(src: Path, work: Path, tmp: Path, rotation: int, notes: list) -> None:
    import av

    first = _open(work / "seg00000.mkv")
    container = _open(src)
    with first, container, av.open(str(tmp), "w", format=_muxer(tmp)) as out:
        vin = container.streams.video[0]
        vout = out.add_stream_from_template(first.streams.video[0])
        vout.time_base = vin.time_base
        if rotation:
            vout.set_display_rotation(rotation)
        copied = {}
        for s in list(container.streams.audio) + list(container.streams.subtitles):
            try:
                copied[s.index] = out.add_stream_from_template(s)
            except (av.FFmpegError, ValueError) as exc:
                notes.append(f"{s.type} stream {s.index} ({s.codec_context.name}) not copied: {exc}")
        others = [s for s in container.streams if s.index in copied]
        video = ((t, p, vout) for t, p in _segment_packets(work, vin.time_base, vin.average_rate or vin.guessed_rate))
        rest = ((t, p, copied[p.stream.index]) for t, p in _other_packets(container, others))
        for _, packet, target in heapq.merge(video, rest, key=lambda item: item[0]):
            packet.stream = target
            try:
                out.mux(packet)
            except av.FFmpegError as exc:
                raise VideoError(f"{tmp}: cannot write: {exc}") from None


def _muxer(path: Path) -> str:
    return {".mkv": "matroska", ".webm": "webm", ".mov": "mov", ".avi": "avi"}.get(path.suffix.lower(), "mp4")


# ---------------------------------------------------------------- the job


def upscale_video(src, dst, up, options: VideoOptions = VideoOptions(), *, overwrite: bool = False,
                  progress: Callable[[int, int | None, float], None] | None = None,
                  on_segment: Callable[[int], None] | None = None) -> VideoDone:
    """Upscale every frame of video ``src`` into ``dst`` (see the module's text). ``progress(frames done,
    frames in all or None, frames/s)`` after each frame; ``on_segment(k)`` after segment ``k`` is kept."""
    src, dst = Path(src), Path(dst)
    if options.codec not in CODECS:
        raise VideoError(f"unknown video codec {options.codec!r} (one of {', '.join(CODECS)})")
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst}: output exists (pass --overwrite to replace it)")
    work = _prepare_work(dst, _manifest(src, dst, options, up))
    in_size, out_size, frames, resumed, rotation = _upscale_segments(src, work, up, options, progress, on_segment)
    notes: list = []
    tmp = dst.parent / f".{dst.stem}.tmp{dst.suffix}"
    try:
        _mux(src, work, tmp, rotation, notes)
        if dst.exists() and not overwrite:
            raise FileExistsError(f"{dst}: output exists (pass --overwrite to replace it)")
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    return VideoDone(in_size, out_size, frames, resumed, notes)


def eta_text(done: int, total: int | None, fps: float) -> str:
    """``120/480 frames, 3.2 frames/s, ETA 1:52`` (no total: no ETA)."""
    text = f"{done}/{total} frames" if total else f"{done} frames"
    text += f", {fps:.1f} frames/s"
    if total and fps > 0 and done < total:
        left = int((total - done) / fps)
        text += f", ETA {left // 60}:{left % 60:02d}"
    return text


__all__ = ["CODECS", "VIDEO_EXTENSIONS", "VideoDone", "VideoError", "VideoOptions", "eta_text", "is_video",
           "upscale_video", "video_output_path", "work_dir"]
