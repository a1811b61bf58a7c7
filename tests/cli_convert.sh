#!/usr/bin/env bash
# tests/cli_convert.sh — `retnet convert` end to end: train a tiny model 2 steps, export it to
# safetensors (our names, and torchscale's) and import it back; the weights and config come
# back bit for bit (inspect --diff: no tensor differs, no config key; a second round trip is
# identical, exit 0), the tokenizer is carried, greedy generation on the converted-back
# checkpoint gives the same text, what is dropped is said, and bad requests exit 2 with a
# clear error and no output left behind. --check prints the same statistics for the original
# and the converted-back checkpoint (JSON identical), and parallel and recurrent agree.
# Usage: cli_convert.sh PATH/TO/retnet
set -euo pipefail
# a failing command names itself (a rare failure once seen locally left no message)
trap 'echo "FAIL: cli_convert.sh line $LINENO: $BASH_COMMAND" >&2' ERR
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

# --check: the converted-back checkpoint gives identical statistics; parallel and recurrent agree
"$RETNET" convert --check run/ckpt_2.h5 --json > c1.json
"$RETNET" convert --check back.h5 --json > c2.json
cmp c1.json c2.json || { echo "FAIL: --check differs after the round trip"; exit 1; }
"$RETNET" convert --check st/model.safetensors --json > c3.json
cmp c1.json c3.json || { echo "FAIL: --check of the safetensors differs"; exit 1; }
# the Hugging Face-style port: export, import back, the same logits to the bit
mkdir hf
"$RETNET" convert run/ckpt_2.h5 hf/model.safetensors --to hf > /dev/null
grep -q '"model_type"' hf/config.json
"$RETNET" convert hf/model.safetensors hf_back.h5 --from hf > /dev/null
"$RETNET" convert --check hf_back.h5 --json > c5.json
cmp c1.json c5.json || { echo "FAIL: --check differs after --to hf / --from hf"; exit 1; }
"$RETNET" convert --check back.h5 --mode recurrent --json > c4.json
"$RETNET" convert --check back.h5 | grep -q "checksum"
"$RETNET" convert --check back.h5 --prompt-ids 5,6,7 --json | grep -q '"position": 2'
python_free_num() { grep "\"$1\"" "$2" | head -1 | sed 's/.*: *//; s/,$//'; }
for k in mean std min max checksum; do
  a=$(python_free_num $k c1.json); b=$(python_free_num $k c4.json)
  awk -v a="$a" -v b="$b" -v k="$k" 'BEGIN { d = a - b; if (d < 0) d = -d; s = (a < 0 ? -a : a); if (s < 1) s = 1;
    if (d > 1e-4 * s) { print "FAIL: --check " k " parallel " a " vs recurrent " b; exit 1 } }'
done
# --dump-logits: every position's logits, [16, V] f32; its last row is what the statistics
# describe (first 8 equal), and parallel and recurrent agree at every position
"$RETNET" convert --check back.h5 --json --dump-logits lp.bin > d1.json
"$RETNET" convert --check back.h5 --mode recurrent --dump-logits lr.bin > /dev/null
grep -q '"logits_shape"' d1.json
V=$(python_free_num vocab_size d1.json)
test "$(stat -c %s lp.bin)" -eq $((16 * V * 4)) && test "$(stat -c %s lr.bin)" -eq $((16 * V * 4))
# (od prints a float with about 7 digits, so the comparison is to 1e-6, not exact)
# (awk, not head: head leaves early, and tail's SIGPIPE then fails the pipeline under pipefail)
od -An -v -f -w4 lp.bin | tail -n "$V" | awk 'NR <= 8' > last8.txt
grep -A8 '"first8"' d1.json | tail -8 | tr -d ' ,' > first8.txt
paste last8.txt first8.txt | awk '{ d = $1 - $2; if (d < 0) d = -d; s = ($2 < 0 ? -$2 : $2); if (s < 1e-3) s = 1e-3
  if (d > 1e-6 * s) { print "FAIL: --dump-logits last row " $1 " vs --check first8 " $2; bad = 1 } ; n++ }
  END { if (n != 8) { print "FAIL: " n " of the first 8 logits compared"; bad = 1 }; exit bad }' 
