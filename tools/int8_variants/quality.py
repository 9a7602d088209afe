import sys

import numpy as np
from _common import MODEL, OUT

from drn_tf.bench import export_report as ER  # noqa: E402
from drn_tf.core.metrics import psnr_y
from drn_tf.export import common as EC  # noqa: E402
from drn_tf.inference import runtimes as R
from drn_tf.inference.upscale import predict_image
from drn_tf.models.drn import load_model

m = load_model(str(MODEL))
data = EC.default_data_dir()
runners = {n: R.TFLiteUpscaler(f"{OUT}/{n}.tflite", num_threads=2) for n in sys.argv[1:]}
for name in ("Set5", "Set14"):
    _, pairs = ER._set5_pairs(data / "benchmark" / name, 2)
    k = np.mean([psnr_y(ER._protocol_sr(lambda x: predict_image(m, x) * 255.0, lr), hr, 2) for _, lr, hr in pairs])
    out = [f"{name}: keras {k:.3f}"]
    for n, r in runners.items():
        p = np.mean([psnr_y(ER._protocol_sr(lambda x: r.run(x[None])[0], lr), hr, 2) for _, lr, hr in pairs])
        out.append(f"{n} {p:.3f} (loss {k - p:.3f} dB)")
    print("; ".join(out), flush=True)
