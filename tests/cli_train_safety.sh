#!/usr/bin/env bash
# tests/cli_train_safety.sh — `retnet train` loses nothing and refuses bad input, in real
# processes (issue 13): every out-of-range option is refused at start naming it, with no
# run folder created; a validation split shorter than a batch is refused before step 1; a
# folder holding a run is refused without --resume/--overwrite (its log and best.h5
# untouched), and --overwrite removes only the run's files (a user's *.tmp.<n> files stay,
# a dead writer's temporary goes); a second trainer on a busy --out is refused naming the
# holder's pid; SIGTERM saves like Ctrl-C (exit 143) and --resume continues; a stale lock
# is taken over with a note; a diverging run (--lr 1e6) skips its non-finite steps, stops
# with exit 2, keeps every log line valid JSON and a resumable last good checkpoint.
# Usage: cli_train_safety.sh PATH/TO/retnet
set -euo pipefail
RETNET=$(realpath "$1")
W=$(mktemp -d)
BG=
trap '[ -n "$BG" ] && kill "$BG" 2> /dev/null; rm -rf "$W"' EXIT
cd "$W"
export OMP_NUM_THREADS=1
mkdir corpus
cp /usr/share/common-licenses/GPL-3 corpus/a.txt
cp /usr/share/common-licenses/Apache-2.0 corpus/b.txt 2>/dev/null || cp /usr/share/common-licenses/GPL-2 corpus/b.txt
"$RETNET" prepare corpus --out data --vocab 512 --val-fraction 0.3 > /dev/null
passed=0
ok() { passed=$((passed + 1)); echo "  ok: $*"; }
fail() { echo "FAIL: $*"; exit 1; }
small=(--batch 2 --seq-len 32 --eval-interval 2 --eval-batches 1 --ckpt-interval 2 --log-interval 1 --sample-tokens 0)
common=(--data data "${small[@]}")
# expect_error RC PATTERN CMD...: the command exits RC with PATTERN on stderr
expect_error() {
  local want=$1 pattern=$2 rc=0
  shift 2
  "$@" > out.txt 2> err.txt || rc=$?
  [ "$rc" = "$want" ] || { cat out.txt err.txt; fail "$* exited $rc, expected $want"; }
  grep -qF -- "$pattern" err.txt || { cat err.txt; fail "$*: no '$pattern' in the error"; }
}

# 1. options: each refused at start, naming the option; nothing written
for bad in "--eval-interval 0" "--ckpt-interval 0" "--log-interval 0" "--eval-batches 0" "--lr nan" "--lr -1" \
           "--warmup -5" "--max-bad-steps 0" "--sample-top-p 0"; do
  read -r opt val <<< "$bad"
  expect_error 2 "$opt" "$RETNET" train --data data --batch 2 --seq-len 32 --out run_v --steps 2 "$opt" "$val"
  grep -qF -- "$val" err.txt || fail "$bad: the value is not in the error"
  [ ! -e run_v ] || fail "$bad: a run folder was created"
done
ok "9 bad options refused by name before anything was written"

# 2. a validation split shorter than one batch: refused before step 1 (it used to crash at
# the first evaluation), naming the split and the tokens it needs
tokens() { od -An -t u8 -j 16 -N 8 "$1" | tr -d ' '; }  # the shard header's token count
T=$(tokens data/val.bin)
[ "$(tokens data/train.bin)" -ge $((2 * T)) ] || fail "test corpus: the training split is too small for this check"
expect_error 2 "val.bin holds $T tokens, fewer than one validation batch needs" \
  "$RETNET" train --data data --batch 1 --seq-len "$T" --eval-interval 2 --out run_short --steps 2
[ ! -e run_short/train_log.jsonl ] || fail "a step ran without a validation batch"
ok "a validation split shorter than a batch is refused before step 1"

