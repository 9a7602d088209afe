"""The DRN model: a functional ``keras.Model`` subclass built from its config."""

from __future__ import annotations

import os
from pathlib import Path

import keras

from drn_tf.core.utils import assets_dir as _assets_dir
from drn_tf.models import layers as L
from drn_tf.models.presets import get_preset

# Bundled trained models: package data of an installed drn-tf, the top-level
# assets/ of a checkout (see drn_tf.core.utils.assets_dir).
ASSETS_DIR = _assets_dir()


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
        # Every argument is checked before anything is built (a .keras file is a config: absurd sizes
        # must fail here, not after gigabytes of weights).
        (scale, channels, growth, num_blocks, num_groups, activation, negative_slope, compression_activation,
         global_skip, upsampler, image_channels, mean) = check_arguments(
            scale, channels, growth, num_blocks, num_groups, activation, negative_slope, compression_activation,
            global_skip, upsampler, image_channels, mean)
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

        ``load_weights=True`` (the default) loads the bundled trained model
        ``<assets_dir>/<name>.keras`` (``safe_mode=True``) and raises
        :class:`FileNotFoundError` if it is missing: random weights are never
        handed out silently. ``load_weights=False`` builds a freshly
        initialised model; ``overrides`` replace preset arguments (only then).
        """
        preset = get_preset(name)
        if load_weights:
            if overrides:
                raise ValueError(
                    f"overrides {sorted(overrides)} change the architecture, so the bundled weights of {name} "
                    "cannot be loaded into it; pass load_weights=False for a freshly initialised model"
                )
            path = Path(assets_dir or ASSETS_DIR) / preset["asset"]
            if not path.is_file():
                raise FileNotFoundError(
                    f"no bundled trained model for preset {name} ({path} is missing); "
                    "pass load_weights=False for a freshly initialised (untrained) model"
                )
            return load_model(path)
        config = dict(preset["config"], **overrides)
        return cls(name=name, **config)


SCALES = (1, 2, 3, 4, 8)
MAX_GROUPS = 64
MAX_IMAGE_CHANNELS = 4
MAX_PARAMS = 100_000_000  # 400 MB of float32 weights; the drn preset has 1.1 M


def check_arguments(scale, channels, growth, num_blocks, num_groups, activation, negative_slope,
                    compression_activation, global_skip, upsampler, image_channels, mean) -> tuple:
    """The :class:`DRN` constructor arguments, type- and range-checked and normalised, in that order.

    Raises ``ValueError`` naming the argument (and, for a model within every bound but too large as a
    whole, its parameter count) before any layer or weight exists."""
    from drn_tf.core.utils import check_choice, check_float, check_int
    from drn_tf.models.analysis import count_params

    scale = check_choice("scale", check_int("scale", scale), SCALES)
    channels = check_int("channels", channels, 1, L.MAX_CHANNELS)
    growth = check_int("growth", growth, 1, L.MAX_GROWTH)
    num_blocks = check_int("num_blocks", num_blocks, 1, L.MAX_BLOCKS)
    num_groups = check_int("num_groups", num_groups, 1, MAX_GROUPS)
    activation = L._check_activation(activation)
    negative_slope = check_float("negative_slope", negative_slope, 0.0, 1.0)
    compression_activation = L._check_activation(compression_activation, "compression_activation")
    global_skip = check_choice("global_skip", global_skip, (True, False))
    upsampler = check_choice("upsampler", upsampler, L.UPSAMPLER_LAYOUTS)
    L.upsampler_stages(scale, upsampler)  # progressive needs a power of two
    image_channels = check_int("image_channels", image_channels, 1, MAX_IMAGE_CHANNELS)
    mean = L._check_mean(mean, MAX_IMAGE_CHANNELS)
    if len(mean) != image_channels:
        raise ValueError(f"mean must have one value per image channel ({image_channels}), got {len(mean)}")
    params = count_params({"scale": scale, "channels": channels, "growth": growth, "num_blocks": num_blocks,
                           "num_groups": num_groups, "upsampler": upsampler, "image_channels": image_channels})
    if params > MAX_PARAMS:
        raise ValueError(f"these arguments make a model of {params:,d} parameters, over the limit of "
                         f"{MAX_PARAMS:,d} (channels {channels}, growth {growth}, num_blocks {num_blocks}, "
                         f"num_groups {num_groups})")
    return (scale, channels, growth, num_blocks, num_groups, activation, negative_slope, compression_activation,
            global_skip, upsampler, image_channels, mean)


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
