# bench/torch_attention.py — the PyTorch side of bench_attention: causal
# scaled_dot_product_attention in bf16 with the FlashAttention backend
# (sdpa_kernel(SDPBackend.FLASH_ATTENTION)), forward and forward + backward, at the
# training shapes of bench/bench_attention.cpp; and one decoding step (a query per
# sequence over a full cache, Hq 32, Hkv 8, D 128, enable_gqa, whatever backend PyTorch
# picks), replayed from a CUDA graph like ours, 20 steps a sample. Median ms by CUDA
# events after a warm-up, on the same GPU; keep the shapes in sync with the C++ side.
# Writes JSON for `bench_attention --peer FILE`. Python is used only for this comparison;
# it is not part of the product.
#
# Usage: python3 bench/torch_attention.py [OUT.json] [--reps N]
import json
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

TRAIN_SHAPES = [(8, 2048, 12, 64), (2, 8192, 12, 64), (1, 32768, 12, 64), (4, 4096, 32, 128)]  # B, T, H, D
DECODE_CTX = [8192, 16384, 32768, 65536]
DECODE_B = [1, 4, 16]
HQ, HKV, DH = 32, 8, 128
STEPS = 20


def time_ms(fn, warmup=3, reps=20):
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
    args = [a for a in sys.argv[1:]]
    reps = 20
    if "--reps" in args:
        i = args.index("--reps")
        reps = max(10, int(args[i + 1]))
        del args[i : i + 2]
    out_path = args[0] if args else "torch_attention.json"
    dev = "cuda"
    torch.manual_seed(0)
    res, errors = {}, {}
    bf16 = torch.bfloat16

    for B, T, H, D in TRAIN_SHAPES:
        key = f"B{B} T{T} H{H} D{D}"
        try:
            q, k, v = (torch.randn(B, H, T, D, device=dev, dtype=bf16, requires_grad=True) for _ in range(3))
            dO = torch.randn(B, H, T, D, device=dev, dtype=bf16)

            def fwd():
                with torch.no_grad():
                    F.scaled_dot_product_attention(q, k, v, is_causal=True)

            def fwdbwd():
                q.grad = k.grad = v.grad = None
                F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(dO)

            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                res[key] = {"fwd": time_ms(fwd, reps=reps), "fwdbwd": time_ms(fwdbwd, reps=reps)}
            print(f"torch sdpa flash {key:24s} fwd {res[key]['fwd']:8.3f} ms  fwd+bwd {res[key]['fwdbwd']:8.3f} ms",
                  flush=True)
            del q, k, v, dO
        except Exception as e:  # noqa: BLE001 — recorded, the other shapes still run
            errors[key] = repr(e)
            print(f"torch sdpa flash {key}: {e!r}", flush=True)
        torch.cuda.empty_cache()

    for ctx in DECODE_CTX:
        for B in DECODE_B:
            key = f"decode B{B} Hq{HQ} Hkv{HKV} D{DH} ctx{ctx}"
            try:
                with torch.no_grad():
                    q = torch.randn(B, HQ, 1, DH, device=dev, dtype=bf16)
                    kc = torch.randn(B, HKV, ctx, DH, device=dev, dtype=bf16)
                    vc = torch.randn(B, HKV, ctx, DH, device=dev, dtype=bf16)

                    # one query per sequence sees every cached key: no causal mask
                    def step():
                        return F.scaled_dot_product_attention(q, kc, vc, enable_gqa=True)

                    step()
                    torch.cuda.synchronize()
                    try:  # graphed like bench_attention's decode; eager if capture fails
                        g = torch.cuda.CUDAGraph()
                        s = torch.cuda.Stream()
                        s.wait_stream(torch.cuda.current_stream())
                        with torch.cuda.stream(s):
                            step()
                        torch.cuda.current_stream().wait_stream(s)
                        with torch.cuda.graph(g):
                            step()
                        run, how = g.replay, "graph"
                    except Exception:  # noqa: BLE001
                        run, how = step, "eager"

                    def steps():
                        for _ in range(STEPS):
                            run()

                    ms = time_ms(steps, reps=reps) / STEPS
                res[key] = {"ms": ms, "how": how}
                print(f"torch sdpa decode {key:36s} {ms * 1e3:8.1f} us/step ({how})", flush=True)
                del q, kc, vc
            except Exception as e:  # noqa: BLE001
                errors[key] = repr(e)
                print(f"torch sdpa decode {key}: {e!r}", flush=True)
            torch.cuda.empty_cache()

    out = {"torch_version": torch.__version__, "device": torch.cuda.get_device_name(0), "results": res}
    if errors:
        out["errors"] = errors
    with open(out_path, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