# 3. a folder that holds a run: refused; --overwrite removes only the run's files
"$RETNET" train "${common[@]}" --out run_a --steps 4 > /dev/null
cp run_a/train_log.jsonl log_before && cp run_a/best.h5 best_before
expect_error 2 "already holds a run" "$RETNET" train "${common[@]}" --out run_a --steps 2
grep -qF -- "--resume" err.txt && grep -qF -- "--overwrite" err.txt || fail "the refusal does not name --resume/--overwrite"
cmp -s log_before run_a/train_log.jsonl && cmp -s best_before run_a/best.h5 || fail "the refused run changed the old run"
echo "mine" > run_a/notes.txt.tmp.999999999          # a user's files with temporary-like names
echo "mine" > run_a/ckpt_9.h5.tmp.999999999
cp run_a/ckpt_4.h5 run_a/ckpt_7.h5.tmp.999999999    # what a writer that died leaves
printf 'retnet-gemm-pins 1\ndevice X\ncublaslt 1\n' > run_a/gemm_plans.txt   # the run's GEMM picks (a GPU run writes them)
"$RETNET" train "${common[@]}" --out run_a --steps 2 --overwrite > over.txt
grep -q "removed" over.txt && [ ! -e run_a/ckpt_4.h5 ] && [ -e run_a/ckpt_2.h5 ] || fail "--overwrite did not start afresh"
[ "$(grep -c '"step"' run_a/train_log.jsonl)" = 2 ] || fail "--overwrite kept the old log"
[ -e run_a/notes.txt.tmp.999999999 ] && [ -e run_a/ckpt_9.h5.tmp.999999999 ] || fail "a user's file was deleted"
[ ! -e run_a/ckpt_7.h5.tmp.999999999 ] || fail "a dead writer's temporary was left"
[ ! -e run_a/gemm_plans.txt ] || fail "--overwrite kept the old run's GEMM picks"
ok "a folder holding a run is refused; --overwrite removes only the run's files"

# 4. a second trainer on a busy folder is refused; SIGTERM saves; --resume continues
"$RETNET" train --data data --batch 2 --seq-len 32 --sample-tokens 0 --out run_b --steps 100000 > b.txt 2>&1 &
BG=$!
for _ in $(seq 300); do [ -s run_b/train_log.jsonl ] && break; sleep 0.1; done
[ -s run_b/train_log.jsonl ] || { cat b.txt; fail "the background trainer did not start"; }
grep -q "\"pid\":$BG" run_b/train.lock || fail "the lock file does not name the trainer"
expect_error 2 "in use by another trainer: pid $BG" "$RETNET" train "${common[@]}" --out run_b --steps 2 --resume
ok "a second trainer on the same --out is refused, naming pid $BG"
kill -TERM "$BG"
rc=0; wait "$BG" || rc=$?; BG=
[ "$rc" = 143 ] || { cat b.txt; fail "SIGTERM: exit $rc, expected 143"; }
grep -q "interrupted (SIGTERM): saved run_b/ckpt_" b.txt || { cat b.txt; fail "SIGTERM saved nothing"; }
[ ! -e run_b/train.lock ] || fail "the lock was not released"
saved=$(ls run_b/ckpt_*.h5 | sed 's/.*ckpt_\([0-9]*\).h5/\1/' | sort -n | tail -1)
"$RETNET" train "${common[@]}" --out run_b --steps $((saved + 2)) --resume > resumed.txt
grep -q "resumed from run_b/ckpt_$saved.h5" resumed.txt && [ -e "run_b/ckpt_$((saved + 2)).h5" ] || fail "no resume after SIGTERM"
ok "SIGTERM after step $saved saved a checkpoint (exit 143) and --resume continued it"

# 5. a lock left by a dead trainer is taken over with a note
echo "{\"pid\": 999999999, \"host\": \"$(hostname)\", \"started\": \"earlier\"}" > run_b/train.lock
"$RETNET" train "${common[@]}" --out run_b --steps $((saved + 4)) --resume > /dev/null 2> stale.txt
grep -q "taking over the stale lock" stale.txt || { cat stale.txt; fail "no note on the stale lock"; }
ok "a stale lock is taken over with a note"

# 6. divergence: non-finite steps skipped, the run stops (exit 2) with a resumable checkpoint
expect_error 2 "steps in a row had a non-finite loss" "$RETNET" train --data data --batch 2 --seq-len 32 --eval-interval 2 \
  --eval-batches 1 --sample-tokens 0 --out run_n --steps 40 --lr 1e6 --ckpt-interval 1 --keep-last 1 --max-bad-steps 3
grep -q '"skipped":true' run_n/train_log.jsonl || fail "no skipped step in the log"
! grep -qiE 'null|NaN[,}]|Infinity' run_n/train_log.jsonl || fail "the log holds null/NaN: not valid JSON for our reader"
good=$(ls run_n/ckpt_*.h5 2> /dev/null | head -1)
[ -n "$good" ] || fail "no good checkpoint kept"
grep -qF "the last checkpoint is $good" err.txt || fail "the error does not name the last good checkpoint $good"
"$RETNET" train "${common[@]}" --out run_n --steps 8 --resume --lr 1e-3 > /dev/null || fail "--resume after divergence failed"
ok "a diverging run skips its bad steps, stops with exit 2, and $good resumes"
echo "cli train safety: $passed passed, 0 failed"
