#!/usr/bin/env bash
# tests/cli_prepare_inspect.sh — the `retnet` program's data and checkpoint-reading side as a
# user meets it (issue 13): `prepare DIR` writes data/<DIR's name>, never data/kjv, and
# refuses a folder made from other input unless --force; one file gives both splits; every
# option of prepare, generate and inspect is checked at start-up with a message naming it;
# `inspect --diff` exits 0 (same) / 1 (different) / 2 (error); a FIFO is refused at once;
# error lines carry no source location unless --verbose.
# Usage: cli_prepare_inspect.sh PATH/TO/retnet
set -euo pipefail
RETNET=$1
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
fail() { echo "FAIL: $*"; exit 1; }
# runs the command, expects exit status $1 and its stderr to contain $2
expect_error() {
  local want=$1 needle=$2; shift 2
  set +e
  "$@" > out.txt 2> err.txt
  local rc=$?
  set -e
  [ "$rc" = "$want" ] || fail "$* exited $rc, expected $want: $(cat err.txt)"
  grep -qF -- "$needle" err.txt || fail "$*: stderr lacks '$needle': $(cat err.txt)"
}
passed=0
ok() { passed=$((passed + 1)); }

mkdir -p mytexts other
cp /usr/share/common-licenses/GPL-3 mytexts/gpl.txt
cp /usr/share/common-licenses/Apache-2.0 mytexts/apache.txt
cp /usr/share/common-licenses/LGPL-2.1 other/lgpl.txt

# 1. the output follows the input; the next command is printed
"$RETNET" prepare mytexts/ --vocab 400 --val-fraction 0.3 > prep.txt
test -s data/mytexts/train.bin && test -s data/mytexts/val.bin || fail "no data/mytexts"
test ! -e data/kjv || fail "prepare mytexts/ touched data/kjv"
grep -qF "retnet train --data data/mytexts" prep.txt || fail "no next-step hint: $(cat prep.txt)"
ok
# the same input again is fine (same bytes); other input into it is refused, nothing changed
sum_before=$(cat data/mytexts/*.bin data/mytexts/meta.json | md5sum)
"$RETNET" prepare mytexts --vocab 400 --val-fraction 0.3 > /dev/null
[ "$(cat data/mytexts/*.bin data/mytexts/meta.json | md5sum)" = "$sum_before" ] || fail "re-prepare changed bytes"
expect_error 2 "--force" "$RETNET" prepare other --out data/mytexts --vocab 400 --val-fraction 0.3
grep -qF "mytexts/apache.txt" err.txt && grep -qF "other/lgpl.txt" err.txt || fail "refusal does not name both: $(cat err.txt)"
[ "$(cat data/mytexts/*.bin data/mytexts/meta.json | md5sum)" = "$sum_before" ] || fail "a refused prepare changed data"
"$RETNET" prepare other --out data/mytexts --vocab 400 --val-fraction 0.3 --force > /dev/null
grep -qF "other/lgpl.txt" data/mytexts/meta.json || fail "--force did not replace"
ok

# 2. one file of plain text: validation is its tail, both splits hold tokens
"$RETNET" prepare other/lgpl.txt --vocab 400 > one.txt
val_tokens=$(grep -A4 '"val"' data/lgpl/meta.json | sed -n 's/.*"tokens": \([0-9]*\).*/\1/p')
[ "${val_tokens:-0}" -gt 100 ] || fail "one file gave $val_tokens validation tokens"
grep -qF '"unit": "tail of each document"' data/lgpl/meta.json || fail "split unit not recorded"
ok

# 3. options checked at start-up, before anything is read or written (no KJV extracted)
expect_error 2 "--val-fraction 0: must lie strictly between 0 and 1" "$RETNET" prepare --val-fraction 0
test ! -e data/kjv || fail "a refused prepare extracted the KJV"
expect_error 2 "--val-fraction 1: must lie strictly between 0 and 1" "$RETNET" prepare mytexts --val-fraction 1
expect_error 2 "--vocab 5: must lie in [261, 1048576]" "$RETNET" prepare mytexts --vocab 5
for args in "--max-tokens 0|--max-tokens 0" "--temperature -1|--temperature -1" "--temperature nan|--temperature nan" \
            "--top-k -1|--top-k -1" "--top-p 1.5|--top-p 1.5" "--repetition-penalty 0|--repetition-penalty 0" \
            "--prefill-chunk 0|--prefill-chunk 0" "--device tpu|--device 'tpu'" "--dtype f16|--dtype 'f16'"; do
  opt=${args%%|*}; needle=${args#*|}
  # shellcheck disable=SC2086
  expect_error 2 "$needle" "$RETNET" generate nowhere.h5 --prompt x $opt
done
expect_error 2 "--tolerance -1" "$RETNET" inspect nowhere.h5 --diff nowhere.h5 --tolerance -1
ok

# 4. inspect --diff: 0 the same, 1 different, 2 error (documented in --help)
"$RETNET" train --data data/mytexts --out run --preset tiny --steps 2 --batch 1 --seq-len 16 --eval-interval 1 \
  --eval-batches 1 --ckpt-interval 1 --log-interval 1 --sample-tokens 0 > train.txt 2>&1 || fail "train: $(cat train.txt)"
"$RETNET" inspect run/ckpt_1.h5 --diff run/ckpt_1.h5 > /dev/null || fail "a file differs from itself"
set +e
"$RETNET" inspect run/ckpt_1.h5 --diff run/ckpt_2.h5 > diff.txt; rc=$?
set -e
[ "$rc" = 1 ] || fail "--diff of two different checkpoints exited $rc"
grep -q "different" diff.txt || fail "no 'different' in: $(cat diff.txt)"
expect_error 2 "no such file" "$RETNET" inspect run/ckpt_1.h5 --diff run/absent.h5
"$RETNET" inspect --help | grep -qF "exit status 0: the same, 1: different, 2: error" || fail "--help does not say"
ok

# 5. a FIFO as a checkpoint: refused at once (it used to block forever)
mkfifo pipe.h5
expect_error 2 "not a regular file (a FIFO)" timeout 10 "$RETNET" inspect pipe.h5
expect_error 2 "not a regular file (a FIFO)" timeout 10 "$RETNET" generate pipe.h5 --prompt x
ok

# 6. error lines end without a source location, unless --verbose (before or after the subcommand)
expect_error 2 "error: checkpoint 'absent.h5': no such file" "$RETNET" inspect absent.h5
if grep -qE '\.(cpp|h):[0-9]+' err.txt; then fail "source location without --verbose: $(cat err.txt)"; fi
expect_error 2 "no such file" "$RETNET" --verbose inspect absent.h5
grep -qE 'checkpoint\.cpp:[0-9]+\)$' err.txt || fail "--verbose gives no location: $(cat err.txt)"
expect_error 2 "no such file" "$RETNET" inspect absent.h5 --verbose
grep -qE 'checkpoint\.cpp:[0-9]+\)$' err.txt || fail "--verbose after the subcommand gives no location: $(cat err.txt)"
ok

echo "cli prepare/inspect: $passed passed, 0 failed"
