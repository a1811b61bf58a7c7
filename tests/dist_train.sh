#!/usr/bin/env bash
# tests/dist_train.sh — data-parallel training on the CPU in real processes (mpirun -np 2,
# ranks talking through MPI): a tiny RetNet, 4 steps, fp32.
#   - 2 ranks × batch 2 give the losses of 1 process × batch 4, to rounding (the gradient
#     sums differ only in order): plain all-reduce, ZeRO-1, ZeRO-2, and with gradient
#     accumulation;
#   - a checkpoint saved on 2 ranks (with and without ZeRO-1) resumes on 1 process and on
#     2 ranks with the same continuation, and `retnet inspect --diff` finds it equal to
#     the single-process checkpoint of the same step;
#   - context parallelism (--context-parallel 2) on 2 ranks, and with 2 data-parallel groups
#     on 4, gives the reference's losses; bad splits are refused;
#   - a rank started with a different option is refused, every rank naming that rank.
# Usage: dist_train.sh PATH/TO/retnet
set -euo pipefail
RETNET=$(realpath "$1")
command -v mpirun > /dev/null || { echo "SKIP: mpirun not found (install openmpi-bin)"; exit 77; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1  # CI runs as root
export OMP_NUM_THREADS=1  # two ranks on a 2-core machine: no oversubscription
# --oversubscribe: CI machines may report fewer slots than ranks; --bind-to none: let the
# OS place the ranks; the vader BTL's single-copy mode needs ptrace rights containers lack
MPIRUN=(mpirun --oversubscribe --bind-to none --mca btl_vader_single_copy_mechanism none)

mkdir corpus
cp /usr/share/common-licenses/GPL-3 corpus/a.txt
cp /usr/share/common-licenses/Apache-2.0 corpus/b.txt 2>/dev/null || cp /usr/share/common-licenses/GPL-2 corpus/b.txt
"$RETNET" prepare corpus --out data --vocab 512 --val-fraction 0.3 > /dev/null

# RN_DIST_DEVICE=cuda runs it all on GPUs (one per rank, NCCL), RN_DIST_DTYPE=bf16 with
# bf16 activations; RN_DIST_TOL and RN_DIST_CKPT_TOL set the loss and the checkpoint
# tolerances
DEVICE=${RN_DIST_DEVICE:-cpu}
DTYPE=${RN_DIST_DTYPE:-f32}
TOL=${RN_DIST_TOL:-2e-5}
echo "dist train: device $DEVICE, dtype $DTYPE, loss tolerance $TOL relative"
common=(--data data --seq-len 32 --device "$DEVICE" --dtype "$DTYPE" --eval-interval 2 --eval-batches 1 --ckpt-interval 2 --log-interval 1
        --sample-tokens 0 --bucket-mb 0.05)  # small buckets: several per model, overlap exercised
passed=0
losses() { grep -o '"loss":[^,]*' "$1/train_log.jsonl" | cut -d: -f2; }
vlosses() { grep -o '"val_loss":[^,]*' "$1/train_log.jsonl" | cut -d: -f2; }
# same_losses REF RUN [train-only]: as many steps, each loss within TOL relative (2e-5: fp32
# rounding of a reduction in another order, carried through 4 AdamW steps); validation
# losses too unless train-only (validation batches hold --batch rows per rank, so runs
# with accumulation evaluate fewer rows)
same_losses() {
  paste <(losses "$1") <(losses "$2") | awk -v a="$1" -v b="$2" -v tol="$TOL" '
    { n++; d = $1 - $2; if (d < 0) d = -d; r = d / ($1 < 0 ? -$1 : $1); if (r > worst) worst = r
      if (r > tol) { bad = 1; print "step " n ": " $1 " vs " $2 } }
    END { printf "  %-10s vs %-4s: %d steps, largest relative loss difference %.2e\n", b, a, n, worst
          if (n != 4 || bad) { print "FAIL: losses of " b " differ from " a " (" n " steps)"; exit 1 } }'
  [ "${3:-}" = train-only ] || paste <(vlosses "$1") <(vlosses "$2") | awk -v b="$2" -v tol="$TOL" '
    { d = $1 - $2; if (d < 0) d = -d; if (d > tol * $1) { print "FAIL: val loss of " b ": " $1 " vs " $2; exit 1 } }'
  passed=$((passed + 1))
}

# the reference: one process, 4 rows a step
"$RETNET" train "${common[@]}" --out ref --batch 4 --steps 4 > ref.txt
# activation checkpointing (each layer recomputed in the backward) changes no number
"$RETNET" train "${common[@]}" --out ref_ck --batch 4 --steps 4 --checkpoint-activations > /dev/null
same_losses ref ref_ck
# two ranks, 2 rows each
"${MPIRUN[@]}" -np 2 "$RETNET" train "${common[@]}" --out dp --batch 2 --steps 4 > dp.txt
grep -q "data parallel: 2 ranks ($([ "$DEVICE" = cpu ] && echo mpi || echo nccl))" dp.txt
grep -q "comm wait" dp.txt && grep -q '"peak_mem_mib_per_rank"' dp/train_log.jsonl
same_losses ref dp
# ZeRO-1
"${MPIRUN[@]}" -np 2 "$RETNET" train "${common[@]}" --out zero --batch 2 --steps 4 --zero 1 > /dev/null
same_losses ref zero
# ZeRO-2: the gradients sharded as well
"${MPIRUN[@]}" -np 2 "$RETNET" train "${common[@]}" --out zero2 --batch 2 --steps 4 --zero 2 > /dev/null
same_losses ref zero2
# gradient accumulation: 2 ranks × 2 micro-batches of 1 row, with and without ZeRO-1
"${MPIRUN[@]}" -np 2 "$RETNET" train "${common[@]}" --out accum --batch 1 --grad-accum 2 --steps 4 > /dev/null
same_losses ref accum train-only
"${MPIRUN[@]}" -np 2 "$RETNET" train "${common[@]}" --out accum_zero --batch 1 --grad-accum 2 --steps 4 --zero 1 > /dev/null
same_losses ref accum_zero train-only

# context parallelism: 2 ranks split every 32-token row in halves (the state passed between
# them, dist/context_parallel.h) and see the same 4 rows — the reference's step; then 2
# groups of 2 ranks (4 processes), 2 rows per group
if [ "$DEVICE" = cpu ]; then
  "${MPIRUN[@]}" -np 2 "$RETNET" train "${common[@]}" --out cp --batch 4 --steps 4 --context-parallel 2 > cp.txt
  grep -q "context parallel: 2 ranks per sequence (16 tokens each" cp.txt
  same_losses ref cp
  "${MPIRUN[@]}" -np 4 "$RETNET" train "${common[@]}" --out cp_dp --batch 2 --steps 4 --context-parallel 2 > cp_dp.txt
  grep -q "2 data-parallel groups" cp_dp.txt
  same_losses ref cp_dp
  # with activation checkpointing as well: the recomputation runs the state scan's
  # collectives again inside the backward, on every rank alike
  "${MPIRUN[@]}" -np 2 "$RETNET" train "${common[@]}" --out cp_ck --batch 4 --steps 4 --context-parallel 2 \
    --checkpoint-activations > /dev/null
  same_losses ref cp_ck
  # a world that is not a multiple, and an odd split, are refused before anything runs
  if "${MPIRUN[@]}" -np 2 "$RETNET" train "${common[@]}" --out cp_bad --batch 4 --steps 1 --context-parallel 3 \
      > cp_bad.txt 2>&1; then echo "FAIL: --context-parallel 3 on 2 ranks ran"; exit 1; fi
  grep -q "must divide --seq-len 32" cp_bad.txt
fi

# the checkpoints are the single-process format: inspect sees the same tensors, optimizer
# state included (within a tolerance for the reduction order)
"$RETNET" inspect zero/ckpt_4.h5 --diff ref/ckpt_4.h5 --optimizer --tolerance "${RN_DIST_CKPT_TOL:-1e-5}" > inspect.txt || {
  cat inspect.txt; echo "FAIL: ZeRO-1 checkpoint differs from the single-process one"; exit 1; }
tail -n 1 inspect.txt | sed 's/^/  inspect --diff: /'
passed=$((passed + 1))

# save on 2 ranks (ZeRO-1) at step 2, resume on 1 process with the same global batch
"${MPIRUN[@]}" -np 2 "$RETNET" train "${common[@]}" --out r1 --batch 2 --steps 2 --zero 1 > /dev/null
"$RETNET" train "${common[@]}" --out r1 --batch 4 --steps 4 --resume > r1.txt
grep -q "resumed from r1/ckpt_2.h5" r1.txt
same_losses ref r1
# save on 2 ranks (no ZeRO), resume on 2 ranks with ZeRO-1
"${MPIRUN[@]}" -np 2 "$RETNET" train "${common[@]}" --out r2 --batch 2 --steps 2 > /dev/null
"${MPIRUN[@]}" -np 2 "$RETNET" train "${common[@]}" --out r2 --batch 2 --steps 4 --resume --zero 1 > r2.txt
grep -q "resumed from r2/ckpt_2.h5" r2.txt
same_losses ref r2
# save on 1 process, resume on 2 ranks
"$RETNET" train "${common[@]}" --out r3 --batch 4 --steps 2 > /dev/null
"${MPIRUN[@]}" -np 2 "$RETNET" train "${common[@]}" --out r3 --batch 2 --steps 4 --resume > /dev/null
same_losses ref r3

# a rank with a different learning rate: refused before training, naming the rank
set +e
"${MPIRUN[@]}" -np 1 "$RETNET" train "${common[@]}" --out bad --batch 2 --steps 2 --lr 0.003 : \
  -np 1 "$RETNET" train "${common[@]}" --out bad --batch 2 --steps 2 --lr 0.001 > bad.txt 2>&1
rc=$?
set -e
if [ $rc = 0 ] || ! grep -q "rank 1 .* has a different configuration or data than rank 0" bad.txt \
   || ! grep -q 'lr: 0.001 on rank 1, 0.003 on rank 0' bad.txt; then
  cat bad.txt; echo "FAIL: a rank with another --lr was not refused with the message (rc $rc)"; exit 1
fi
test ! -e bad/ckpt_2.h5
passed=$((passed + 1))

# a rank that dies mid-run (SIGKILL) stops the whole job within seconds, not a hang, and
# the last checkpoint written before it stays readable
"${MPIRUN[@]}" -np 2 "$RETNET" train "${common[@]}" --out "$W/die" --batch 2 --steps 100000 --comm-timeout 20 \
  > die.txt 2>&1 &
job=$!
for _ in $(seq 600); do [ -e die/ckpt_4.h5 ] && break; sleep 0.1; done
victim=$(pgrep -f -- "--out $W/die --batch 2" | grep -vx "$job" | while read -r p; do
  [ "$(ps -o comm= -p "$p")" = retnet ] && echo "$p"; done | tail -1)
[ -n "$victim" ] || { cat die.txt; echo "FAIL: no rank process found to kill"; exit 1; }
t0=$(date +%s)
kill -9 "$victim"
set +e
wait $job; rc=$?
set -e
dt=$(( $(date +%s) - t0 ))
if [ $rc = 0 ] || [ $dt -gt 30 ]; then cat die.txt; echo "FAIL: killing a rank: rc $rc after $dt s"; exit 1; fi
"$RETNET" inspect "$(ls die/ckpt_*.h5 | sort -V | tail -1)" > /dev/null
passed=$((passed + 1))

echo "dist train: $passed passed, 0 failed"
