#!/usr/bin/env bash
# tests/bench_paper_quick.sh — bench_paper's CPU run (--quick: tiny models, seconds), the
# part of the paper reproduction CI runs: inference (length and batch curves of both
# models, which also checks that a RetNet's state does not grow with the input and a KV
# cache does), training (RetNet, flash and standard attention), scaling on a small
# prepared corpus (two sizes, two learning rates each, both models), then the plots and
# tables. Asserts the files, their completeness and what the tables say.
# Usage: bench_paper_quick.sh PATH/TO/bench_paper PATH/TO/retnet
set -euo pipefail
BENCH=$1
RETNET=$2
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
mkdir corpus
cp /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 corpus/
"$RETNET" prepare corpus --out data --vocab 512 --val-fraction 0.3 > /dev/null

"$BENCH" all --quick --out out > all.log
"$BENCH" scaling --quick --data data --runs runs --out out > scaling.log
"$BENCH" plot out > tables.md

for p in inference training scaling; do
  test -s out/paper_$p.json
  grep -q '"complete": true' out/paper_$p.json || { echo "FAIL: paper_$p.json is not complete"; exit 1; }
done
for s in paper_inference paper_figure6 paper_training paper_scaling; do
  grep -q "<svg" out/$s.svg || { echo "FAIL: no $s.svg"; exit 1; }
done
# every model of every part measured, none failed
test "$(grep -c '"arch": "retnet"' out/paper_inference.json)" -ge 1
test "$(grep -c '"arch": "transformer"' out/paper_inference.json)" -ge 1
if grep -q '"error"' out/paper_inference.json out/paper_training.json; then
  echo "FAIL: a point failed on the CPU"; grep -h '"error"' out/paper_*.json; exit 1
fi
grep -q "| tiny | retnet |" tables.md
grep -q "| transformer-standard | [0-9]" tables.md
grep -q "| mini | transformer |" tables.md
grep -q "throughput at the largest batch" tables.md
# the trained models learned something: validation loss below the uniform log(512) = 6.24
awk -F'|' '/^\| (tiny|mini) \| (retnet|transformer) \| [0-9.]+M \|/ { n++; if ($6 + 0 >= 6.24 || $6 + 0 <= 0) { print "FAIL: " $0; bad = 1 } }
           END { if (n != 4) { print "FAIL: " n " scaling rows, expected 4"; bad = 1 }; exit bad }' tables.md
# a bad request is a clear error, not a crash
if "$BENCH" scaling --quick --data nowhere --out out2 2> err.txt; then echo "FAIL: scaling without data ran"; exit 1; fi
grep -q "meta.json not found" err.txt
if "$BENCH" plot "$W/corpus" 2> err.txt; then echo "FAIL: plot of a folder without JSON ran"; exit 1; fi
grep -q "no paper_inference.json" err.txt
echo "bench_paper --quick: OK"
