"""``drn info``: architecture summary, parameter count and multiply-adds."""

from __future__ import annotations


def add_parser(sub, help_text):
    p = sub.add_parser(
        "info",
        help=help_text,
        description="Print the layer table of a DRN preset or model file: parameters per layer, "
        "multiply-adds for the given LR input size, receptive field.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", default="drn_x2", help="preset name (default: drn_x2); see --list")
    src.add_argument("--model", help="a .keras model file instead of a preset")
    p.add_argument("--size", default="256x256", help="LR input size HxW for multiply-adds (default 256x256)")
    p.add_argument("--list", action="store_true", help="list the presets and exit")
    p.add_argument("--summary", action="store_true", help="also print the Keras model summary")
    p.set_defaults(func=run)


def run(args):
    from drn_tf.cli.base import UserError
    from drn_tf.core.utils import parse_size
    from drn_tf.models.analysis import count_macs, layer_table
    from drn_tf.models.presets import PRESETS, get_preset

    if args.list:
        from drn_tf.models.drn import bundled_model_path

        for name in sorted(PRESETS):
            bundled = "bundled weights" if bundled_model_path(name) else "no bundled weights"
            print(f"{name:10s}  {PRESETS[name]['description']}  [{bundled}]")
        return 0
    h, w = parse_size(args.size, error=UserError)
    if args.model:
        from drn_tf.models.analysis import model_config
        from drn_tf.models.drn import load_model

        try:
            model = load_model(args.model)
            config = model_config(model)
        except (OSError, ValueError) as exc:
            raise UserError(f"{args.model}: cannot load model: {exc}") from None
        title = args.model
    else:
        try:
            config = get_preset(args.preset)["config"]
        except ValueError as exc:
            raise UserError(str(exc)) from None
        title = args.preset
        model = None
    from drn_tf.models.drn import receptive_radius
    from drn_tf.models.layers import upsampler_stages

    rows = layer_table(config)
    total_p = sum(r[1] for r in rows)
    macs = count_macs(config, h, w)
    s = config["scale"]
    print(f"DRN {title}: x{s}, C={config['channels']}, g={config['growth']}, K={config['num_blocks']}, "
          f"G={config['num_groups']}, activation={config.get('activation')}, global_skip={config.get('global_skip')}, "
          f"upsampler={config.get('upsampler')}")
    print(f"{'layer':22s} {'params':>10s} {'MACs/LR px':>12s}")
    for name, p, m, area in rows:
        print(f"{name:22s} {p:10,d} {int(m * area):12,d}")
    print(f"{'total':22s} {total_p:10,d} {macs // (h * w):12,d}")
    print(f"parameters: {total_p:,d}")
    print(f"multiply-adds for a {h}x{w} input ({h * s}x{w * s} output): {macs / 1e9:.2f} G "
          f"({macs / (h * s * w * s) / 1e3:.1f} K per output pixel)")
    radius = receptive_radius(config["num_groups"], config["num_blocks"], len(upsampler_stages(s, config.get("upsampler", "single"))))
    print(f"receptive field: {2 * radius + 1}x{2 * radius + 1} input pixels (radius {radius})")
    if args.summary:
        if model is None:
            from drn_tf.models.build import from_preset

            model = from_preset(args.preset, load_weights=False)
        model.summary()
    return 0
