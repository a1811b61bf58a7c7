#!/usr/bin/env python3
# bench/torch_transformer.py — an independent PyTorch implementation of our Llama-style
# Transformer baseline (nn/transformer.h, docs/transformer.md; written from the math, not
# from our C++ and not with `transformers`), used two ways:
#
#  1. --check DIR: loads the HDF5 checkpoint and the batch that
#     `bench_train --arch transformer --save-check DIR` wrote, computes the loss in fp32
#     (TF32 off; explicit softmax attention, so the reference does not depend on which SDPA
#     kernel a build picks), in fp64 and under bf16 autocast, and compares the fp32 loss with
#     the one our C++ model wrote into DIR/ours.json: |ours − torch| / torch < --tol
#     (default 1e-6), and the rows of our fp32 logits in DIR/logits_f32.bin with its own:
#     ‖ours − torch‖ / ‖torch‖ < --logits-tol (default 1e-5) — on random targets the loss
#     averages logit errors away, the logits do not. Exit status 1 if either fails. Two wrong
#     models (RoPE on adjacent pairs, no RoPE) are run too, to show the check's margin.
#  2. --train: times training steps of the same-shaped model — forward, cross-entropy,
#     backward, clip (max norm 2), fused AdamW, zero_grad — with fp32 master weights and bf16
#     autocast, SDPA attention (is_causal=True), eager and under torch.compile (mode default,
#     the loss function compiled whole: model + cross-entropy; compiling and warm-up steps
#     are not timed), median over --steps steps, at each shape of --batch/--seq (comma
#     lists, zipped; default B8 T2048, B2 T8192, B1 T32768). Reports tokens/s, MFU and peak
#     memory (torch.cuda.max_memory_allocated); a shape that runs out of memory is reported
#     as OOM and the next one runs.
#
# The model (pre-RMSNorm blocks, no biases, untied head unless the config ties it):
#   x = embed_tokens[tokens]
#   repeat L times:
#     h = input_layernorm(x);  q, k, v = h W_q, h W_k, h W_v   (H query heads, Hkv key/value heads, D = d/H)
#     q, k = RoPE(q), RoPE(k)   half-split (Llama's rotate_half): pairs (i, i + D/2), inv_freq_i = θ^(−2i/D)
#     x = x + o_proj(softmax(q kᵀ / sqrt(D) + causal mask) v)   (query head h reads kv head h // (H/Hkv))
#     h = post_attention_layernorm(x);  x = x + down_proj(silu(gate_proj h) ⊙ up_proj h)
#   logits = lm_head(norm(x))
#   RMSNorm(x) = x / sqrt(mean(x²) + eps) ⊙ w
#
# MFU (the formulas of bench/bench_train.cpp), over 989 TFLOP/s (H200 dense bf16 peak) and
# over 790 TFLOP/s (the bf16 matmul rate measured on the card):
#   "6N"    = 6·N·tokens/s, N = all parameters (embeddings included);
#   "model" = (6·P·tokens + 2·2·B·T²·D·H·L/2·3)/s, P the matmul parameters (per layer q, o:
#             d·H·D; k, v: d·Hkv·D; gate, up, down: d·f; and the head d·V).
#
# Model dimensions for --train: --config FILE (a checkpoint .h5, whose /config is read, or
# a JSON file in ModelConfig's form), else --d/--layers/--heads/--kv-heads/--ffn/--vocab,
# whose defaults are our `small` Transformer preset (nn/model_config.cpp: d 768, 12 layers,
# 6 heads of 128, SwiGLU width 2080, vocabulary 32,000).
#
#   python3 bench/torch_transformer.py --check DIR [--tol 1e-6] [--logits-tol 1e-5] [--device cuda|cpu] [--json PATH]
#   python3 bench/torch_transformer.py --train [--config FILE | --d 768 --layers 12 ...]
#           [--batch 8,2,1 --seq 2048,8192,32768] [--modes eager,compile] [--steps 10]
#           [--warmup 3] [--json PATH]
# Not part of the product: the GPU machine has PyTorch and h5py; nothing else needs them.
import argparse
import gc
import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