paste <(od -An -v -f -w4 lp.bin) <(od -An -v -f -w4 lr.bin) | awk '
  { d = $1 - $2; if (d < 0) d = -d; s = ($1 < 0 ? -$1 : $1); if (s < 1) s = 1; if (d / s > worst) worst = d / s; n++ }
  END { if (n < 16 || worst > 1e-4) { print "FAIL: dumped logits, parallel vs recurrent: " worst " over " n; exit 1 }
        printf "  --dump-logits: %d logits, parallel vs recurrent %.2e\n", n, worst }'

# bad requests: exit 2, a clear error, nothing written
expect_error() {  # expect_error PATTERN ARGS...
  local pat=$1; shift
  set +e
  "$RETNET" convert "$@" > /dev/null 2> err.txt; local rc=$?
  set -e
  if [ $rc != 2 ] || ! grep -q -e "$pat" err.txt; then echo "FAIL: convert $* gave $rc: $(cat err.txt)"; exit 1; fi
}
expect_error "exists. HINT: pass --force" run/ckpt_2.h5 st/model.safetensors
expect_error "expected a .h5 checkpoint and a .safetensors file" run/ckpt_2.h5 x.h5
expect_error "--from 'flax': expected auto, retnet, torchscale, hf or fla" st/model.safetensors z.h5 --from flax
expect_error "--check takes one checkpoint" --check run/ckpt_2.h5 q.h5
expect_error "expected comma-separated token ids" --check run/ckpt_2.h5 --prompt-ids 1,x
expect_error "prompt id 99999 is outside the vocabulary" --check run/ckpt_2.h5 --prompt-ids 1,99999
expect_error "which torchscale does not compute\|--to fla" run/ckpt_2.h5 fla.safetensors --to fla
printf 'abc' > short.safetensors
expect_error "shorter than the 8-byte header length" short.safetensors y.h5
test ! -e y.h5 && test ! -e x.h5 && test ! -e z.h5 && test ! -e fla.safetensors
"$RETNET" convert run/ckpt_2.h5 st/model.safetensors --force > /dev/null
# train --config: flash-linear-attention's variant set from a file, trained two steps,
# exported with fla's names and imported back with the same --check; bad files refused
printf '{"rotary": "rope_half", "retention_lambda": false, "group_norm_affine": true}\n' > fla.json
"$RETNET" train --data data --out runfla --steps 2 --batch 2 --seq-len 32 --eval-interval 2 --eval-batches 1 \
  --ckpt-interval 2 --sample-tokens 0 --config fla.json > /dev/null
"$RETNET" inspect runfla/ckpt_2.h5 > fla_inspect.txt
grep -q rope_half fla_inspect.txt && grep -q retention_lambda fla_inspect.txt
mkdir flast
"$RETNET" convert runfla/ckpt_2.h5 flast/model.safetensors --to fla > /dev/null
"$RETNET" convert flast/model.safetensors flaback.h5 > /dev/null
"$RETNET" convert --check runfla/ckpt_2.h5 --json > f1.json
"$RETNET" convert --check flaback.h5 --json > f2.json
cmp f1.json f2.json || { echo "FAIL: the fla-variant model's --check differs after --to fla and back"; exit 1; }
expect_train_error() {  # expect_train_error PATTERN CONFIG_TEXT
  printf '%s\n' "$2" > bad.json
  set +e
  "$RETNET" train --data data --out runbad --steps 1 --batch 2 --seq-len 32 --sample-tokens 0 --config bad.json \
    > /dev/null 2> err.txt; local rc=$?
  set -e
  if [ $rc = 0 ] || ! grep -q -e "$1" err.txt; then echo "FAIL: --config $2 gave $rc: $(cat err.txt)"; exit 1; fi
}
expect_train_error "unknown key 'rotery'" '{"rotery": "rope_half"}'
expect_train_error "'arch' comes from the command line" '{"arch": "transformer"}'
expect_train_error "not a JSON object" '[1, 2]'

echo "cli convert: passed"
