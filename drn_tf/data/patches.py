"""Image reading and the training/validation data pipeline.

Reading: every PIL-readable image is turned into uint8 the same way
everywhere (:func:`read_image`): EXIF orientation applied; palette, CMYK, LA,
I;16 and float images converted; single-channel images kept single-channel
(``(H, W, 1)``) unless RGB is asked for; alpha returned separately.

Training pairs: HR folder(s) -> modcrop -> LR by the protocol's MATLAB
bicubic (:mod:`drn_tf.core.imresize`), computed once per image and cached on disk
-> random aligned crops (crop in LR coordinates, HR crop = LR crop x scale)
-> one of the 8 flips/rotations -> batches. With a degradation (``data.degrade``:
:class:`drn_tf.core.degrade.TrainDegradation`), a share of the patches is cut from one of a few
JPEG (and noise) copies of each LR, made once when the sampler is built. The sampler is pure numpy
(:class:`PatchSampler`, a ``keras.utils.PyDataset``) so it also runs on
machines with JAX and no TensorFlow; :func:`drn_tf.data.tfdata.make_train_dataset`
wraps the same sampler in ``tf.data`` with prefetching.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drn_tf.core.degrade import TrainDegradation, degraded_copies, version_rng
from drn_tf.core.imageio import ImageReadError, list_images, read_image
from drn_tf.core.imresize import bicubic_degrade, modcrop
from drn_tf.core.tiling import dihedral
from drn_tf.core.utils import default_cache_dir  # noqa: F401  (where it was found before)

# ------------------------------------------------------------------ LR/HR pairs


def _cache_key(path: Path, scale: int) -> str:
    st = path.stat()
    raw = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|x{scale}|v1".encode()
    return hashlib.sha1(raw).hexdigest()


def load_pairs(
    paths,
    scale: int,
    cache_dir: str | os.PathLike | None = None,
    on_error: str = "skip",
    progress: bool = False,
    min_lr_size: int = 1,
):
    """Load every image under ``paths`` as an (LR, HR) uint8 RGB pair.

    LR images are cached in ``cache_dir`` (``None``: :func:`default_cache_dir`;
    ``False``: no cache). Unreadable files are reported by name and skipped
    (``on_error="skip"``) or raise (``on_error="raise"``), each in one warning. Images whose LR
    would be smaller than ``min_lr_size`` are skipped, all named in one warning that says they are
    too small. An LR cache that cannot be written (a full disk) is warned about once and not used.
    """
    if on_error not in ("skip", "raise"):
        raise ValueError("on_error must be 'skip' or 'raise'")
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = list_images(paths)
    if not files:
        raise FileNotFoundError(f"no images found under {', '.join(map(str, paths))}")
    cache = None if cache_dir is False else Path(cache_dir or default_cache_dir())
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    lrs, hrs, names, too_small, unreadable = [], [], [], [], 0
    iterator = files
    if progress:
        from keras.utils import Progbar

        bar = Progbar(len(files), unit_name="image")
    for i, f in enumerate(iterator):
        try:
            hr = read_image(f, mode="rgb")
        except ImageReadError as exc:
            if on_error == "raise":
                raise
            warnings.warn(f"skipping unreadable image: {exc}", stacklevel=2)
            unreadable += 1
            continue
        if min(hr.shape[:2]) // scale < min_lr_size:
            too_small.append(f"{Path(f).name} ({hr.shape[1]}x{hr.shape[0]})")
            continue
        hr = modcrop(hr, scale)
        lr = None
        if cache is not None:
            cf = cache / f"{_cache_key(f, scale)}.npy"
            if cf.is_file():
                try:
                    lr = np.load(cf)
                    if lr.shape != (hr.shape[0] // scale, hr.shape[1] // scale, 3):
                        lr = None
                except (OSError, ValueError):
                    lr = None
            if lr is None:
                lr = bicubic_degrade(hr, scale)
                try:
                    from drn_tf.core.utils import write_atomic

                    buf = io.BytesIO()
                    np.save(buf, lr)
                    write_atomic(cf, buf.getvalue())
                except OSError as exc:
                    warnings.warn(f"LR cache {cache} not used: {exc.strerror or exc}", stacklevel=2)
                    cache = None
        else:
            lr = bicubic_degrade(hr, scale)
        lrs.append(lr)
        hrs.append(hr)
        names.append(str(f))
        if progress:
            bar.update(i + 1)
    need = f"{min_lr_size * scale}x{min_lr_size * scale}"
    if too_small:
        shown = ", ".join(too_small[:8]) + (f" and {len(too_small) - 8} more" if len(too_small) > 8 else "")
        warnings.warn(
            f"skipping {len(too_small)} of {len(files)} images too small for the patch (WxH < {need}: "
            f"x{scale} LR patches of {min_lr_size}): {shown}",
            stacklevel=2,
        )
    if not lrs:
        why = [f"{n} {what}" for n, what in ((unreadable, "unreadable"),
                                              (len(too_small), f"too small for the patch (WxH < {need})")) if n]
        raise FileNotFoundError(f"no usable images under {', '.join(map(str, paths))} ({len(files)} images: "
                                f"{', '.join(why)})")
    return lrs, hrs, names


@dataclass
class PatchSpec:
    index: int  # image index
    top: int  # LR coordinates
    left: int
    transform: int  # 0..7
    version: int = 0  # 0: the clean LR; k > 0: degraded copy k


try:  # keras is optional for the pure numpy parts above
    from keras.utils import PyDataset as _PyDataset
except Exception:  # pragma: no cover
    _PyDataset = object


def image_weights(lrs, hrs, scale: int, patch_size: int) -> np.ndarray:
    """The probability of drawing each training image: its number of ``patch_size`` patch positions over
    the total (every position of the training set equally likely). Checks the pairs: as many LR as HR
    images, none, LR smaller than a patch, or HR not LR x ``scale`` raise ValueError."""
    if len(lrs) != len(hrs) or not lrs:
        raise ValueError("need the same, non-zero number of LR and HR images")
    positions = []
    for lr, hr in zip(lrs, hrs):
        if lr.shape[0] < patch_size or lr.shape[1] < patch_size:
            raise ValueError(f"LR image {lr.shape[:2]} is smaller than the patch size {patch_size}")
        if hr.shape[0] != lr.shape[0] * scale or hr.shape[1] != lr.shape[1] * scale:
            raise ValueError("HR size must be LR size x scale")
        positions.append((lr.shape[0] - patch_size + 1) * (lr.shape[1] - patch_size + 1))
    return np.asarray(positions, dtype=np.float64) / np.sum(positions)


class PatchSampler(_PyDataset):
    """Random aligned LR/HR patches, ``len(self)`` batches per epoch.

    Batch ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``, so runs
    are reproducible and a resumed run sees the same batches. Images are drawn
    with probability proportional to their area. Yields float32 in ``[0, 1]``:
    ``(lr (B, p, p, 3), hr (B, p*s, p*s, 3))``. ``degrade``: a
    :class:`~drn_tf.core.degrade.TrainDegradation`; each patch's LR version (clean or which
    degraded copy) is drawn from its own stream of ``(seed, epoch, index)``, so the patch
    positions are those of the clean run and a resume sees the same batches.
    """

    def __init__(
        self,
        lrs,
        hrs,
        scale: int,
        patch_size: int = 48,
        batch_size: int = 16,
        steps_per_epoch: int = 1000,
        seed: int = 0,
        augment: bool = True,
        degrade: TrainDegradation | None = None,
        **kwargs,
    ):
        if _PyDataset is not object:
            super().__init__(**kwargs)
        self.lrs, self.hrs = lrs, hrs
        self.degrade = degrade if degrade is not None and degrade.enabled else None
        # lr_versions[v][i]: version v of LR i (0 = clean)
        self.lr_versions = [lrs] + (degraded_copies(lrs, self.degrade, seed) if self.degrade else [])
        self.scale, self.patch_size, self.batch_size = int(scale), int(patch_size), int(batch_size)
        self.steps_per_epoch, self.seed, self.augment = int(steps_per_epoch), int(seed), bool(augment)
        self.epoch = 0
        self.weights = image_weights(lrs, hrs, scale, patch_size)

    def __len__(self):
        return self.steps_per_epoch

    def on_epoch_end(self):
        self.epoch += 1

    def specs(self, index: int, epoch: int | None = None) -> list[PatchSpec]:
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch, index])
        images = rng.choice(len(self.lrs), size=self.batch_size, p=self.weights)
        out = []
        for i in images:
            h, w = self.lrs[i].shape[:2]
            top = int(rng.integers(0, h - self.patch_size + 1))
            left = int(rng.integers(0, w - self.patch_size + 1))
            t = int(rng.integers(0, 8)) if self.augment else 0
            out.append(PatchSpec(int(i), top, left, t))
        if self.degrade is not None:
            for spec, v in zip(out, self.degrade.versions(version_rng(self.seed, epoch, index), len(out))):
                spec.version = int(v)
        return out

    def batch_uint8(self, index: int, epoch: int | None = None):
        """The same patches as :meth:`batch`, as uint8 (``batch() == batch_uint8() / 255``)."""
        p, s = self.patch_size, self.scale
        lr_b = np.empty((self.batch_size, p, p, 3), np.uint8)
        hr_b = np.empty((self.batch_size, p * s, p * s, 3), np.uint8)
        for b, spec in enumerate(self.specs(index, epoch)):
            lr = self.lr_versions[spec.version][spec.index][spec.top : spec.top + p, spec.left : spec.left + p]
            hr = self.hrs[spec.index][spec.top * s : (spec.top + p) * s, spec.left * s : (spec.left + p) * s]
            lr_b[b] = dihedral(lr, spec.transform)
            hr_b[b] = dihedral(hr, spec.transform)
        return lr_b, hr_b

    def batch(self, index: int, epoch: int | None = None):
        """Batch ``index`` of ``epoch`` as float32 in ``[0, 1]``: ``batch_uint8() / 255``."""
        lr_b, hr_b = self.batch_uint8(index, epoch)
        return lr_b.astype(np.float32) * np.float32(1.0 / 255.0), hr_b.astype(np.float32) * np.float32(1.0 / 255.0)

    def __getitem__(self, index):
        return self.batch(index)

    def stream(self, start_step: int = 0, workers: int = 0, ahead: int | None = None):
        """The batch stream of training from global step ``start_step`` on, as a generator: batch ``g`` is
        ``batch(g % steps_per_epoch, epoch=g // steps_per_epoch)``, as in the ``tf.data`` stream of
        :func:`drn_tf.data.tfdata.make_train_dataset`. What ``model.fit`` trains on, on every backend, without
        relying on Keras's epoch callbacks (``fit`` peeks at a batch of a ``PyDataset`` and then ends an
        epoch, which shifted the epochs by one). ``workers`` > 0: threads cut the next ``ahead`` batches
        (default ``4 * workers``) while the step runs, in order."""
        e = self.steps_per_epoch

        def make(g):
            return self.batch(g % e, epoch=g // e)

        g = int(start_step)
        if workers <= 0:
            while True:
                yield make(g)
                g += 1
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(workers, thread_name_prefix="drn-patches")
        try:
            pending = deque(pool.submit(make, g + i) for i in range(ahead or 4 * workers))
            g += len(pending)
            while True:
                out = pending.popleft().result()
                pending.append(pool.submit(make, g))
                g += 1
                yield out
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
