#!/usr/bin/env bash
# tests/cli_smoke.sh — the `retnet` program end to end on a small corpus: prepare, train,
# inspect, and exact resume (4 steps in one go == 2 steps + --resume to 4, loss for loss,
# bitwise on the CPU); generate (its sampled text = the trainer's closing sample with the
# same seed, temperature, top-p and penalty; greedy = the trainer's greedy sample; same seed
# = same text, a prompt in a batch = alone); bad input gives "error:" and exit status 2.
# Usage: cli_smoke.sh PATH/TO/retnet [ARCH]   (ARCH: retnet, the default, or transformer —
# the same checks hold for both; for the Transformer, generate decodes from its KV cache)
set -euo pipefail
RETNET=$1
ARCH=${2:-retnet}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
mkdir corpus
cp /usr/share/common-licenses/GPL-3 corpus/a.txt
cp /usr/share/common-licenses/Apache-2.0 corpus/b.txt 2>/dev/null || cp /usr/share/common-licenses/GPL-2 corpus/b.txt

"$RETNET" prepare corpus --out data --vocab 512 --val-fraction 0.3
test -s data/train.bin && test -s data/val.bin && test -s data/tokenizer.model

common=(--arch "$ARCH" --data data --batch 2 --seq-len 32 --eval-interval 2 --eval-batches 1 --ckpt-interval 2 --log-interval 1)
"$RETNET" train "${common[@]}" --out run_a --steps 4 --sample-tokens 5 | tee train_a.txt
"$RETNET" train "${common[@]}" --out run_b --steps 4 --sample-tokens 5 --prompt "the" --sample-temperature 0 \
  --sample-repetition-penalty 1 --sample-stop-at-eos > train_b.txt
# the same run again, interrupted after 2 steps and resumed
"$RETNET" train "${common[@]}" --out run_c --steps 2 --sample-tokens 0 > /dev/null
"$RETNET" train "${common[@]}" --out run_c --steps 4 --resume --sample-tokens 0 > resume.txt
grep -q "resumed from run_c/ckpt_2.h5" resume.txt

losses() { grep -o '"loss":[^,]*' "$1/train_log.jsonl"; }
if [ "$(losses run_a)" != "$(losses run_b)" ]; then echo "FAIL: two identical runs differ"; exit 1; fi
if [ "$(losses run_a)" != "$(losses run_c)" ]; then
  echo "FAIL: resumed run differs"; paste <(losses run_a) <(losses run_c); exit 1
fi
test "$(losses run_a | wc -l)" = 4
test -s run_a/loss.svg && test -s run_a/best.h5

"$RETNET" inspect run_a/best.h5 > inspect.txt
grep -q "embed_tokens.weight" inspect.txt
# the config names the arch (a RetNet's config has no "arch": absent means retnet)
if [ "$ARCH" = transformer ]; then grep -q '"arch":"transformer"' inspect.txt; else ! grep -q '"arch"' inspect.txt; fi
"$RETNET" inspect run_a/best.h5 --json > inspect.json
grep -q '"embed_tokens.weight"' inspect.json

# generate on the final checkpoint = the trainer's closing sample of the same weights: by
# default sampled from <s> (seed 1, temperature 0.8, top-p 0.9, repetition penalty 1.3,
# running past end-of-text tokens), and greedy after a prompt, stopping at one, when asked. The sample is the
# last thing train prints and may span lines.
sample_of() { sed -n '/^sample (/,$p' "$1" | sed '1s/^sample ([^)]*): //'; }
grep -q '^sample (seed 1, temperature 0.8, top-p 0.9, repetition penalty 1.3, past end-of-text): ' train_a.txt
expected=$(sample_of train_a.txt)
got=$("$RETNET" generate run_a/ckpt_4.h5 --prompt "" --max-tokens 5 --temperature 0.8 --top-p 0.9 \
        --repetition-penalty 1.3 --seed 1 --ignore-eos 2> gen.err)
if [ "$got" != "$expected" ]; then echo "FAIL: generate '$got' != train sample '$expected'"; exit 1; fi
grep -q "tokens/s" gen.err
grep -q '^sample (greedy): the' train_b.txt  # --sample-stop-at-eos
expected=$(sample_of train_b.txt)
got=$("$RETNET" generate run_b/ckpt_4.h5 --prompt "the" --max-tokens 5 --temperature 0 2> /dev/null)
if [ "$got" != "$expected" ]; then echo "FAIL: generate greedy '$got' != train sample '$expected'"; exit 1; fi
# speculative decoding: greedy text unchanged, drafted by run_a's model (same tokenizer) or by
# n-gram lookup, two prompts in one batch
greedy=(run_b/ckpt_4.h5 --prompt "the" --prompt "and the the and the" --max-tokens 24 --temperature 0 --ignore-eos)
"$RETNET" generate "${greedy[@]}" > s0.txt 2> /dev/null
"$RETNET" generate "${greedy[@]}" --draft run_a/ckpt_4.h5 --speculative-k 3 --speculative-always > s1.txt 2> s1.err
grep -q "proposed tokens kept" s1.err  # the acceptance summary on stderr
"$RETNET" generate "${greedy[@]}" --speculate-ngram > s2.txt 2> /dev/null
if ! cmp -s s0.txt s1.txt || ! cmp -s s0.txt s2.txt; then echo "FAIL: speculative greedy text differs"; cat s0.txt s1.txt s2.txt; exit 1; fi
set +e
"$RETNET" generate "${greedy[@]}" --draft run_a/ckpt_4.h5 --speculate-ngram 2> err_s.txt; rc=$?
set -e
test $rc = 2 && grep -q "pick one" err_s.txt
# sampling: the same seed gives the same text, and a prompt in a batch gives what it gives alone
sample=(run_a/best.h5 --max-tokens 12 --temperature 0.9 --top-k 50 --seed 3 --ignore-eos)
"$RETNET" generate "${sample[@]}" --prompt "the" > g1.txt 2> /dev/null
"$RETNET" generate "${sample[@]}" --prompt "the" > g2.txt 2> /dev/null
cmp g1.txt g2.txt
"$RETNET" generate "${sample[@]}" --prompt "of the" --prompt "the" > g3.txt 2> /dev/null
tail -n +2 g3.txt | sed -n '/^--- 1 /,$p' | tail -n +2 > g3_1.txt
if ! cmp -s g1.txt g3_1.txt; then echo "FAIL: batched completion differs"; cat g1.txt g3.txt; exit 1; fi
set +e
"$RETNET" generate run_a/best.h5 --prompt "x" --top-p 0 2> err3.txt; rc=$?
set -e
test $rc = 2 && grep -q "top_p must lie in (0, 1]" err3.txt

# bad input: a clear error, exit status 2, nothing damaged
set +e
"$RETNET" train --data nowhere --out run_x --steps 1 2> err.txt; rc=$?
set -e
test $rc = 2 && grep -q "missing nowhere/tokenizer.model" err.txt
head -c 1000 run_a/best.h5 > trunc.h5
set +e
"$RETNET" inspect trunc.h5 2> err2.txt; rc=$?
set -e
test $rc = 2 && grep -qi "error" err2.txt
echo "cli smoke ($ARCH): 7 passed, 0 failed"
