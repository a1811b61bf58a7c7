#!/usr/bin/env python3
# bench/torch_parity.py — issue 20 item 4: an independent PyTorch RetNet, in torchscale's
# variant and in flash-linear-attention's (fla), written from the architecture as
# docs/interop.md describes each (not from our C++), that reads a SOURCE checkpoint directly
# (model.safetensors + config.json in torchscale's or fla's naming and keys), runs the fixed
# prompt of `retnet convert --check` in fp32 (and f64, to see how far each fp32 side is from
# the exact value), and compares with what `retnet convert --check --json` prints for the
# checkpoint that `retnet convert` imported from the same file.
#
# --check prints, for the LAST prompt position only, mean/std/min/max/argmax over the V
# logits and the first 8 logits. Causality gives every position anyway: the logits at
# position t of the prompt are the last-position logits of its prefix of t+1 tokens, so
# --check runs once per prefix (--prompt-ids) and per mode (parallel, chunkwise, recurrent).
#
#   /usr/bin/python3 bench/torch_parity.py make-fla DIR [--seed S] [--tie] [--no-affine] [--unfused] ...
#   /usr/bin/python3 bench/torch_parity.py make-torchscale DIR [--seed S] [--tie] [--emb-norm] [--gelu]
#   /usr/bin/python3 bench/torch_parity.py compare SRC.safetensors --retnet BIN --ckpt IMPORTED.h5 [--tol 1e-5]
#   /usr/bin/python3 bench/torch_parity.py same-tensors A.safetensors B.safetensors
#
# Not part of the product (needs PyTorch and numpy; safetensors is parsed here with numpy).
import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------- safetensors (numpy)
_NP = {"F32": np.float32, "F64": np.float64, "F16": np.float16}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, t = e["data_offsets"]
        if e["dtype"] == "BF16":
            u = np.frombuffer(data[b:t], dtype=np.uint16).astype(np.uint32) << 16
            a = u.view(np.float32)
        else:
            a = np.frombuffer(data[b:t], dtype=_NP[e["dtype"]])
        out[name] = a.reshape(e["shape"]).copy()
    return out


def write_safetensors(path, tensors, metadata=None):
    header, off, blobs = {}, 0, []
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


# ---------------------------------------------------------------- the two variants
def rms_norm(x, w, eps):
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * w if w is not None else y


def decay_mask(gammas, T, lam, dtype):
    # D[h,n,m] = γ_h^(n−m) for n ≥ m, else 0 (f64, then cast); with lam, each row divided
    # by √(Σ_{j≤n} γ^j): torchscale's λ_n (fla has none)
    t = torch.arange(T, dtype=torch.float64)
    diff = t[:, None] - t[None, :]
    lg = torch.tensor([math.log(g) for g in gammas], dtype=torch.float64)
    D = torch.where(diff >= 0, torch.exp(diff[None] * lg[:, None, None]), torch.zeros((), dtype=torch.float64))
    if lam:
        D = D / D.sum(-1, keepdim=True).sqrt()
    return D.to(dtype)


