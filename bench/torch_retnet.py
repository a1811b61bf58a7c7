#!/usr/bin/env python3
# bench/torch_retnet.py — an independent PyTorch implementation of our RetNet LM
# (docs/model.md §2–6, written from the math, not from our C++), used two ways:
#
#  1. correctness: loads the HDF5 checkpoint and the batch written by
#     `bench_train --save-check DIR`, computes the loss in fp32 and under bf16 autocast, and
#     compares with the losses our C++ model printed into DIR/ours.json;
#  2. a peer: times its own training step (eager, bf16 autocast, fp32 master weights, fused
#     AdamW) on the same shape, in the same run as ours.
#
# Retention here is the parallel form ((Q Kᵀ ⊙ D) V with D[t,s] = γ^(t−s) for t ≥ s),
# which is exact and simple; fine for T ≤ 4096 on an H200.
#
#   python3 bench/torch_retnet.py DIR [--time] [--json PATH]
# Not part of the product: the GPU machine has PyTorch and h5py; nothing else needs them.
import argparse
import json
import math
import time

import h5py
import numpy as np
import torch
import torch.nn.functional as F


def rms_norm(x, w, eps):
    x32 = x.float()
    y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    if w is not None:
        y = y * w.float()
    return y.to(x.dtype)


def xpos_tables(T, Dk, device):
    # θ_i = 1/10000^(i/(Dk/2−1)), each used for the interleaved pair (2i, 2i+1)
    i = torch.arange(Dk // 2, dtype=torch.float64, device=device)
    theta = 1.0 / (10000.0 ** (i / (Dk // 2 - 1)))
    ang = torch.arange(T, dtype=torch.float64, device=device)[:, None] * theta[None, :]
    cos = ang.cos().repeat_interleave(2, -1).float()
    sin = ang.sin().repeat_interleave(2, -1).float()
    return cos, sin


def rotate(x, cos, sin, H, Dk):
    B, T, _ = x.shape
    xh = x.view(B, T, H, Dk)
    x2 = torch.stack((-xh[..., 1::2], xh[..., 0::2]), dim=-1).flatten(-2)  # rot2
    y = xh.float() * cos[None, :, None, :] + x2.float() * sin[None, :, None, :]
    return y.to(x.dtype).view(B, T, H * Dk)


class RetNet(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d, vd, f, V = cfg["d_model"], cfg["value_dim"], cfg["ffn_dim"], cfg["vocab_size"]
        self.H = cfg["n_heads"]
        self.Dk, self.Dv = d // self.H, vd // self.H
        self.eps = cfg["norm_eps"]
        L = torch.nn.Linear
        self.embed_tokens = torch.nn.Embedding(V, d)
        self.layers = torch.nn.ModuleList()
        for _ in range(cfg["n_layers"]):
            blk = torch.nn.Module()
            blk.retention = torch.nn.Module()
            for n, (i, o) in dict(q_proj=(d, d), k_proj=(d, d), v_proj=(d, vd), g_proj=(d, vd), out_proj=(vd, d)).items():
                setattr(blk.retention, n, L(i, o, bias=False))
            blk.ffn = torch.nn.Module()
            blk.ffn.fc1, blk.ffn.gate, blk.ffn.fc2 = L(d, f, bias=False), L(d, f, bias=False), L(f, d, bias=False)
            blk.retention_layer_norm = torch.nn.Module()
            blk.retention_layer_norm.weight = torch.nn.Parameter(torch.ones(d))
            blk.final_layer_norm = torch.nn.Module()
            blk.final_layer_norm.weight = torch.nn.Parameter(torch.ones(d))
            self.layers.append(blk)
        self.layer_norm = torch.nn.Module()
        self.layer_norm.weight = torch.nn.Parameter(torch.ones(d))
        self.output_projection = L(d, V, bias=False)
        if cfg.get("decay", "torchscale") == "paper":
            lo, hi = math.log(1 / 32), math.log(1 / 512)
            self.gammas = [1 - math.exp(lo + (h / max(self.H - 1, 1)) * (hi - lo)) for h in range(self.H)]
        else:
            self.gammas = [1 - 2 ** (-5 - h) for h in range(self.H)]

    def retention(self, q, k, v):  # [B,H,T,D]; the parallel form, decay mask in log space
        T = q.shape[2]
        t = torch.arange(T, device=q.device, dtype=torch.float64)
        diff = t[:, None] - t[None, :]
        lg = torch.tensor([math.log(g) for g in self.gammas], device=q.device, dtype=torch.float64)
        D = torch.where(diff >= 0, torch.exp(diff[None] * lg[:, None, None]), torch.zeros((), device=q.device, dtype=torch.float64))
        # λ_n = 1/√(Σ_{j≤n} γ^j): the decay mask's row normalisation (docs/model.md §1)
        lam = (D.sum(-1)).rsqrt()  # [H, T]
        s = (q @ k.transpose(-1, -2)) * D.to(q.dtype)
        return (s @ v) * lam[None, :, :, None].to(q.dtype)

    def msr(self, blk, x, cos, sin):
        B, T, _ = x.shape
        r = blk.retention
        q = rotate(r.q_proj(x), cos, sin, self.H, self.Dk)
        k = rotate(r.k_proj(x) * (self.Dk ** -0.5), cos, sin, self.H, self.Dk)
        v = r.v_proj(x)
        g = r.g_proj(x)
        q, k = (z.view(B, T, self.H, self.Dk).transpose(1, 2) for z in (q, k))
        v = v.view(B, T, self.H, self.Dv).transpose(1, 2)
        y = rms_norm(self.retention(q, k, v), None, self.eps)  # per-head norm, no weight
        y = y.transpose(1, 2).reshape(B, T, self.H * self.Dv)
        return r.out_proj(F.silu(g) * y)

    def forward(self, tokens):
        T = tokens.shape[1]
        cos, sin = xpos_tables(T, self.Dk, tokens.device)
        x = self.embed_tokens(tokens)
        if torch.is_autocast_enabled():
            x = x.to(torch.bfloat16)
        for blk in self.layers:
            x = x + self.msr(blk, rms_norm(x, blk.retention_layer_norm.weight, self.eps), cos, sin)
            h = rms_norm(x, blk.final_layer_norm.weight, self.eps)
            x = x + blk.ffn.fc2(F.silu(blk.ffn.fc1(h)) * blk.ffn.gate(h))
        return self.output_projection(rms_norm(x, self.layer_norm.weight, self.eps))


def load(dir_, device):
    with h5py.File(f"{dir_}/model.h5", "r") as f:
        cfg = json.loads(f["config"][()].decode().rstrip("\0"))
        state = {k: torch.from_numpy(np.array(v[()])) for k, v in f["model"].items()}
    m = RetNet(cfg)
    missing, unexpected = m.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return m.to(device), cfg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--time", action="store_true", help="also time training steps (eager, bf16 autocast)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    dev = "cuda"
    model, cfg = load(a.dir, dev)
    ours = json.load(open(f"{a.dir}/ours.json"))
    B, T = ours["batch"], ours["seq"]
    batch = torch.from_numpy(np.fromfile(f"{a.dir}/batch.bin", dtype=np.int32).reshape(B, T + 1)).long().to(dev)
    x, y = batch[:, :-1], batch[:, 1:]
    V = cfg["vocab_size"]
    out = {"shape": f"B{B} T{T}", "vocab": V, "params": sum(p.numel() for p in model.parameters())}
    with torch.no_grad():
        out["torch_loss_f32"] = F.cross_entropy(model(x).float().view(-1, V), y.reshape(-1)).item()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out["torch_loss_bf16"] = F.cross_entropy(model(x).float().view(-1, V), y.reshape(-1)).item()
        # the float64 loss: how far each fp32 result is from the exact one
        m64 = RetNet(cfg).to(dev).double()
        m64.load_state_dict(model.state_dict())
        out["torch_loss_f64"] = F.cross_entropy(m64(x).view(-1, V), y.reshape(-1)).item()
        del m64
    out["ours_loss_f32"], out["ours_loss_bf16"] = ours.get("loss_f32"), ours.get("loss_bf16")
    out["abs_diff_f32"] = abs(out["torch_loss_f32"] - out["ours_loss_f32"])
    if out["ours_loss_bf16"] is not None:
        out["abs_diff_bf16"] = abs(out["torch_loss_bf16"] - out["ours_loss_bf16"])
    out["ours_f32_vs_f64"] = abs(out["ours_loss_f32"] - out["torch_loss_f64"])
    out["torch_f32_vs_f64"] = abs(out["torch_loss_f32"] - out["torch_loss_f64"])
    print(f"loss on the same batch and weights: f64 (torch) {out['torch_loss_f64']:.7f};  ours f32 {out['ours_loss_f32']:.7f}"
          f" (off by {out['ours_f32_vs_f64']:.1e}), torch f32 {out['torch_loss_f32']:.7f} (off by {out['torch_f32_vs_f64']:.1e});"
          f"  |ours − torch| f32 {out['abs_diff_f32']:.2e};  ours bf16 {out['ours_loss_bf16']}  torch bf16 {out['torch_loss_bf16']:.6f}")

    if a.time:
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=True)
        times = []
        torch.cuda.reset_peak_memory_stats()
        for i in range(3 + a.steps):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x).float().view(-1, V), y.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            loss.item()
            if i >= 3:
                times.append(time.perf_counter() - t0)
        t = sorted(times)[len(times) // 2]
        tps = B * T / t
        out.update(step_ms=t * 1e3, tokens_per_s=tps, mfu_6n_989=6 * out["params"] * tps / 989e12,
                   peak_gib=torch.cuda.max_memory_allocated() / 2**30)
        print(f"torch eager bf16 autocast (parallel retention): {t*1e3:.1f} ms/step  {tps:,.0f} tokens/s  "
              f"MFU(6N/989) {100*out['mfu_6n_989']:.1f}%  peak {out['peak_gib']:.2f} GiB")
    if a.json:
        json.dump(out, open(a.json, "w"), indent=2)


if __name__ == "__main__":
    main()
