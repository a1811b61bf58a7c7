#!/usr/bin/env bash
# scripts/tsan_serve.sh [BUILD_DIR] — the server under ThreadSanitizer: configures (once) a
# clang-14 build with -fsanitize=thread in BUILD_DIR (default build-tsan), builds `retnet`
# and the server tests, and runs test_serve, test_serve_chat, test_serve_ops and
# test_serve_load (whose `retnet serve` processes are the instrumented binary). Any data
# race, lock-order inversion or thread leak reported by either side fails the script, and
# the reports are printed. By hand, not in CI: the build takes ~15 minutes on 2 cores.
# OMP_NUM_THREADS=1: libgomp is not instrumented, so its threads would report races that
# are only its own synchronisation; the server's threads (I/O, generation worker,
# tokenising) are what is checked here.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build-tsan}
command -v clang++-14 > /dev/null || { echo "tsan_serve.sh: clang++-14 is needed (Debian: apt-get install clang-14)" >&2; exit 2; }
if [ ! -f "$build/CMakeCache.txt" ]; then
  CC=clang-14 CXX=clang++-14 cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRN_CUDA=OFF \
    -DCMAKE_C_FLAGS=-fsanitize=thread -DCMAKE_CXX_FLAGS=-fsanitize=thread \
    -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread -DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=thread > /dev/null || exit 2
fi
tests=(test_serve test_serve_chat test_serve_ops test_serve_load)
cmake --build "$build" --target retnet "${tests[@]}" || exit 2
reports=$(mktemp -d "${TMPDIR:-/tmp}/rn_tsan.XXXXXX")
trap 'rm -rf "$reports"' EXIT
export OMP_NUM_THREADS=1 TSAN_OPTIONS="log_path=$reports/report second_deadlock_stack=1"
failed=0
for t in "${tests[@]}"; do
  start=$(date +%s)
  if "$build/tests/$t" > "$reports/$t.out" 2>&1; then status=passed; else status=FAILED; failed=1; fi
  echo "$t: $status in $(( $(date +%s) - start )) s"
  [ "$status" = FAILED ] && tail -20 "$reports/$t.out"
  grep -h "^serve load:" "$reports/$t.out" || true
done
shopt -s nullglob
found=("$reports"/report.*)
if [ ${#found[@]} -gt 0 ]; then
  echo "ThreadSanitizer reports from ${#found[@]} process(es):"
  cat "${found[@]}"
  failed=1
else
  echo "ThreadSanitizer: no report from the tests or the servers they started"
fi
exit $failed