class Variant:
    """A RetNet LM over a state dict in the SOURCE naming. kind: torchscale or fla."""

    def __init__(self, kind, cfg, sd, dtype):
        self.kind, self.dtype = kind, dtype
        self.sd = {k: torch.from_numpy(v).to(dtype) for k, v in sd.items()}
        if kind == "torchscale":
            c = cfg
            self.d, self.H, self.L = c["decoder_embed_dim"], c["decoder_retention_heads"], c["decoder_layers"]
            self.key_dim, self.value_dim = self.d, c["decoder_value_embed_dim"]
            self.eps = c.get("layernorm_eps", 1e-6)
            self.act = {"swish": F.silu, "silu": F.silu, "gelu": F.gelu}[c.get("activation_fn", "gelu")]
            self.emb_norm = c.get("layernorm_embedding", False)
            self.tied = c.get("share_decoder_input_output_embed", False)
            for k, want in dict(no_scale_embedding=True, decoder_normalize_before=True, deepnorm=False).items():
                assert c.get(k, want) == want, f"torchscale config {k}={c.get(k)} is not what this peer computes"
        else:
            c = cfg
            for k in ("feature_map", "attn", "num_kv_heads"):
                assert c.get(k) in (None, c.get("num_heads") if k == "num_kv_heads" else None), f"fla config {k}={c[k]}"
            assert not c.get("use_short_conv", False) and c.get("use_output_gate", True)
            assert c.get("hidden_act", "swish") in ("swish", "silu")
            self.d, self.H, self.L = c["hidden_size"], c["num_heads"], c["num_hidden_layers"]
            self.key_dim = int(round(self.d * c.get("expand_k", 1)))
            self.value_dim = int(round(self.d * c.get("expand_v", 2)))
            self.eps = c.get("norm_eps", 1e-6)
            self.act = F.silu
            self.emb_norm = False
            self.tied = c.get("tie_word_embeddings", False)
            self.affine = c.get("elementwise_affine", True)
        self.Dk, self.Dv = self.key_dim // self.H, self.value_dim // self.H
        self.gammas = [1 - 2 ** (-5 - h) for h in range(self.H)]  # both: γ_h = 1 − 2^(−5−h)
        # the other variant's choice for one switch (the sensitivity report): rotation, λ
        self.rot = "xpos" if kind == "torchscale" else "rope_half"
        self.lam = kind == "torchscale"

    def w(self, name):
        return self.sd[name]

    # torchscale: xPos-style interleaved pairs (2i, 2i+1), θ_i = 10000^(−i/(Dk/2−1))
    # fla: half-split RoPE, pairs (i, i+Dk/2), inv_freq_i = 10000^(−2i/Dk)
    # Tables in f64, then cast: the exact angles rounded once.
    def rotate(self, x, T):  # x [T, H, Dk]
        Dk, half = self.Dk, self.Dk // 2
        i = torch.arange(half, dtype=torch.float64)
        pos = torch.arange(T, dtype=torch.float64)[:, None]
        if self.rot == "xpos":
            theta = 1.0 / (10000.0 ** (i / (half - 1))) if half > 1 else torch.ones(1, dtype=torch.float64)
            ang = pos * theta[None, :]
            cos = ang.cos().repeat_interleave(2, -1).to(self.dtype)[:, None, :]
            sin = ang.sin().repeat_interleave(2, -1).to(self.dtype)[:, None, :]
            x2 = torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)
        else:
            inv = 1.0 / (10000.0 ** (2 * i / Dk))
            ang = pos * inv[None, :]
            cos = torch.cat((ang.cos(), ang.cos()), -1).to(self.dtype)[:, None, :]
            sin = torch.cat((ang.sin(), ang.sin()), -1).to(self.dtype)[:, None, :]
            x2 = torch.cat((-x[..., half:], x[..., :half]), -1)
        return x * cos + x2 * sin

    def retention_block(self, l, x, ts_normalisers=False):
        T = x.shape[0]
        H, Dk, Dv = self.H, self.Dk, self.Dv
        if self.kind == "torchscale":
            p = f"layers.{l}.retention."
            q, k, v, g = (x @ self.w(p + n + "_proj.weight").T for n in "qkvg")
            k = k * Dk ** -0.5  # torchscale scales K, before the rotation
            q = self.rotate(q.view(T, H, Dk), T)
            k = self.rotate(k.view(T, H, Dk), T)
        else:
            p = f"model.layers.{l}.attn."
            q, k, v, g = (x @ self.w(p + n + "_proj.weight").T for n in "qkvg")
            q = self.rotate(q.view(T, H, Dk), T) * Dk ** -0.5  # fla scales Q, inside its kernel
            k = self.rotate(k.view(T, H, Dk), T)
        v = v.view(T, H, Dv)
        D = decay_mask(self.gammas, T, lam=self.lam, dtype=self.dtype)  # [H,T,T]
        s = torch.einsum("nhd,mhd->hnm", q, k) * D
        if ts_normalisers:  # torchscale's data-dependent row normaliser (docs/model.md §1 leaves it out)
            s = s / s.abs().sum(-1, keepdim=True).clamp(min=1, max=5e4)
        o = torch.einsum("hnm,mhd->nhd", s, v)  # [T,H,Dv]
        if self.kind == "torchscale":
            o = rms_norm(o, None, self.eps)
            out_w = self.w(p + "out_proj.weight")
        else:
            gw = None
            if self.affine:
                gw = self.sd.get(p + "g_norm_swish_gate.weight", self.sd.get(p + "g_norm.weight"))
            o = rms_norm(o, gw, self.eps)
            out_w = self.w(p + "o_proj.weight")
        o = o.reshape(T, H * Dv)
        return (F.silu(g) * o) @ out_w.T

    def forward(self, ids, ts_normalisers=False):
        ids = torch.tensor(ids, dtype=torch.long)
        if self.kind == "torchscale":
            emb = self.w("embed_tokens.weight")
            x = emb[ids]
            if self.emb_norm:
                x = rms_norm(x, self.w("layernorm_embedding.weight"), self.eps)
            for l in range(self.L):
                p = f"layers.{l}."
                x = x + self.retention_block(l, rms_norm(x, self.w(p + "retention_layer_norm.weight"), self.eps), ts_normalisers)
                h = rms_norm(x, self.w(p + "final_layer_norm.weight"), self.eps)
                x = x + (self.act(h @ self.w(p + "ffn.fc1.weight").T) * (h @ self.w(p + "ffn.gate.weight").T)) @ self.w(p + "ffn.fc2.weight").T
            x = rms_norm(x, self.w("layer_norm.weight"), self.eps)
            head = emb if self.tied else self.w("output_projection.weight")
        else:
            emb = self.w("model.embeddings.weight")
            x = emb[ids]
            for l in range(self.L):
                p = f"model.layers.{l}."
                x = x + self.retention_block(l, rms_norm(x, self.w(p + "attn_norm.weight"), self.eps))
                h = rms_norm(x, self.w(p + "mlp_norm.weight"), self.eps)
                x = x + (F.silu(h @ self.w(p + "mlp.gate_proj.weight").T) * (h @ self.w(p + "mlp.up_proj.weight").T)) @ self.w(p + "mlp.down_proj.weight").T
            x = rms_norm(x, self.w("model.norm.weight"), self.eps)
            head = emb if self.tied else self.w("lm_head.weight")
        return x @ head.T  # [T, V]


