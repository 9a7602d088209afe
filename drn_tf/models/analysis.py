"""Parameter and multiply-add counts of a DRN configuration, from its layer shapes (:func:`model_macs`: of a
built model, None for an architecture without a table here)."""

from __future__ import annotations

from drn_tf.models.layers import upsampler_stages


def _conv(k: int, cin: int, cout: int) -> tuple[int, int]:
    """(weights + biases, multiply-adds per output pixel) of a k x k convolution."""
    return k * k * cin * cout + cout, k * k * cin * cout


def layer_table(config: dict) -> list[tuple[str, int, int, float]]:
    """Rows ``(name, params, MACs per output pixel, output pixels per LR pixel)``."""
    c, g, k_blocks = config["channels"], config["growth"], config["num_blocks"]
    img = config.get("image_channels", 3)
    scale = config["scale"]
    rows = []
    p, m = _conv(3, img, c)
    rows.append(("lfe", p, m, 1.0))
    for gi in range(config["num_groups"]):
        for b in range(k_blocks):
            w = c + b * g
            p, m = _conv(3, w, w + g)
            rows.append((f"rdg_{gi}/rdb_{b}", p, m, 1.0))
        p, m = _conv(1, c + k_blocks * g, c)
        rows.append((f"rdg_{gi}/compress", p, m, 1.0))
    p, m = _conv(3, c, c)
    rows.append(("body_end", p, m, 1.0))
    stages = upsampler_stages(scale, config.get("upsampler", "single"))
    if len(stages) == 1:
        p, m = _conv(3, c, img * scale * scale)
        rows.append(("upsampler/conv_0", p, m, 1.0))
    else:
        area = 1.0
        for i, s in enumerate(stages):
            p, m = _conv(3, c, c * s * s)
            rows.append((f"upsampler/conv_{i}", p, m, area))
            area *= s * s
        p, m = _conv(3, c, img)
        rows.append(("upsampler/conv_out", p, m, area))
    return rows


def count_params(config: dict) -> int:
    return sum(r[1] for r in layer_table(config))


def count_macs(config: dict, height: int, width: int) -> int:
    """Multiply-adds of one forward pass on an LR input of ``height x width``."""
    return int(sum(m * area for _, _, m, area in layer_table(config)) * height * width)


def model_config(model) -> dict:
    """The DRN constructor arguments of a built model (a DRN or a loaded ``.keras``)."""
    cfg = model.get_config()
    needed = ("scale", "channels", "growth", "num_blocks", "num_groups")
    if not all(k in cfg for k in needed):
        raise ValueError("not a DRN model: its config lacks " + ", ".join(k for k in needed if k not in cfg))
    return cfg


def model_macs(model, height: int, width: int) -> int | None:
    """Multiply-adds of one forward pass of a built model on an LR input of ``height x width``, where its
    architecture has a table here (a DRN); None for another architecture."""
    try:
        config = model_config(model)
    except ValueError:
        return None
    return count_macs(config, height, width)
