#!/usr/bin/env bash
# scripts/fuzz.sh BUILD_DIR SECONDS — runs the libFuzzer targets of fuzz/ (a build
# configured with CC=clang-14 CXX=clang++-14 -DRN_FUZZ=ON, usually with -DRN_SANITIZE=ON).
# For each target: first every saved crash input in fuzz/regressions/<target>/ once (a
# fixed bug must stay fixed), then SECONDS of fuzzing from a fresh copy of the seed corpus
# fuzz/corpus/<target>/ (the repository's copy is never modified). Prints per target the
# executions run and what was found. A crash, sanitizer report, leak, timeout or
# out-of-memory input is copied into fuzz/regressions/<target>/ of this checkout and
# printed in base64 (so it can be recovered from a CI log); the script then exits 1.
set -uo pipefail
if [ $# -ne 2 ] || ! [[ "$2" =~ ^[0-9]+$ ]]; then
  echo "usage: scripts/fuzz.sh BUILD_DIR SECONDS" >&2
  exit 2
fi
build=$(cd "$1" && pwd) || exit 2
secs=$2
repo=$(cd "$(dirname "$0")/.." && pwd)
targets=(fuzz_http fuzz_checkpoint fuzz_prepare fuzz_config fuzz_safetensors)
work=$(mktemp -d "${TMPDIR:-/tmp}/rn_fuzz.XXXXXX")
# the targets' scratch files (memory-backed where possible: prepare() fsyncs)
scratch=$(mktemp -d /dev/shm/rn_fuzz.XXXXXX 2>/dev/null || mktemp -d "$work/scratch.XXXXXX")
export RN_FUZZ_TMPDIR=$scratch
trap 'rm -rf "$work" "$scratch"' EXIT

# Leaks are findings too, but not HDF5's global tables (see .ci/lsan.supp). One OpenMP
# thread: prepare()'s parallel encode gains nothing on inputs of a few KB.
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=0:${ASAN_OPTIONS:-}"
export LSAN_OPTIONS="suppressions=$repo/.ci/lsan.supp:${LSAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$repo/.ci/ubsan.supp:${UBSAN_OPTIONS:-}"
export OMP_NUM_THREADS=1

# keeps a finding: into regressions/, and in base64 on the log
keep() {
  local t=$1 f=$2 name
  name=$(basename "$f")
  mkdir -p "$repo/fuzz/regressions/$t"
  cp "$f" "$repo/fuzz/regressions/$t/$name"
  echo "  saved as fuzz/regressions/$t/$name ($(stat -c %s "$f") bytes); base64:"
  base64 -w 76 "$f" | sed 's/^/    /'
}

failed=0
summary=()
for t in "${targets[@]}"; do
  bin="$build/fuzz/$t"
  echo "== $t"
  if [ ! -x "$bin" ]; then
    echo "  $bin is missing (configure with -DRN_FUZZ=ON and build it)"
    summary+=("$t: NOT BUILT")
    failed=1
    continue
  fi
  opts=(-rss_limit_mb=2048 -timeout=10)
  [ -f "$repo/fuzz/dict/$t.dict" ] && opts+=(-dict="$repo/fuzz/dict/$t.dict")

  # 1. the saved crash inputs, each run once
  mapfile -t regs < <(find "$repo/fuzz/regressions/$t" -type f ! -name '.*' ! -name '*.md' 2>/dev/null | sort)
  if [ ${#regs[@]} -gt 0 ]; then
    if "$bin" "${opts[@]}" "${regs[@]}" > "$work/$t.regress.log" 2>&1; then
      echo "  regressions: ${#regs[@]} inputs pass"
    else
      echo "  regressions: FAILED; the end of the log:"
      tail -n 40 "$work/$t.regress.log" | sed 's/^/    /'
      summary+=("$t: a saved regression input fails again")
      failed=1
      continue
    fi
  fi

  # 2. fuzzing from a fresh copy of the seeds
  mkdir -p "$work/$t.corpus" "$work/$t.artifacts"
  cp -r "$repo/fuzz/corpus/$t/." "$work/$t.corpus/"
  seeds=$(find "$work/$t.corpus" -type f | wc -l)
  "$bin" "${opts[@]}" -max_total_time="$secs" -print_final_stats=1 \
    -artifact_prefix="$work/$t.artifacts/" "$work/$t.corpus" > "$work/$t.log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$' | tail -1)
  execs=${execs:-?}
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$work/$t.log" | tail -1)
  corpus=$(find "$work/$t.corpus" -type f | wc -l)
  mapfile -t found < <(find "$work/$t.artifacts" -type f ! -name 'slow-unit-*' | sort)
  if [ $rc -eq 0 ] && [ ${#found[@]} -eq 0 ]; then
    echo "  $execs executions in ${secs} s, nothing found (${cov:-no coverage line}; corpus $seeds seeds -> $corpus)"
    summary+=("$t: $execs executions, nothing found")
  else
    echo "  $execs executions, FOUND (exit $rc); the end of the log:"
    grep -vE '^#[0-9]+' "$work/$t.log" | tail -n 60 | sed 's/^/    /'
    for f in "${found[@]}"; do keep "$t" "$f"; done
    names=$(for f in "${found[@]}"; do basename "$f"; done | tr '\n' ' ')
    summary+=("$t: $execs executions, FOUND ${#found[@]} input(s): $names")
    failed=1
  fi
done

echo "== fuzz summary (${secs} s per target)"
printf '  %s\n' "${summary[@]}"
exit $failed