def load_source(path):
    cfg = json.load(open(os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")))
    kind = "torchscale" if "decoder_embed_dim" in cfg else "fla" if "hidden_size" in cfg else None
    assert kind, f"{path}: config.json is neither torchscale's nor fla's"
    return kind, cfg, read_safetensors(path)


# ---------------------------------------------------------------- random source checkpoints
def rand(rng, shape, std):
    return (rng.standard_normal(shape) * std).astype(np.float32)


def norm_w(rng, n):  # away from 1, so that a norm weight applied to the wrong tensor shows
    return (1.0 + 0.3 * rng.standard_normal(n)).astype(np.float32)


def make_fla(a):
    rng = np.random.default_rng(a.seed)
    d, H, L, V = a.d, a.heads, a.layers, a.vocab
    kd, vd = int(d * a.expand_k), int(d * a.expand_v)
    ffn = a.ffn if a.ffn else 256 * ((int(d * 2 * 2 / 3) + 255) // 256)  # fla's formula, hidden_ratio 2
    cfg = {"model_type": "retnet", "architectures": ["RetNetForCausalLM"], "attn_mode": "chunk", "hidden_size": d,
           "expand_k": a.expand_k, "expand_v": a.expand_v, "hidden_ratio": 2,
           "intermediate_size": a.ffn if a.ffn else None, "num_hidden_layers": L, "num_heads": H, "num_kv_heads": None,
           "feature_map": None, "hidden_act": "swish", "use_short_conv": False, "use_output_gate": True,
           "elementwise_affine": not a.no_affine, "norm_eps": a.eps, "attn": None, "fuse_norm": not a.unfused,
           "vocab_size": V, "tie_word_embeddings": a.tie}
    s = a.scale
    sd = {"model.embeddings.weight": rand(rng, (V, d), 1.0)}
    for l in range(L):
        p = f"model.layers.{l}."
        sd[p + "attn_norm.weight"] = norm_w(rng, d)
        sd[p + "attn.q_proj.weight"] = rand(rng, (kd, d), s / math.sqrt(d))
        sd[p + "attn.k_proj.weight"] = rand(rng, (kd, d), s / math.sqrt(d))
        sd[p + "attn.v_proj.weight"] = rand(rng, (vd, d), s / math.sqrt(d))
        sd[p + "attn.g_proj.weight"] = rand(rng, (vd, d), s / math.sqrt(d))
        sd[p + "attn.o_proj.weight"] = rand(rng, (d, vd), s / math.sqrt(vd))
        if not a.no_affine:
            sd[p + ("attn.g_norm.weight" if a.unfused else "attn.g_norm_swish_gate.weight")] = norm_w(rng, vd // H)
        sd[p + "mlp_norm.weight"] = norm_w(rng, d)
        sd[p + "mlp.gate_proj.weight"] = rand(rng, (ffn, d), s / math.sqrt(d))
        sd[p + "mlp.up_proj.weight"] = rand(rng, (ffn, d), s / math.sqrt(d))
        sd[p + "mlp.down_proj.weight"] = rand(rng, (d, ffn), s / math.sqrt(ffn))
    sd["model.norm.weight"] = norm_w(rng, d)
    sd["lm_head.weight"] = sd["model.embeddings.weight"].copy() if a.tie else rand(rng, (V, d), 3 / math.sqrt(d))
    os.makedirs(a.dir, exist_ok=True)
    write_safetensors(os.path.join(a.dir, "model.safetensors"), sd, {"format": "pt"})
    json.dump(cfg, open(os.path.join(a.dir, "config.json"), "w"), indent=2)


def make_torchscale(a):
    rng = np.random.default_rng(a.seed)
    d, H, L, V, vd, ffn = a.d, a.heads, a.layers, a.vocab, int(a.d * a.expand_v), a.ffn or 2 * a.d
    cfg = {"decoder_embed_dim": d, "decoder_value_embed_dim": vd, "decoder_retention_heads": H,
           "decoder_ffn_embed_dim": ffn, "decoder_layers": L, "vocab_size": V,
           "activation_fn": "gelu" if a.gelu else "swish", "layernorm_eps": a.eps, "layernorm_embedding": a.emb_norm,
           "share_decoder_input_output_embed": a.tie, "no_scale_embedding": True, "decoder_normalize_before": True,
           "deepnorm": False, "moe_freq": 0, "no_output_layer": False, "dropout": 0.0, "activation_dropout": 0.0,
           "drop_path_rate": 0.0, "chunkwise_recurrent": True, "recurrent_chunk_size": 64}
    s = a.scale
    sd = {"embed_tokens.weight": rand(rng, (V, d), 1.0)}
    if a.emb_norm:
        sd["layernorm_embedding.weight"] = norm_w(rng, d)
    for l in range(L):
        p = f"layers.{l}."
        for n, shp, fan in (("q", (d, d), d), ("k", (d, d), d), ("v", (vd, d), d), ("g", (vd, d), d)):
            sd[p + f"retention.{n}_proj.weight"] = rand(rng, shp, s / math.sqrt(fan))
        sd[p + "retention.out_proj.weight"] = rand(rng, (d, vd), s / math.sqrt(vd))
        sd[p + "retention_layer_norm.weight"] = norm_w(rng, d)
        sd[p + "final_layer_norm.weight"] = norm_w(rng, d)
        sd[p + "ffn.fc1.weight"] = rand(rng, (ffn, d), s / math.sqrt(d))
        sd[p + "ffn.gate.weight"] = rand(rng, (ffn, d), s / math.sqrt(d))
        sd[p + "ffn.fc2.weight"] = rand(rng, (d, ffn), s / math.sqrt(ffn))
    sd["layer_norm.weight"] = norm_w(rng, d)
    sd["output_projection.weight"] = sd["embed_tokens.weight"].copy() if a.tie else rand(rng, (V, d), 3 / math.sqrt(d))
    # torchscale's RetNetRelPos buffers, as its state_dict holds them (the import skips them)
    half = d // H // 2
    ang = 1.0 / (10000.0 ** np.linspace(0, 1, half))
    sd["retnet_rel_pos.angle"] = np.repeat(ang, 2).astype(np.float32)
    sd["retnet_rel_pos.decay"] = np.log(1 - 2.0 ** (-5 - np.arange(H, dtype=np.float32))).astype(np.float32)
    os.makedirs(a.dir, exist_ok=True)
    write_safetensors(os.path.join(a.dir, "model.safetensors"), sd, {"format": "pt"})
    json.dump(cfg, open(os.path.join(a.dir, "config.json"), "w"), indent=2)


# ---------------------------------------------------------------- the comparison
def check_prompt(V):  # `retnet convert --check`'s default: 16 ids (7 + 31·i) mod V
    return [(7 + 31 * i) % V for i in range(16)]


OURS_DEVICE = os.environ.get("PARITY_DEVICE", "cpu")  # where `retnet convert --check` runs (cuda on the GPU machine)


def ours_check(retnet, ckpt, ids, mode):
    out = subprocess.run([retnet, "convert", "--check", ckpt, "--json", "--mode", mode, "--device", OURS_DEVICE,
                          "--prompt-ids", ",".join(map(str, ids))], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def ours_all_logits(retnet, ckpt, ids, mode, V):
    """every position's logits through --check --dump-logits: f32 [T, V]"""
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        subprocess.run([retnet, "convert", "--check", ckpt, "--json", "--mode", mode, "--device", OURS_DEVICE,
                        "--dump-logits", f.name,
                        "--prompt-ids", ",".join(map(str, ids))], check=True, capture_output=True, text=True)
        return torch.from_numpy(np.fromfile(f.name, dtype="<f4").reshape(len(ids), V).copy())


def stats(row):  # what --check computes from the V logits of one position (f64 sums of f32 values)
    r = row.double()
    mean = r.mean().item()
    return dict(mean=mean, std=math.sqrt(((r - mean) ** 2).mean().item()), min=r.min().item(), max=r.max().item(),
                argmax=int(r.argmax().item()), first8=[float(v) for v in r[:8]],
                checksum=sum((i + 1) * float(v) for i, v in enumerate(r[:8])))


def full_first8(a, ids):
    return ours_check(a.retnet, a.ckpt, ids, "parallel")["first8"]


def compare(a):
    kind, cfg, sd = load_source(a.src)
    m32, m64 = Variant(kind, cfg, sd, torch.float32), Variant(kind, cfg, sd, torch.float64)
    ref = ours_check(a.retnet, a.ckpt, [0], "parallel")
    V = ref["vocab_size"]
    ids = check_prompt(V)
    with torch.no_grad():
        L32, L64 = m32.forward(ids), m64.forward(ids)
        Lts = m32.forward(ids, ts_normalisers=True) if kind == "torchscale" else None
    print(f"{a.src} ({kind}): ours on {OURS_DEVICE}; V {V}, prompt {len(ids)} tokens; torch fp32 logits: std {L32.std().item():.3f}, "
          f"max |logit| {L32.abs().max().item():.3f}")
    # errors relative to the position's logit scale max_v |logit_v| (a logit near 0 has no
    # meaningful elementwise relative error); std/min/max also elementwise relative
    worst = {}
    argmax_bad = []

    def note(key, err):
        worst[key] = max(worst.get(key, 0.0), err)

    full = None
    for mode in ("parallel", "chunkwise", "recurrent"):
        for t in range(len(ids)):
            o = ours_check(a.retnet, a.ckpt, ids[:t + 1], mode)
            if t == len(ids) - 1 and mode == "parallel":
                full = o
            for ref_name, Lr in (("torch32", L32), ("torch64", L64)):
                r = stats(Lr[t])
                scale = Lr[t].abs().max().item()
                fe = max(abs(x - y) for x, y in zip(o["first8"], r["first8"])) / scale
                note((ref_name, mode, "first8 /scale"), fe)
                note((ref_name, mode, "first8 elementwise"),
                     max(abs(x - y) / abs(y) for x, y in zip(o["first8"], r["first8"]) if abs(y) > 0))
                for k in ("mean", "std", "min", "max"):
                    note((ref_name, mode, f"{k} /scale"), abs(o[k] - r[k]) / scale)
                for k in ("std", "min", "max"):
                    note((ref_name, mode, f"{k} relative"), abs(o[k] - r[k]) / abs(r[k]))
                cs = sum((i + 1) * abs(y) for i, y in enumerate(r["first8"]))
                note((ref_name, mode, "checksum /Σ(i+1)|x_i|"), abs(o["checksum"] - r["checksum"]) / cs)
                if o["argmax"] != r["argmax"]:
                    gap = (Lr[t][r["argmax"]] - Lr[t][o["argmax"]]).abs().item() / scale
                    if gap > a.tol:  # a near-tie within the tolerance is not a disagreement
                        argmax_bad.append((ref_name, mode, t, o["argmax"], r["argmax"], gap))
    # every logit of every position at once (--dump-logits), against the peer
    for mode in ("parallel", "chunkwise", "recurrent"):
        ours = ours_all_logits(a.retnet, a.ckpt, ids, mode, V).double()
        for ref_name, Lr in (("torch32", L32), ("torch64", L64)):
            Ld = Lr.double()
            note((ref_name, mode, "all logits /scale"), ((ours - Ld).abs().amax(-1) / Ld.abs().amax(-1)).max().item())
    # sensitivity: the peer with one switch at the other variant's setting, against ours at
    # the last position; what is near or below the tolerance could not be told apart
    sens, sens_v = [], {}
    for what, attr, val in (("rotation", "rot", "rope_half" if kind == "torchscale" else "xpos"),
                            ("lambda", "lam", kind != "torchscale")):
        mm = Variant(kind, cfg, sd, torch.float64)
        setattr(mm, attr, val)
        with torch.no_grad():
            r = mm.forward(ids)[-1]
        sens_v[what] = max(abs(x - float(y)) for x, y in zip(full_first8(a, ids), r[:8])) / r.abs().max().item()
        sens.append(f"{what} {sens_v[what]:.1e}")
    print("  (info) the peer with one switch flipped, first8 vs ours /scale: " + ", ".join(sens))
    # the fp32 peer against f64: how much of the gap is the peer's own rounding
    t32 = ((L32.double() - L64).abs().amax(-1) / L64.abs().amax(-1)).max().item()
    print(f"  torch fp32 vs torch f64, all {V} logits of all {len(ids)} positions: {t32:.2e} (/max|logit| per position)")
    if Lts is not None:
        tsn = ((Lts.double() - L32.double()).abs().amax(-1) / L32.abs().amax(-1).double()).max().item()
        print(f"  (info) with torchscale's data-dependent normaliser |QKᵀ⊙D| row sum, clamp(1): off by {tsn:.2e} "
              f"(docs/model.md §1 leaves it out; the per-head norm removes it up to eps)")
    modes = ("parallel", "chunkwise", "recurrent")
    print(f"  max over the {len(ids)} positions of |ours - torch|:   " + "  ".join(f"{m:>9s}" for m in modes))
    for rn in ("torch32", "torch64"):
        for q in sorted({q for (r, _, q) in worst if r == rn}):
            print(f"  vs {rn} {q:24s}          " + "  ".join(f"{worst[(rn, m, q)]:9.2e}" for m in modes))
    # --check on the source file itself (imported in memory) gives the same JSON as the .h5
    direct = ours_check(a.retnet, a.src, ids, "parallel")
    same_direct = direct == full
    print(f"  --check {os.path.basename(a.src)} (in-memory import) == --check {os.path.basename(a.ckpt)}: {same_direct}")
    fails = [f"{rn} {mode} {q}: {e:.2e} > {a.tol:g}" for (rn, mode, q), e in worst.items()
             if e > a.tol and not q.endswith("elementwise")]
    fails += [f"argmax {rn} {mode} position {t}: ours {x}, torch {y} (gap {g:.1e})" for rn, mode, t, x, y, g in argmax_bad]
    fails += [f"flipping {w} changes the logits by only {v:.1e} (< --min-sensitivity {a.min_sensitivity:g}): "
              f"this model could not tell the variants apart" for w, v in sens_v.items() if v < a.min_sensitivity]
    if not same_direct:
        fails.append("--check of the safetensors differs from --check of the imported .h5")
    if a.json:
        json.dump({"src": a.src, "kind": kind, "ours_device": OURS_DEVICE, "tol": a.tol, "torch32_vs_torch64": t32,
                   "worst": {" ".join(k): v for k, v in worst.items()}, "sensitivity": sens_v, "fails": fails}, open(a.json, "w"), indent=2)
    if fails:
        print("FAIL: " + "; ".join(fails))
        sys.exit(1)
    print(f"  {kind}: ours and the PyTorch peer agree to {a.tol:g} relative (every mode, every position)")


def same_tensors(a):
    x, y = read_safetensors(a.a), read_safetensors(a.b)
    assert sorted(x) == sorted(y), f"names differ: {sorted(set(x) ^ set(y))}"
    for k in x:
        assert x[k].shape == y[k].shape and np.array_equal(x[k].view(np.uint32), y[k].view(np.uint32)), f"{k} differs"
    print(f"same {len(x)} tensors, bit for bit: {a.a} {a.b}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("make-fla", "make-torchscale"):
        p = sub.add_parser(name)
        p.add_argument("dir")
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--d", type=int, default=64)
        p.add_argument("--heads", type=int, default=2)
        p.add_argument("--layers", type=int, default=2)
        p.add_argument("--vocab", type=int, default=400)
        p.add_argument("--expand-k", type=float, default=1.0)
        p.add_argument("--expand-v", type=float, default=2.0)
        p.add_argument("--ffn", type=int, default=0, help="fla: 0 = intermediate_size null (fla's formula)")
        p.add_argument("--scale", type=float, default=1.5, help="projection weights' std × √fan_in")
        p.add_argument("--tie", action="store_true")
        p.add_argument("--eps", type=float, default=1e-6,
                       help="every norm's eps; a large one makes λ visible (the per-head norm cancels it up to eps)")
        p.add_argument("--no-affine", action="store_true", help="fla: elementwise_affine false")
        p.add_argument("--unfused", action="store_true", help="fla: fuse_norm false (attn.g_norm.weight)")
        p.add_argument("--emb-norm", action="store_true", help="torchscale: layernorm_embedding")
        p.add_argument("--gelu", action="store_true", help="torchscale: activation_fn gelu")
    p = sub.add_parser("compare")
    p.add_argument("src")
    p.add_argument("--retnet", required=True)
    p.add_argument("--ckpt", required=True, help="the .h5 that `retnet convert SRC` imported")
    p.add_argument("--tol", type=float, default=1e-5)
    p.add_argument("--json", default="")
    p.add_argument("--min-sensitivity", type=float, default=0.0,
                   help="fail unless flipping each switch (rotation, λ) moves the logits at least this much")
    p = sub.add_parser("same-tensors")
    p.add_argument("a")
    p.add_argument("b")
    a = ap.parse_args()
    torch.set_num_threads(1)  # deterministic and polite on a shared machine
    {"make-fla": make_fla, "make-torchscale": make_torchscale, "compare": compare, "same-tensors": same_tensors}[a.cmd](a)


if __name__ == "__main__":
    main()
