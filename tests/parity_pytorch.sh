#!/usr/bin/env bash
# tests/parity_pytorch.sh — issue 20 item 4: our logits on `retnet convert --check`'s fixed
# prompt against an independent PyTorch RetNet (bench/torch_parity.py) that reads the SOURCE
# file, for torchscale's variant and flash-linear-attention's, to 1e-5 relative in fp32, in
# all three paradigms and at every prompt position. The models:
#   torchscale  a tiny model trained 6 steps at a high learning rate (weights far from the
#               init), exported with `--to torchscale`, imported back;
#               a random one written as torchscale saves it (tied, layernorm_embedding, gelu,
#               3 heads), imported;
#   fla         random ones written as fla saves them (expand_k 0.5 with a shared group-norm
#               weight; tied, 4 heads, elementwise_affine false, fuse_norm false and the
#               intermediate_size formula), imported with --from fla; and the first one
#               exported again with `--to fla` (same tensors bit for bit) and checked too.
# Random weights are scaled so the logits have std ~3-8: errors cannot hide in small logits.
# The per-head RMSNorm after retention cancels λ (torchscale has it, fla not) up to its eps:
# at eps 1e-6 flipping λ moves the logits by ~1e-7, below any fp32 tolerance, so one model
# of each variant has every norm's eps at 0.1, where flipping λ moves them by ~1e-2, and
# the peer must see both the rotation and λ move them by more than 1e-3 (--min-sensitivity).
# Needs PyTorch in /usr/bin/python3 (Debian's python3-torch); without it: SKIP, exit 77.
# Not registered in CTest (CI machines have no torch).
# Usage: [PARITY_DEVICE=cuda] parity_pytorch.sh PATH/TO/retnet
#   PARITY_DEVICE: where our side (`convert --check --device`) runs, in f32; the peer stays
#   on the CPU in fp32 and f64 (default: cpu)
set -euo pipefail
RETNET=$(realpath "$1")
PY=${PYTHON:-/usr/bin/python3}  # the GPU machine: PYTHON=python3
PEER=$(realpath "$(dirname "$0")/../bench/torch_parity.py")
if ! "$PY" -c "import torch, numpy" 2> /dev/null; then
  echo "SKIP: $PY has no torch (apt-get install python3-torch)"
  exit 77
fi
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
fail=0
compare() {  # compare NAME SRC.safetensors IMPORTED.h5 [MORE PEER OPTIONS]
  echo "== $1"
  local name=$1 src=$2 ck=$3; shift 3
  if ! "$PY" "$PEER" compare "$src" --retnet "$RETNET" --ckpt "$ck" --json "$name.json" "$@"; then fail=1; fi
}

# torchscale: trained, exported, imported
mkdir corpus
cp /usr/share/common-licenses/GPL-3 corpus/a.txt
"$RETNET" prepare corpus --out data --vocab 512 --val-fraction 0.3 > /dev/null
"$RETNET" train --data data --out run --steps 6 --batch 4 --seq-len 32 --lr 0.03 --min-lr 0.03 --warmup 1 \
  --weight-decay 0 --clip 0 --eval-interval 6 --eval-batches 1 --ckpt-interval 6 --sample-tokens 0 > /dev/null
mkdir ts_trained
"$RETNET" convert run/ckpt_6.h5 ts_trained/model.safetensors --to torchscale > /dev/null
"$RETNET" convert ts_trained/model.safetensors ts_trained.h5 > /dev/null
compare torchscale-trained ts_trained/model.safetensors ts_trained.h5

# torchscale: written as torchscale saves it
"$PY" "$PEER" make-torchscale ts_rand --seed 3 --d 48 --heads 3 --vocab 300 --ffn 80 --tie --emb-norm --gelu --eps 0.1
"$RETNET" convert ts_rand/model.safetensors ts_rand.h5 --from torchscale > /dev/null
compare torchscale-random-eps0.1 ts_rand/model.safetensors ts_rand.h5 --min-sensitivity 1e-3

# fla: written as fla saves it, two configurations
"$PY" "$PEER" make-fla fla_a --seed 5 --d 64 --heads 2 --vocab 400 --expand-k 0.5 --ffn 96
"$RETNET" convert fla_a/model.safetensors fla_a.h5 --from fla > /dev/null
compare fla-expand_k-affine fla_a/model.safetensors fla_a.h5
"$PY" "$PEER" make-fla fla_b --seed 7 --d 64 --heads 4 --vocab 333 --tie --no-affine --unfused --eps 0.1
"$RETNET" convert fla_b/model.safetensors fla_b.h5 --from fla > /dev/null
compare fla-tied-noaffine-unfused-eps0.1 fla_b/model.safetensors fla_b.h5 --min-sensitivity 1e-3

# fla: what `--to fla` writes is the same tensors, and the peer agrees on it too
mkdir fla_rt
"$RETNET" convert fla_a.h5 fla_rt/model.safetensors --to fla > /dev/null
"$PY" "$PEER" same-tensors fla_a/model.safetensors fla_rt/model.safetensors
"$RETNET" convert fla_rt/model.safetensors fla_rt.h5 > /dev/null
compare fla-exported fla_rt/model.safetensors fla_rt.h5

if [ $fail != 0 ]; then echo "parity pytorch: FAILED"; exit 1; fi
echo "parity pytorch: passed (torchscale and fla agree with the PyTorch peer to 1e-5 relative)"
