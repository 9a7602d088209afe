#!/usr/bin/env python
"""Quantization-aware fine-tuning of a preset for its int8 file: the int8 graph
(:class:`drn_tf.export.int8._QuantGraph`) trained with the preset's bundled activation ranges
(``assets/int8.json``) as fake quantization at every tap and its convolution kernels rounded per output
channel to int8 as the converter rounds them (straight-through gradients), on LR/HR patches of the
training set (clean LR, the protocol's bicubic, also for a photo preset) and, ``--structures`` per batch, regular structures generated in code (other seeds than the
test images'), towards the float model's output (``--target float``: int8 learns to give what the float model
gives) or the HR image (``--target hr``).

    DRN_DATA=../shared/data python tools/int8_qat.py PRESET [--steps N] [--minutes 20] [--lr 1e-5]
        [--structures 0] [--batch 16] [--patch 48] [--target float|hr] [--val-every 100] [--out runs/qat_PRESET]

It stops after ``--steps`` steps or ``--minutes`` minutes, whichever comes first (Adam at ``--lr``, L1 loss,
batches of ``--batch`` LR patches of ``--patch`` pixels).

Every ``--val-every`` steps it prints the simulated int8 graph's loss against the float model on Set5 (Y, by the
protocol) and on the 12 structure images (int8 alone: no saturation guard), and keeps ``OUT/best.keras``, the
Keras model with the fine-tuned weights that scored best on those (Set5 loss + a tenth of the worst structure's:
chosen on the images it is then measured on, which favours it); ``OUT/last.keras`` at the end. The int8 files of
either, with the preset's ranges, measured as the shipped ones are: ``tools/int8_table.py PRESET --int8-weights
OUT/best.keras``.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _weights_fake_quant(tf, kernel):
    """``kernel`` rounded per output channel to symmetric int8 (the converter's per-channel weights), with a
    straight-through gradient."""
    top = tf.reduce_max(tf.abs(kernel), axis=[0, 1, 2], keepdims=True)
    step = tf.maximum(top, 1e-12) / 127.0
    q = tf.clip_by_value(tf.round(kernel / step), -127.0, 127.0) * step
    return kernel + tf.stop_gradient(q - kernel)


class TrainableGraph:
    """The preset's int8 graph with its convolutions as variables (the graph's own, folded forms: the LFE as
    in the Keras model, the upsampler with the output mean in its bias)."""

    def __init__(self, model):
        import tensorflow as tf

        from drn_tf.export.int8 import _QuantGraph

        class Graph(_QuantGraph):
            raw_lfe_kernel = None

            @property
            def lfe_shift(self):  # from the unrounded kernel, as the export folds it
                k = tf.reduce_sum(self.raw_lfe_kernel, axis=[0, 1])
                return tf.linalg.matvec(k, tf.constant(self.input_shift - self.mean, tf.float32), transpose_a=True)

        self.tf = tf
        self.graph = g = Graph(model)
        self.model = model

        def var(kb):
            return (tf.Variable(kb[0]), tf.Variable(kb[1]))

        self.frozen = g.groups  # the activations and growths
        self.lfe = var(g.lfe)
        self.blocks = [[var(b[0]) for b in blocks] for blocks, *_ in g.groups]
        self.compress = [var(c) for _b, c, *_ in g.groups]
        self.body_end = var(g.body_end)
        self.up = var(g.up)
        self.variables = [v for kb in self.convolutions().values() for v in kb]
        self.out_mean_tile = g.up[1] - np.asarray(model.get_layer("upsampler").convs[0].bias, np.float32)

    def convolutions(self) -> dict:
        """``name -> (kernel, bias)`` variables of every convolution, input to output."""
        return {"lfe": self.lfe,
                **{f"g{g}b{b}": kb for g, blocks in enumerate(self.blocks) for b, kb in enumerate(blocks)},
                **{f"g{g}.compress": kb for g, kb in enumerate(self.compress)},
                "body_end": self.body_end, "upsampler": self.up}

    def forward(self, x, ranges, quantize: bool = True, taps=None, weights=None):
        """The graph's output image for float batch ``x``: fake-quantized (``quantize``: every tap at its range
        in ``ranges``, and the kernels) or float (clipped to [0, 1]). ``taps`` (names) / ``weights`` (bool):
        quantize only those taps / the kernels or not (default: as ``quantize``)."""
        tf, g = self.tf, self.graph
        weights = quantize if weights is None else weights

        def wq(kb):
            return (_weights_fake_quant(tf, kb[0]), kb[1]) if weights else kb

        g.raw_lfe_kernel = self.lfe[0]
        g.lfe = wq(self.lfe)
        g.groups = [([(wq(kb), *b[1:]) for kb, b in zip(bl, blocks)], wq(cp), act, slope)
                    for bl, cp, (blocks, _c, act, slope) in zip(self.blocks, self.compress, self.frozen)]
        g.body_end = wq(self.body_end)
        g.up = wq(self.up)

        def hook(name, t):
            if not (quantize if taps is None else name in taps):
                return t
            lo, hi = ranges[name]
            return tf.quantization.fake_quant_with_min_max_vars(t, lo, hi, num_bits=8)

        # without the output's fake quant the graph's own clip keeps the image in [0, 1]
        return g(x, hook, clip=not (quantize if taps is None else "output" in taps))

    def write_back(self):
        """The Keras model with the variables' weights (unfolded)."""
        m = self.model
        m.get_layer("lfe").set_weights([self.lfe[0].numpy(), self.lfe[1].numpy()])
        for gi, blocks in enumerate(self.blocks):
            rdg = m.get_layer(f"rdg_{gi}")
            for layer, kb in zip(rdg.blocks, blocks):
                layer.conv.set_weights([kb[0].numpy(), kb[1].numpy()])
            rdg.compress.set_weights([self.compress[gi][0].numpy(), self.compress[gi][1].numpy()])
        m.get_layer("body_end").set_weights([self.body_end[0].numpy(), self.body_end[1].numpy()])
        m.get_layer("upsampler").convs[0].set_weights([self.up[0].numpy(), self.up[1].numpy() - self.out_mean_tile])
        return m


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset")
    parser.add_argument("--steps", type=int, default=None, help="stop after this many steps")
    parser.add_argument("--minutes", type=float, default=20, help="stop after this many minutes")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--structures", type=int, default=0, help="generated structure patches per batch")
    parser.add_argument("--val-every", type=int, default=100)
    parser.add_argument("--target", choices=("float", "hr"), default="float",
                        help="train the int8 graph towards the float model's output (default) or the HR image")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if not 0 <= args.structures < args.batch:
        parser.error(f"--structures must be 0 to {args.batch - 1} (--batch {args.batch}): the rest are photo patches")
    print("int8_qat:", " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "preset"),
          args.preset, flush=True)
    from drn_tf.models.backend import import_backend_quietly

    import_backend_quietly()
    import tensorflow as tf

    from drn_tf.core import patterns as P
    from drn_tf.core.imresize import bicubic_degrade
    from drn_tf.core.metrics import psnr_y, to_uint8
    from drn_tf.core.protocol import read_benchmark
    from drn_tf.data.patches import PatchSampler, load_pairs
    from drn_tf.export.common import default_data_dir
    from drn_tf.inference import runtimes as R
    from drn_tf.models.drn import DRN

    data = default_data_dir()
    model = DRN.from_preset(args.preset)
    scale = int(model.get_config()["scale"])
    ranges = R.bundled_int8_ranges(model)
    tg = TrainableGraph(model)
    out = Path(args.out or f"runs/qat_{args.preset}")
    out.mkdir(parents=True, exist_ok=True)

    lrs, hrs, _ = load_pairs([data / "train" / "T91", data / "train" / "BSD200"], scale, min_lr_size=args.patch)
    photos = PatchSampler(lrs, hrs, scale, args.patch, args.batch - args.structures, steps_per_epoch=10**6, seed=3)
    rng = np.random.default_rng(5)

    def structure_batch():
        lr_b, hr_b = [], []
        for _ in range(args.structures):
            hr = P._random_structure(rng, args.patch * scale)
            lr_b.append(bicubic_degrade(hr, scale).astype(np.float32) / 255.0)
            hr_b.append(hr.astype(np.float32) / 255.0)
        return np.stack(lr_b), np.stack(hr_b)

    val = read_benchmark(data / "benchmark" / "Set5", scale)
    structures = P.structure_pairs(scale)

    @tf.function(reduce_retracing=True)
    def run(x, quantize):
        return tg.forward(x, ranges, quantize)

    def sim_psnr(pairs, quantize=True):
        return [psnr_y(to_uint8(run(tf.constant(lr[None].astype(np.float32) / 255.0), quantize)[0].numpy()), hr, scale)
                for lr, hr in pairs]

    opt = tf.keras.optimizers.Adam(args.lr)
    teacher = DRN.from_preset(args.preset)  # the float model, frozen

    @tf.function
    def step(lr_b, hr_b):
        with tf.GradientTape() as tape:
            y = tg.forward(lr_b, ranges, True)
            target = hr_b if args.target == "hr" else tf.clip_by_value(teacher(lr_b, training=False), 0.0, 1.0)
            loss = tf.reduce_mean(tf.abs(y - target))
        grads = tape.gradient(loss, tg.variables)
        opt.apply_gradients(zip(grads, tg.variables))
        return loss

    set5 = list(zip(val.lrs, val.hrs))
    struct = list(structures.values())
    float5 = np.mean(sim_psnr(set5, False))
    floats = sim_psnr(struct, False)

    def report(i, t0, best):
        q5 = np.mean(sim_psnr(set5))
        qs = sim_psnr(struct)
        worst = max(f - q for f, q in zip(floats, qs))
        score = -(float5 - q5) - worst / 10
        tag = ""
        if score > best:
            best, tag = score, " *"
            tg.write_back().save(out / "best.keras")
        print(f"step {i:5d} {time.time() - t0:6.0f}s  Set5 float {float5:.3f} int8 {q5:.3f} (loss {float5 - q5:.3f}) "
              f"structures worst loss {worst:.2f} mean {np.mean([f - q for f, q in zip(floats, qs)]):.3f}{tag}",
              flush=True)
        return best

    t0 = time.time()
    best = report(0, t0, -np.inf)
    i, losses = 0, []
    while time.time() - t0 < args.minutes * 60 and (args.steps is None or i < args.steps):
        lr_b, hr_b = photos[i]
        if args.structures:
            lr_s, hr_s = structure_batch()
            lr_b, hr_b = np.concatenate([lr_b, lr_s]), np.concatenate([hr_b, hr_s])
        losses.append(float(step(tf.constant(lr_b), tf.constant(hr_b))))
        i += 1
        if i % args.val_every == 0:
            print(f"  mean L1 {np.mean(losses) * 255:.3f} levels", flush=True)
            losses = []
            best = report(i, t0, best)
    tg.write_back().save(out / "last.keras")
    return 0


if __name__ == "__main__":
    sys.exit(main())
