"""Training patches cut on the accelerator (JAX): ``data.pipeline: device``.

The training set is put on the device once, as uint8 (all LR images padded into one
``(N, H, W, 3)`` array, the HR images into one ``(N, H*s, W*s, 3)`` array: the 291
training images, LR padded to 240x254 at x2, take 266 MB), and every batch is cut there by one jitted
function: image ``i`` with probability proportional to its number of patch positions,
a uniform top-left corner inside the image (never in the padding), one of the 8
flips/rotations, and the conversion to float32 in ``[0, 1]``. Nothing goes through
the host per step, so the input costs no CPU time and no host-to-device copy: what a
GPU needs to be kept busy by a network as small as DRN.

The distribution is :class:`drn_tf.data.patches.PatchSampler`'s; the random numbers
are JAX's (``jax.random.fold_in(key(seed), step)``), so batch ``g`` is a pure function
of ``(seed, g)``, the same after a resume, but not the same patches as the numpy
sampler's. With a degradation (``data.degrade``) the degraded copies of the LR images
(:func:`drn_tf.core.degrade.degraded_copies`) are stacked after the clean ones, and each
patch's version is drawn on the device with ``PatchSampler``'s probabilities.
JAX only (it imports ``jax``, not Keras or TensorFlow).
"""

from __future__ import annotations

import numpy as np


def _dihedral(x, k):
    """The ``k``-th (0..7, traced) of the 8 flips/rotations of one ``(p, p, c)`` patch, as
    :func:`drn_tf.core.tiling.dihedral` (horizontal flip for ``k >= 4``, then ``k % 4`` quarter turns)."""
    import jax
    import jax.numpy as jnp

    branches = [lambda a, r=r, f=f: jnp.rot90(a[:, ::-1] if f else a, r, axes=(0, 1))
                for f in (False, True) for r in range(4)]
    return jax.lax.switch(k, branches, x)


class DeviceSampler:
    """Aligned LR/HR training patches cut on the default JAX device; see the module docstring.

    ``lrs``/``hrs``: uint8 ``(h, w, 3)`` / ``(h*s, w*s, 3)`` images (:func:`drn_tf.data.patches.load_pairs`).
    :meth:`batch` returns float32 device arrays ``(lr (B, p, p, 3), hr (B, p*s, p*s, 3))`` in ``[0, 1]``.
    """

    def __init__(self, lrs, hrs, scale: int, patch_size: int = 48, batch_size: int = 16, seed: int = 0,
                 augment: bool = True, degrade=None):
        import jax

        from drn_tf.core.degrade import degraded_copies
        from drn_tf.data.patches import image_weights

        s, p = int(scale), int(patch_size)
        weights = image_weights(lrs, hrs, s, p)  # checks the pairs, as PatchSampler does
        sizes = np.asarray([lr.shape[:2] for lr in lrs], np.int32)
        h, w = sizes.max(axis=0)
        self.degrade = degrade if degrade is not None and degrade.enabled else None
        versions = [lrs] + (degraded_copies(lrs, self.degrade, seed) if self.degrade else [])
        n = len(lrs)
        lr_all = np.zeros((n * len(versions), h, w, 3), np.uint8)  # version v of image i at v * n + i
        hr_all = np.zeros((n, h * s, w * s, 3), np.uint8)
        for v, images in enumerate(versions):
            for i, lr in enumerate(images):
                lr_all[v * n + i, : lr.shape[0], : lr.shape[1]] = lr
        for i, hr in enumerate(hrs):
            hr_all[i, : hr.shape[0], : hr.shape[1]] = hr
        self.images = n
        self.scale, self.patch_size, self.batch_size, self.augment = s, p, int(batch_size), bool(augment)
        self.lr_all, self.hr_all = jax.device_put(lr_all), jax.device_put(hr_all)
        self.sizes = jax.device_put(sizes)
        self.logits = jax.device_put(np.log(weights).astype(np.float32))
        self.key = jax.random.key(int(seed))
        self.nbytes = lr_all.nbytes + hr_all.nbytes
        self._cut = jax.jit(self._cut_batch)

    def _draw(self, key, sizes, logits):
        """(image, top, left, transform, LR version) of each patch of a batch, from ``key``."""
        import jax
        import jax.numpy as jnp

        b, p = self.batch_size, self.patch_size
        k_img, k_top, k_left, k_t = jax.random.split(key, 4)
        version = jnp.zeros((b,), jnp.int32)
        if self.degrade is not None:  # its own key: the positions are those of a clean run
            k_deg, k_which = jax.random.split(jax.random.fold_in(key, 0xDE9))
            which = jax.random.randint(k_which, (b,), 1, self.degrade.pool + 1)
            version = jnp.where(jax.random.uniform(k_deg, (b,)) < self.degrade.prob, which, 0)
        idx = jax.random.categorical(k_img, logits, shape=(b,))
        top = jax.random.randint(k_top, (b,), 0, sizes[idx, 0] - p + 1)
        left = jax.random.randint(k_left, (b,), 0, sizes[idx, 1] - p + 1)
        t = jax.random.randint(k_t, (b,), 0, 8) if self.augment else jnp.zeros((b,), jnp.int32)
        return idx, top, left, t, version

    def _cut_batch(self, key, lr_all, hr_all, sizes, logits):
        import jax
        import jax.numpy as jnp

        p, s = self.patch_size, self.scale

        def one(i, y, x, k, v):
            lr = jax.lax.dynamic_slice(lr_all, (v * self.images + i, y, x, 0), (1, p, p, 3))[0]
            hr = jax.lax.dynamic_slice(hr_all, (i, y * s, x * s, 0), (1, p * s, p * s, 3))[0]
            return _dihedral(lr, k), _dihedral(hr, k)

        lr, hr = jax.vmap(one)(*self._draw(key, sizes, logits))
        return lr.astype(jnp.float32) / 255.0, hr.astype(jnp.float32) / 255.0

    def specs(self, step: int) -> np.ndarray:
        """``(B, 4)`` int array: image index, LR top, LR left and transform of each patch of batch ``step``;
        ``(B, 5)`` with a degradation, the fifth column the LR version (0: clean, k: degraded copy k)."""
        import jax

        drawn = jax.jit(self._draw)(jax.random.fold_in(self.key, int(step)), self.sizes, self.logits)
        if self.degrade is None:
            drawn = drawn[:4]
        return np.stack([np.asarray(v) for v in drawn], axis=1)

    def batch(self, step: int):
        """Batch ``step`` (the global optimizer step): a pure function of ``(seed, step)``."""
        import jax

        return self._cut(jax.random.fold_in(self.key, int(step)), self.lr_all, self.hr_all, self.sizes, self.logits)

    def stream(self, start_step: int = 0):
        """The batches of training from global step ``start_step`` on (what ``model.fit`` consumes)."""
        g = int(start_step)
        while True:
            yield self.batch(g)
            g += 1
