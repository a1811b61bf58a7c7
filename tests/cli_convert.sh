#!/usr/bin/env bash
# tests/cli_convert.sh — `retnet convert` end to end: train a tiny model 2 steps, export it to
# safetensors (our names, and torchscale's) and import it back; the weights and config come
# back bit for bit (inspect --diff: no tensor differs, no config key; a second round trip is
# identical, exit 0), the tokenizer is carried, greedy generation on the converted-back
# checkpoint gives the same text, what is dropped is said, and bad requests exit 2 with a
# clear error and no output left behind.
# Usage: cli_convert.sh PATH/TO/retnet
set -euo pipefail
RETNET=$1
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
mkdir corpus
cp /usr/share/common-licenses/GPL-3 corpus/a.txt

"$RETNET" prepare corpus --out data --vocab 512 --val-fraction 0.3 > /dev/null
"$RETNET" train --data data --out run --steps 2 --batch 2 --seq-len 32 --eval-interval 2 --eval-batches 1 \
  --ckpt-interval 2 --sample-tokens 0 > /dev/null
test -s run/ckpt_2.h5

# h5 -> safetensors (+ config.json, tokenizer.model) -> h5
mkdir st
"$RETNET" convert run/ckpt_2.h5 st/model.safetensors | tee export.txt
test -s st/model.safetensors && test -s st/config.json && test -s st/tokenizer.model
grep -q "dropped (safetensors holds weights only): the training state (step 2" export.txt
grep -q "the AdamW state (step 2" export.txt
"$RETNET" convert st/model.safetensors back.h5 > import.txt
grep -q "config from st/config.json" import.txt
grep -q "tokenizer from st/tokenizer.model" import.txt

# the weights and config: no tensor differs by a bit, no config key; only the dropped state differs
set +e
"$RETNET" inspect run/ckpt_2.h5 --diff back.h5 --json > diff.json; rc=$?
set -e
test $rc = 1  # the training state and the optimizer are gone, as export said
grep -q '"config_differences": \[\]' diff.json
grep -q '"max_abs_diff": 0.0,' diff.json
if grep -q '"num_different": [1-9]' diff.json; then echo "FAIL: a tensor changed in the round trip"; exit 1; fi
test "$(grep -c '"num_different": 0' diff.json)" = 23
if grep -q '"config_differences": \[$' diff.json; then echo "FAIL: the config changed"; exit 1; fi
# the tokenizer came back byte for byte, and a second round trip changes nothing at all
"$RETNET" inspect back.h5 --json | grep -q '"tokenizer_bytes": '"$(stat -c %s st/tokenizer.model)"
mkdir st2
"$RETNET" convert back.h5 st2/model.safetensors > /dev/null
"$RETNET" convert st2/model.safetensors back2.h5 > /dev/null
"$RETNET" inspect back.h5 --diff back2.h5 > /dev/null
cmp st/model.safetensors st2/model.safetensors || { echo "FAIL: the exported weights differ"; exit 1; }

# the same greedy text from the original and the converted-back checkpoint
g1=$("$RETNET" generate run/ckpt_2.h5 --prompt "the" --max-tokens 8 --temperature 0 2> /dev/null)
g2=$("$RETNET" generate back.h5 --prompt "the" --max-tokens 8 --temperature 0 2> /dev/null)
if [ "$g1" != "$g2" ]; then echo "FAIL: generate '$g2' != '$g1' after the round trip"; exit 1; fi

# torchscale's names and config keys, and back: identical to our own round trip
mkdir ts
"$RETNET" convert run/ckpt_2.h5 ts/model.safetensors --to torchscale > ts.txt
grep -q '"decoder_embed_dim": 64' ts/config.json
grep -q '"decoder_retention_heads": 2' ts/config.json
grep -q "retnet_rel_pos.angle, retnet_rel_pos.decay" ts.txt
"$RETNET" convert ts/model.safetensors back_ts.h5 | grep -q "skipped (torchscale's buffers"
"$RETNET" inspect back.h5 --diff back_ts.h5 > /dev/null

# bad requests: exit 2, a clear error, nothing written
expect_error() {  # expect_error PATTERN ARGS...
  local pat=$1; shift
  set +e
  "$RETNET" convert "$@" > /dev/null 2> err.txt; local rc=$?
  set -e
  if [ $rc != 2 ] || ! grep -q -e "$pat" err.txt; then echo "FAIL: convert $* gave $rc: $(cat err.txt)"; exit 1; fi
}
expect_error "exists. HINT: pass --force" run/ckpt_2.h5 st/model.safetensors
expect_error "--to hf is not yet supported" run/ckpt_2.h5 hf.safetensors --to hf
expect_error "expected a .h5 checkpoint and a .safetensors file" run/ckpt_2.h5 x.h5
printf 'abc' > short.safetensors
expect_error "shorter than the 8-byte header length" short.safetensors y.h5
test ! -e hf.safetensors && test ! -e y.h5 && test ! -e x.h5
"$RETNET" convert run/ckpt_2.h5 st/model.safetensors --force > /dev/null
echo "cli convert: passed"
