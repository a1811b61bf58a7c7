# bench/torch_ops.py — the PyTorch side of bench_cuda_ops: softmax, rms_norm and
# cross-entropy, forward + backward, median ms by CUDA events, on the same GPU and the same
# shapes as bench/bench_cuda_ops.cpp (keep them in sync). Writes JSON for bench_cuda_ops
# --torch. Python is used only for this comparison; it is not part of the product.
import json
import sys

import torch
import torch.nn.functional as F


def time_ms(fn, warmup=5, reps=30):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else "torch_ops.json"
    dev = "cuda"
    torch.manual_seed(0)
    res = {}
    for name, dt in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        x = torch.randn(16384, 4096, device=dev, dtype=dt, requires_grad=True)
        g = torch.randn(16384, 4096, device=dev, dtype=dt)

        def sm():
            F.softmax(x, -1).backward(g)
            x.grad = None

        res[f"softmax [16384,4096]_{name}"] = time_ms(sm)

        x2 = torch.randn(16384, 768, device=dev, dtype=dt, requires_grad=True)
        w = torch.ones(768, device=dev, dtype=dt, requires_grad=True)
        g2 = torch.randn(16384, 768, device=dev, dtype=dt)

        def rms():
            F.rms_norm(x2, (768,), w, 1e-6).backward(g2)
            x2.grad = None
            w.grad = None

        res[f"rms_norm [16384,768]_{name}"] = time_ms(rms)

        x3 = torch.randn(16384, 32000, device=dev, dtype=dt, requires_grad=True)
        t = torch.randint(0, 32000, (16384,), device=dev)

        def ce():
            F.cross_entropy(x3, t).backward()
            x3.grad = None

        res[f"cross_entropy [16384,32000]_{name}"] = time_ms(ce)
        del x, g, x2, g2, x3
    out = {"torch_version": torch.__version__, "device": torch.cuda.get_device_name(0), "results": res}
    with open(out_path, "w") as f:
        json.dump(out, f, indent=2)
    for k, v in res.items():
        print(f"torch {k:40s} {v:8.3f} ms")


if __name__ == "__main__":
    main()
