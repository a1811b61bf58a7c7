#!/usr/bin/env bash
# tests/serve_wrk.sh — `retnet serve` under a real load generator (wrk) on loopback, bounded
# in time: trains a tiny checkpoint (2 steps on the GPL text), starts the server, warms it
# up, then runs wrk for a few seconds with small completions and /health (serve_wrk.lua).
# Fails on any non-2xx answer or socket error, on a server that died, or on resident memory
# growing by more than RN_WRK_RSS_GROWTH_KIB (default 32 MiB) over the measured run (not
# checked under AddressSanitizer, whose quarantine holds freed memory).
# Prints requests/s, p50/p99 latency and the server's RSS before and after.
# Without wrk (Debian: apt-get install wrk) it says so and exits 77 (ctest: skipped).
# Usage: serve_wrk.sh PATH/TO/retnet [seconds]
set -euo pipefail
RETNET=$1
SECS=${2:-8}
if ! command -v wrk > /dev/null; then
  echo "SKIP: wrk is not installed (apt-get install wrk)"
  exit 77
fi
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2> /dev/null || true; wait "$server" 2> /dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT
cd "$W"
mkdir corpus
cp /usr/share/common-licenses/GPL-3 corpus/a.txt
cp /usr/share/common-licenses/GPL-2 corpus/b.txt
"$RETNET" prepare corpus --out data --vocab 512 --val-fraction 0.3 > prepare.txt
"$RETNET" train --data data --out run --steps 2 --batch 2 --seq-len 32 --eval-interval 2 --eval-batches 1 \
  --ckpt-interval 2 --log-interval 1 --sample-tokens 0 > train.txt
test -s run/best.h5

OMP_NUM_THREADS=1 "$RETNET" serve run/best.h5 --port 0 --max-slots 16 --max-queue 256 --log-format off > serve.out 2> serve.err &
server=$!
port=""
for _ in $(seq 1 300); do
  port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' serve.out)
  [ -n "$port" ] && break
  kill -0 "$server" 2> /dev/null || { echo "FAIL: the server exited"; cat serve.err; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { echo "FAIL: the server did not say where it listens"; exit 1; }
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$server/status"; }

# warm-up: every code path and buffer used once, so the measured run shows growth, not first use
wrk -t2 -c16 -d2s -s "$HERE/serve_wrk.lua" "http://127.0.0.1:$port" > warm.txt
rss_before=$(rss)
wrk -t2 -c32 -d"${SECS}s" --latency -s "$HERE/serve_wrk.lua" "http://127.0.0.1:$port" | tee wrk.txt
rss_after=$(rss)
kill -0 "$server" || { echo "FAIL: the server died under load"; cat serve.err; exit 1; }
curl_health=$(exec 3<>"/dev/tcp/127.0.0.1/$port"; printf 'GET /health HTTP/1.0\r\n\r\n' >&3; cat <&3)
echo "$curl_health" | grep -q '"status":"ok"' || { echo "FAIL: /health after the run: $curl_health"; exit 1; }

rps=$(awk '/^Requests\/sec:/ {print $2}' wrk.txt)
read -r requests non2xx econn eread ewrite etimeout < <(sed -n 's/^wrk: requests \([0-9]*\), non-2xx \([0-9]*\), socket errors connect \([0-9]*\) read \([0-9]*\) write \([0-9]*\) timeout \([0-9]*\)$/\1 \2 \3 \4 \5 \6/p' wrk.txt)
p99=$(sed -n 's/^wrk: latency .*p99 \([0-9.]*\) ms.*/\1/p' wrk.txt)
growth=$((rss_after - rss_before))
limit=${RN_WRK_RSS_GROWTH_KIB:-32768}
echo "serve_wrk: ${requests} requests in ${SECS} s (${rps} req/s), p99 ${p99} ms; server RSS ${rss_before} KiB before, ${rss_after} KiB after (${growth} KiB)"
fail=0
[ "${requests:-0}" -gt 0 ] || { echo "FAIL: wrk made no requests"; fail=1; }
[ "$non2xx" = 0 ] || { echo "FAIL: $non2xx non-2xx answers"; fail=1; }
[ "$econn" = 0 ] && [ "$eread" = 0 ] && [ "$ewrite" = 0 ] && [ "$etimeout" = 0 ] \
  || { echo "FAIL: socket errors (connect $econn, read $eread, write $ewrite, timeout $etimeout)"; fail=1; }
# (under AddressSanitizer the allocator's quarantine grows RSS by design: figures only)
if grep -qa "__asan_init" "$RETNET"; then
  echo "serve_wrk: AddressSanitizer build, RSS growth not checked"
else
  [ "$growth" -le "$limit" ] || { echo "FAIL: RSS grew by $growth KiB (limit $limit KiB)"; fail=1; }
fi
[ "$fail" = 0 ] && echo "serve_wrk: OK"
exit $fail
