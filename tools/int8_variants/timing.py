import statistics
import sys
import time

import numpy as np
from _common import OUT
from ai_edge_litert.interpreter import Interpreter, OpResolverType

rounds = int(sys.argv[1]); specs = sys.argv[2:]   # name[:opt]
x = np.random.default_rng(0).integers(0, 256, (1, 256, 256, 3), dtype=np.uint8)
runs = {}
for spec in specs:
    name, _, opt = spec.partition(":")
    kw = {}
    if opt == "latest": kw["experimental_default_delegate_latest_features"] = True
    if opt == "builtin": kw["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if opt == "nofusion": kw["experimental_disable_delegate_node_fusion"] = True
    it = Interpreter(model_path=f"{OUT}/{name}.tflite", num_threads=2, **kw)
    i = it.get_input_details()[0]; o = it.get_output_details()[0]
    it.resize_tensor_input(i["index"], list(x.shape)); it.allocate_tensors()
    def f(it=it, i=i, o=o):
        it.set_tensor(i["index"], x); it.invoke(); return it.get_tensor(o["index"])
    f(); f()
    runs[spec] = (f, [])
outs = {s: runs[s][0]() for s in specs}
for r in range(rounds):
    for s in specs:
        t = time.perf_counter(); runs[s][0](); runs[s][1].append(time.perf_counter() - t)
base = specs[0]
mb, bb = statistics.median(runs[base][1]), min(runs[base][1])
for s in specs:
    t = runs[s][1]; m, b = statistics.median(t), min(t)
    d = np.abs(outs[s].astype(int) - outs[base].astype(int))
    print(f"{s:20s} median {1e3*m:7.1f} ms  best {1e3*b:7.1f} ms  speed-up vs {base}: median {mb/m:.3f} best {bb/b:.3f}  out diff mean {d.mean():.3f} max {d.max()}")