class RMSNorm(torch.nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        # statistics in fp32 (fp64 for fp64), the result in x's dtype
        xf = x if x.dtype == torch.float64 else x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.to(xf.dtype)
        return y.to(x.dtype)


def rope_tables(T, D, theta, device, dtype):
    # angles in float64 (exact to far beyond 32K positions), then the tables in `dtype`
    inv_freq = theta ** (-torch.arange(0, D // 2, dtype=torch.float64, device=device) * 2.0 / D)
    ang = torch.arange(T, dtype=torch.float64, device=device)[:, None] * inv_freq[None, :]  # [T, D/2]
    ang = torch.cat((ang, ang), dim=-1)  # [T, D]: column i and i + D/2 share an angle
    return ang.cos().to(dtype), ang.sin().to(dtype)


def rope(x, cos, sin, layout="half"):  # x [B, H, T, D]; rotated in the tables' dtype (fp32 for bf16 x)
    xf = x.to(cos.dtype)
    if layout == "none":  # the check's probes only
        return x
    if layout == "interleaved":  # pairs (2i, 2i + 1), RetNet's layout: a probe of the check's power
        c, s = cos[..., : x.shape[-1] // 2].repeat_interleave(2, -1), sin[..., : x.shape[-1] // 2].repeat_interleave(2, -1)
        rot = torch.stack((-xf[..., 1::2], xf[..., 0::2]), dim=-1).flatten(-2)
        return (xf * c + rot * s).to(x.dtype)
    half = x.shape[-1] // 2
    rot = torch.cat((-xf[..., half:], xf[..., :half]), dim=-1)  # rotate_half
    return (xf * cos + rot * sin).to(x.dtype)


class Attention(torch.nn.Module):
    def __init__(self, d, H, Hkv, D):
        super().__init__()
        self.H, self.Hkv, self.D = H, Hkv, D
        self.rope_layout = "half"  # other values: the check's probes
        L = torch.nn.Linear
        self.q_proj, self.k_proj = L(d, H * D, bias=False), L(d, Hkv * D, bias=False)
        self.v_proj, self.o_proj = L(d, Hkv * D, bias=False), L(H * D, d, bias=False)

    def forward(self, x, cos, sin, sdpa):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.H, self.D).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.Hkv, self.D).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.Hkv, self.D).transpose(1, 2)
        q, k = rope(q, cos, sin, self.rope_layout), rope(k, cos, sin, self.rope_layout)
        if self.Hkv != self.H:  # grouped-query: kv head g serves query heads g·rep … g·rep + rep − 1
            rep = self.H // self.Hkv
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        if sdpa:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # explicit, for the correctness check
            s = (q @ k.transpose(-1, -2)) * (self.D ** -0.5)
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            s = s.masked_fill(~mask, float("-inf"))
            o = torch.softmax(s, dim=-1) @ v
        return self.o_proj(o.transpose(1, 2).reshape(B, T, self.H * self.D))


class MLP(torch.nn.Module):
    def __init__(self, d, f):
        super().__init__()
        L = torch.nn.Linear
        self.gate_proj, self.up_proj, self.down_proj = L(d, f, bias=False), L(d, f, bias=False), L(f, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, H = cfg["d_model"], cfg["n_heads"]
        Hkv = cfg.get("n_kv_heads") or H
        self.input_layernorm = RMSNorm(d, cfg["norm_eps"])
        self.self_attn = Attention(d, H, Hkv, d // H)
        self.post_attention_layernorm = RMSNorm(d, cfg["norm_eps"])
        self.mlp = MLP(d, cfg["ffn_dim"])

    def forward(self, x, cos, sin, sdpa):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, sdpa)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(torch.nn.Module):
    def __init__(self, cfg, sdpa=True):
        super().__init__()
        assert cfg.get("arch", "retnet") == "transformer", f"config is for arch {cfg.get('arch', 'retnet')!r}"
        assert cfg.get("activation", "swish") in ("swish", "silu"), "only the SwiGLU MLP is written here"
        assert not cfg.get("dropout", 0.0), "dropout is not modelled here"
        self.cfg, self.sdpa = cfg, sdpa
        d, V = cfg["d_model"], cfg["vocab_size"]
        self.D = d // cfg["n_heads"]
        self.theta = float(cfg.get("rope_theta", 10000.0))
        self.embed_tokens = torch.nn.Embedding(V, d)
        self.layers = torch.nn.ModuleList(Block(cfg) for _ in range(cfg["n_layers"]))
        self.norm = RMSNorm(d, cfg["norm_eps"])
        self.tied = bool(cfg.get("tie_embeddings", False))
        if not self.tied:
            self.lm_head = torch.nn.Linear(d, V, bias=False)
        # Llama's init (the timing does not depend on it; --check loads our weights)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() == 2:
                    p.normal_(0.0, 0.02)

    def forward(self, tokens):
        T = tokens.shape[1]
        x = self.embed_tokens(tokens)
        # our model runs its residual stream in the compute dtype (bf16 for mixed precision)
        if torch.is_autocast_enabled():
            x = x.to(torch.bfloat16)
        tab = torch.float64 if x.dtype == torch.float64 else torch.float32
        cos, sin = rope_tables(T, self.D, self.theta, tokens.device, tab)
        for blk in self.layers:
            x = blk(x, cos, sin, self.sdpa)
        h = self.norm(x)
        return self.lm_head(h) if not self.tied else h @ self.embed_tokens.weight.to(h.dtype).t()


# ---------------------------------------------------------------- FLOPs (bench_train's formulas)
def matmul_params(cfg):
    d, f, H, L, V = cfg["d_model"], cfg["ffn_dim"], cfg["n_heads"], cfg["n_layers"], cfg["vocab_size"]
    Hkv, D = cfg.get("n_kv_heads") or H, cfg["d_model"] // cfg["n_heads"]
    return L * (2 * d * H * D + 2 * d * Hkv * D + 3 * d * f) + d * V


def model_flops_per_token(cfg, T):  # forward + backward = 3× the forward
    H, L, D = cfg["n_heads"], cfg["n_layers"], cfg["d_model"] // cfg["n_heads"]
    return 3 * (2 * matmul_params(cfg) + 2 * 2 * T * D * H * L / 2)


# ---------------------------------------------------------------- the check
def read_config(path):
    if path.endswith(".h5"):
        import h5py

        with h5py.File(path, "r") as f:
            raw = f["config"][()]
        return json.loads((raw.decode() if isinstance(raw, bytes) else str(raw)).rstrip("\0"))
    return json.load(open(path))


def load_checkpoint(dir_):
    import h5py

    with h5py.File(f"{dir_}/model.h5", "r") as f:
        raw = f["config"][()]
        cfg = json.loads((raw.decode() if isinstance(raw, bytes) else str(raw)).rstrip("\0"))
        state = {k: torch.from_numpy(np.array(v[()])) for k, v in f["model"].items()}
    m = Llama(cfg, sdpa=False)
    missing, unexpected = m.load_state_dict(state, strict=False)
    assert not missing and not unexpected, f"parameter names differ: missing {missing}, unexpected {unexpected}"
    return m, cfg


def check(a):
    dev = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dev.startswith("cuda"):  # plain fp32 products: TF32 would cost ~1e-3 relative
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    model, cfg = load_checkpoint(a.check)
    model = model.to(dev)
    ours = json.load(open(f"{a.check}/ours.json"))
    assert ours.get("arch", "transformer") == "transformer", f"{a.check}/ours.json is for arch {ours.get('arch')}"
    B, T, V = ours["batch"], ours["seq"], cfg["vocab_size"]
    batch = torch.from_numpy(np.fromfile(f"{a.check}/batch.bin", dtype=np.int32).reshape(B, T + 1)).long().to(dev)
    x, y = batch[:, :-1], batch[:, 1:]
    row, at = ours.get("logits_row"), ours.get("logits_positions")
    ours_rows = None
    if row is not None:
        ours_rows = torch.from_numpy(np.fromfile(f"{a.check}/logits_f32.bin", dtype=np.float32).reshape(len(at), V))
        ours_rows = ours_rows.double()

    def rows_rel(logits):  # ‖ours − this‖ / ‖this‖ over the sampled rows
        r = logits[row, at].double().cpu()
        return ((ours_rows - r).norm() / r.norm()).item()

    out = {"check": a.check, "device": dev, "shape": f"B{B} T{T}", "vocab": V,
           "params": sum(p.numel() for p in model.parameters())}
    def set_layout(layout):
        for blk in model.layers:
            blk.self_attn.rope_layout = layout

    with torch.no_grad():
        lg = model(x).float()
        out["torch_loss_f32"] = F.cross_entropy(lg.reshape(-1, V), y.reshape(-1)).item()
        if ours_rows is not None:
            out["logits_rel_diff_f32"] = rows_rel(lg)
        del lg
        # The check's power: at random init the attention is close to uniform and the loss
        # moves little with attention details, so the losses of two plausible wrong models
        # (RoPE on adjacent pairs, no RoPE) show how far a real bug would move it here.
        probes = {}
        for layout in ("interleaved", "none"):
            set_layout(layout)
            lg = model(x).float()
            lw = F.cross_entropy(lg.reshape(-1, V), y.reshape(-1)).item()
            probes[f"loss, rope_{layout}"] = abs(lw - out["torch_loss_f32"]) / abs(out["torch_loss_f32"])
            if ours_rows is not None:
                probes[f"logits, rope_{layout}"] = rows_rel(lg)
            del lg
        set_layout("half")
        out["probe_rel_diff"] = probes
        if dev.startswith("cuda"):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out["torch_loss_bf16"] = F.cross_entropy(model(x).float().reshape(-1, V), y.reshape(-1)).item()
        # the fp64 loss: how far each fp32 result is from the exact one
        model = model.double()
        out["torch_loss_f64"] = F.cross_entropy(model(x).reshape(-1, V), y.reshape(-1)).item()
    ours32 = ours["loss_f32"]
    out["ours_loss_f32"], out["ours_loss_bf16"] = ours32, ours.get("loss_bf16")
    out["rel_diff_f32"] = abs(ours32 - out["torch_loss_f32"]) / abs(out["torch_loss_f32"])
    out["ours_f32_vs_f64"] = abs(ours32 - out["torch_loss_f64"]) / abs(out["torch_loss_f64"])
    out["torch_f32_vs_f64"] = abs(out["torch_loss_f32"] - out["torch_loss_f64"]) / abs(out["torch_loss_f64"])
    out["tol"], out["logits_tol"] = a.tol, a.logits_tol
    out["ok"] = out["rel_diff_f32"] < a.tol and out.get("logits_rel_diff_f32", 0.0) < a.logits_tol
    print(f"loss on the same batch and weights ({out['shape']}, {dev}): ours f32 {ours32:.8f}, "
          f"torch f32 {out['torch_loss_f32']:.8f}, torch f64 {out['torch_loss_f64']:.8f}")
    print(f"  loss |ours − torch| / torch (f32) = {out['rel_diff_f32']:.2e} (tolerance {a.tol:.0e}: "
          f"{'ok' if out['rel_diff_f32'] < a.tol else 'FAILED'});  from f64: ours {out['ours_f32_vs_f64']:.1e}, "
          f"torch {out['torch_f32_vs_f64']:.1e}")
    if "logits_rel_diff_f32" in out:
        d = out["logits_rel_diff_f32"]
        print(f"  logits (sequence {row}, positions {at}) ‖ours − torch‖ / ‖torch‖ = {d:.2e} (tolerance "
              f"{a.logits_tol:.0e}: {'ok' if d < a.logits_tol else 'FAILED'})")
    else:
        print(f"  (no logits_f32.bin in {a.check}: written by a newer bench_train --save-check)")
    print("  power: a wrong model would differ by " + ", ".join(f"{v:.1e} ({k})" for k, v in probes.items()))
    weak = [k for k, v in probes.items() if v < 10 * (a.tol if k.startswith("loss") else a.logits_tol)]
    if weak and len(weak) == len(probes):
        print("  WARNING: every probe is within 10× its tolerance: at this shape and init the check barely tells "
              "a wrong model apart")
    if "torch_loss_bf16" in out and out["ours_loss_bf16"] is not None:
        print(f"  bf16: ours {out['ours_loss_bf16']:.6f}, torch (autocast) {out['torch_loss_bf16']:.6f} "
              f"(not asserted: the two round in different places)")
    return out


# ---------------------------------------------------------------- the peer's training step
def is_oom(e):
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


def free_cuda():
    gc.collect()
    torch.cuda.empty_cache()


def time_shape(cfg, B, T, mode, steps, warmup, dev="cuda"):
    V = cfg["vocab_size"]
    r = {"mode": mode, "batch": B, "seq": T}
    model = opt = x = y = None
    try:
        torch.manual_seed(0)
        model = Llama(cfg, sdpa=True).to(dev)
        n_params = sum(p.numel() for p in model.parameters())
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.05,
                                fused=dev.startswith("cuda"))
        g = torch.Generator(device="cpu").manual_seed(7)
        batch = torch.randint(0, V, (B, T + 1), generator=g).to(dev)
        x, y = batch[:, :-1].contiguous(), batch[:, 1:].contiguous()

        def loss_fn(x, y):
            with torch.autocast(dev.split(":")[0], dtype=torch.bfloat16):
                return F.cross_entropy(model(x).float().view(-1, V), y.view(-1))

        fn = torch.compile(loss_fn) if mode == "compile" else loss_fn

        def step():
            loss = fn(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss.item()  # syncs: the step is complete

        t0 = time.perf_counter()
        for _ in range(warmup):  # the first compiles under torch.compile
            step()
        r["warmup_s"] = time.perf_counter() - t0
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            r["loss"] = step()
            times.append(time.perf_counter() - t0)
        t = sorted(times)[len(times) // 2]
        tps = B * T / t
        f6n, fmodel = 6 * n_params * tps, model_flops_per_token(cfg, T) * tps
        r.update(params=n_params, step_ms=t * 1e3, tokens_per_s=tps, mfu_6n_989=f6n / 989e12,
                 mfu_6n_790=f6n / 790e12, mfu_model_989=fmodel / 989e12, mfu_model_790=fmodel / 790e12,
                 peak_gib=torch.cuda.max_memory_allocated() / 2**30, step_ms_all=[s * 1e3 for s in times])
    except Exception as e:  # noqa: BLE001 — one shape's failure must not end the run
        if is_oom(e):
            r["oom"] = True
            r["error"] = "out of memory"
        else:
            r["error"] = f"{type(e).__name__}: {str(e)[:500]}"
    finally:
        model = opt = x = y = None  # noqa: F841 — let the memory go before the next shape
        if mode == "compile":
            torch._dynamo.reset()  # each shape compiles afresh (no dynamic-shape recompile)
        free_cuda()
    return r


def train(a):
    assert torch.cuda.is_available(), "--train times the GPU; no CUDA device here"
    if a.config:
        cfg = read_config(a.config)
    else:
        cfg = {"arch": "transformer", "d_model": a.d, "n_layers": a.layers, "n_heads": a.heads,
               "n_kv_heads": a.kv_heads or a.heads, "ffn_dim": a.ffn, "vocab_size": a.vocab, "norm_eps": 1e-6,
               "rope_theta": 10000.0, "tie_embeddings": False, "activation": "swish"}
    cfg.setdefault("n_kv_heads", cfg["n_heads"])
    bs = [int(v) for v in str(a.batch).split(",")]
    ts = [int(v) for v in str(a.seq).split(",")]
    assert len(bs) == len(ts), "--batch and --seq must list as many values (they are zipped)"
    modes = a.modes.split(",")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}: d {cfg['d_model']}, {cfg['n_layers']} layers, "
          f"{cfg['n_heads']} heads ({cfg['n_kv_heads']} kv) of {cfg['d_model'] // cfg['n_heads']}, ffn "
          f"{cfg['ffn_dim']}, vocab {cfg['vocab_size']}; bf16 autocast, fp32 master weights, fused AdamW, SDPA")
    print("| mode | shape | step ms | tokens/s | MFU 6N (989) | MFU 6N (790) | MFU model (989) | peak GiB |\n"
          "|---|---|---|---|---|---|---|---|")
    runs = []
    for mode in modes:
        for B, T in zip(bs, ts):
            r = time_shape(cfg, B, T, mode, a.steps, a.warmup)
            runs.append(r)
            if "error" in r:
                print(f"| {mode} | B{B} T{T} | {'OOM' if r.get('oom') else r['error']} | | | | | |", flush=True)
            else:
                print(f"| {mode} | B{B} T{T} | {r['step_ms']:.2f} | {r['tokens_per_s']:,.0f} | "
                      f"{100 * r['mfu_6n_989']:.1f}% | {100 * r['mfu_6n_790']:.1f}% | "
                      f"{100 * r['mfu_model_989']:.1f}% | {r['peak_gib']:.2f} |", flush=True)
    return {"torch": torch.__version__, "device": torch.cuda.get_device_name(), "config": cfg, "runs": runs}


def main():
    ap = argparse.ArgumentParser(description="PyTorch peer of our Llama-style Transformer (see the file's top)")
    ap.add_argument("--check", metavar="DIR", help="compare our loss in DIR (bench_train --save-check) with this model's")
    ap.add_argument("--tol", type=float, default=1e-6, help="--check: largest relative difference of the fp32 losses")
    ap.add_argument("--logits-tol", type=float, default=1e-5,
                    help="--check: largest relative difference of the sampled fp32 logits")
    ap.add_argument("--device", default="", help="--check: cuda or cpu (default: cuda if present)")
    ap.add_argument("--train", action="store_true", help="time training steps on the GPU")
    ap.add_argument("--config", default="", help="--train: dims from a checkpoint .h5 or a config JSON")
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--kv-heads", type=int, default=0, help="0: as many as --heads")
    ap.add_argument("--ffn", type=int, default=2080)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--batch", default="8,2,1")
    ap.add_argument("--seq", default="2048,8192,32768")
    ap.add_argument("--modes", default="eager,compile")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    if not a.check and not a.train:
        ap.error("give --check DIR and/or --train")
    out, ok = {}, True
    if a.check:
        out["check"] = check(a)
        ok = out["check"]["ok"]
    if a.train:
        out["train"] = train(a)
    if a.json:
        json.dump(out, open(a.json, "w"), indent=2)
        print(f"wrote {a.json}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
