"""The DRN model: a functional ``keras.Model`` subclass built from its config."""

from __future__ import annotations

import os
from pathlib import Path

import keras

from drn_tf import layers as L
from drn_tf.presets import get_preset

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"


@keras.saving.register_keras_serializable(package="drn_tf")
class DRN(keras.Model):
    """Distilling with Residual Network (Sun et al., arXiv 1907.02843).

    Maps float RGB images in ``[0, 1]`` of any size ``(H, W)`` to
    ``(H*scale, W*scale)``. Layout::

        x - mean -> LFE 3x3 conv (C) = Y0 -> G x RDG -> 3x3 conv
          (+ Y0 if global_skip) -> Upsampler (conv + pixel shuffle) + mean

    The output is not clipped; inference helpers clip to ``[0, 1]``.
    """

    def __init__(
        self,
        scale=2,
        channels=64,
        growth=16,
        num_blocks=4,
        num_groups=3,
        activation="leaky_relu",
        negative_slope=0.05,
        compression_activation="elu",
        global_skip=True,
        upsampler="single",
        image_channels=3,
        mean=(0.4488, 0.4371, 0.4040),
        dtype=None,
        **kwargs,
    ):
        if int(scale) not in (1, 2, 3, 4, 8):
            raise ValueError(f"scale must be one of 1, 2, 3, 4, 8; got {scale!r}")
        if len(mean) != image_channels:
            raise ValueError("mean must have one value per image channel")
        inputs = keras.Input(shape=(None, None, image_channels), name="lr_image")
        # Input normalisation and the LFE conv (3 input channels, cheap) run in
        # float32 even under a mixed-precision policy, so the image keeps its
        # 8-bit precision.
        x = L.MeanShift(mean, sign=-1, dtype="float32", name="sub_mean")(inputs)
        y0 = keras.layers.Conv2D(
            channels, 3, padding="same", kernel_initializer=L.kernel_initializer(), dtype="float32", name="lfe"
        )(x)
        y = y0
        for g in range(num_groups):
            y = L.ResidualDistillingGroup(
                num_blocks=num_blocks,
                growth=growth,
                activation=activation,
                negative_slope=negative_slope,
                compression_activation=compression_activation,
                dtype=dtype,
                name=f"rdg_{g}",
            )(y)
        y = keras.layers.Conv2D(
            channels, 3, padding="same", kernel_initializer=L.kernel_initializer(), dtype=dtype, name="body_end"
        )(y)
        if global_skip:
            y = keras.layers.Add(dtype=dtype, name="global_skip")([y, y0])
        # The reconstruction runs in float32 even under a mixed-precision
        # policy: its output is the image itself.
        y = L.Upsampler(scale, image_channels, layout=upsampler, dtype="float32", name="upsampler")(y)
        outputs = L.MeanShift(mean, sign=1, dtype="float32", name="add_mean")(y)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        self.scale = int(scale)
        self.channels = int(channels)
        self.growth = int(growth)
        self.num_blocks = int(num_blocks)
        self.num_groups = int(num_groups)
        self.activation = activation
        self.negative_slope = float(negative_slope)
        self.compression_activation = compression_activation
        self.global_skip = bool(global_skip)
        self.upsampler = upsampler
        self.image_channels = int(image_channels)
        self.mean = tuple(float(m) for m in mean)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "scale": self.scale,
            "channels": self.channels,
            "growth": self.growth,
            "num_blocks": self.num_blocks,
            "num_groups": self.num_groups,
            "activation": self.activation,
            "negative_slope": self.negative_slope,
            "compression_activation": self.compression_activation,
            "global_skip": self.global_skip,
            "upsampler": self.upsampler,
            "image_channels": self.image_channels,
            "mean": list(self.mean),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @property
    def receptive_radius(self) -> int:
        """Radius, in input pixels, of the region an output pixel depends on."""
        return receptive_radius(self.num_groups, self.num_blocks, len(L.upsampler_stages(self.scale, self.upsampler)))

    @classmethod
    def from_preset(cls, name: str, load_weights: bool = True, assets_dir: str | os.PathLike | None = None, **overrides):
        """Build the preset ``name`` (see :func:`drn_tf.preset_names`).

        If a bundled model file exists for the preset (``assets/<name>.keras``)
        and ``load_weights`` is true, it is loaded (``safe_mode=True``);
        otherwise the model is freshly initialised. ``overrides`` replace
        preset arguments (only for a freshly initialised model).
        """
        preset = get_preset(name)
        path = Path(assets_dir or ASSETS_DIR) / preset["asset"]
        if load_weights and path.is_file() and not overrides:
            return load_model(path)
        config = dict(preset["config"], **overrides)
        return cls(name=name, **config)


def receptive_radius(num_groups: int, num_blocks: int, upsampler_stage_count: int = 1) -> int:
    """LFE + G*K block convs + body end conv + first upsampler conv, each 3x3."""
    return 1 + num_groups * num_blocks + 1 + 1 + (upsampler_stage_count - 1)


def bundled_model_path(name: str) -> Path | None:
    """Path of the bundled ``.keras`` file for preset ``name``, or None."""
    path = ASSETS_DIR / get_preset(name)["asset"]
    return path if path.is_file() else None


def load_model(path: str | os.PathLike) -> keras.Model:
    """Load a ``.keras`` file with ``safe_mode=True`` (no code execution)."""
    return keras.saving.load_model(path, safe_mode=True, compile=False)
