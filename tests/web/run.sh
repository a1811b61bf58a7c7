#!/usr/bin/env bash
# tests/web/run.sh — runs one of the Node tests of tests/web/ against a real `retnet serve`:
#   browser  browser_test.mjs: the page at GET / in headless Chromium (playwright-core)
#   openai   openai_client_test.mjs: the official OpenAI Node client (npm `openai`)
# Trains a tiny checkpoint (2 steps on the GPL text, about a second; RN_WEB_CHECKPOINT=FILE
# uses that one instead), starts the server on a free port with an API key and two served
# names, runs the test under a time limit, and stops the server.
# Skips (exit 77, ctest: skipped) with the reason printed when Node >= 20, the npm packages
# (`npm ci --prefix tests/web`) or, for the browser, Chromium (Debian: apt-get install
# chromium; RN_CHROMIUM=PATH for another) are missing. With RN_WEB_TESTS_REQUIRED=1 (CI)
# a missing prerequisite is a failure instead, so CI cannot silently stop testing the page.
# RN_WEB_SCREENSHOT=FILE: the browser test also saves its screenshot there (the copy in
# docs/img/web_ui.png is made so).
# Usage: tests/web/run.sh PATH/TO/retnet browser|openai
set -euo pipefail
RETNET=$1
WHICH=$2
HERE=$(cd "$(dirname "$0")" && pwd)
case "$WHICH" in
  browser) script=browser_test.mjs ;;
  openai) script=openai_client_test.mjs ;;
  *) echo "usage: $0 RETNET browser|openai"; exit 2 ;;
esac

skip() {
  if [ "${RN_WEB_TESTS_REQUIRED:-0}" = 1 ]; then
    echo "FAIL: $1 (RN_WEB_TESTS_REQUIRED=1)"
    exit 1
  fi
  echo "SKIP: $1"
  exit 77
}
command -v node > /dev/null || skip "node is not installed (Debian: apt-get install nodejs npm)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || skip "node $(node --version) is older than 20, which the pinned packages need"
pkg=openai
[ "$WHICH" = browser ] && pkg=playwright-core
[ -f "$HERE/node_modules/$pkg/package.json" ] || skip "tests/web/node_modules/$pkg is missing (run: npm ci --prefix tests/web)"
if [ "$WHICH" = browser ]; then
  RN_CHROMIUM=${RN_CHROMIUM:-$(command -v chromium || true)}
  [ -n "$RN_CHROMIUM" ] && [ -x "$RN_CHROMIUM" ] || skip "chromium is not installed (Debian: apt-get install chromium)"
  export RN_CHROMIUM
fi

W=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2> /dev/null || true; wait "$server" 2> /dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT
cd "$W"
if [ -n "${RN_WEB_CHECKPOINT:-}" ]; then
  ckpt=$RN_WEB_CHECKPOINT
else
  mkdir corpus
  cp /usr/share/common-licenses/GPL-3 corpus/a.txt
  cp /usr/share/common-licenses/GPL-2 corpus/b.txt
  "$RETNET" prepare corpus --out data --vocab 512 --val-fraction 0.3 > prepare.txt
  "$RETNET" train --data data --out run --steps 2 --batch 2 --seq-len 32 --eval-interval 2 --eval-batches 1 \
    --ckpt-interval 2 --log-interval 1 --sample-tokens 0 > train.txt
  ckpt=run/best.h5
fi

# --max-tokens-limit: room for a stream long enough to be stopped by hand
key=sk-web-test-$RANDOM$RANDOM
OMP_NUM_THREADS=1 "$RETNET" serve "$ckpt" --port 0 --api-key "$key" --served-model-name tiny \
  --served-model-name tiny-alias --max-tokens-limit 32768 > serve.out 2> serve.err &
server=$!
port=""
for _ in $(seq 1 300); do
  port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' serve.out)
  [ -n "$port" ] && break
  kill -0 "$server" 2> /dev/null || { echo "FAIL: the server exited"; cat serve.err; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { echo "FAIL: the server did not say where it listens"; exit 1; }

set +e
RN_BASE_URL="http://127.0.0.1:$port" RN_API_KEY="$key" RN_MODEL=tiny RN_SERVER_LOG="$W/serve.err" RN_WORK="$W" \
  timeout -k 5 50 node "$HERE/$script"
rc=$?
set -e
if [ "$rc" = 0 ] && [ "$WHICH" = browser ]; then
  test -s "$W/web_ui.png" || { echo "FAIL: no screenshot"; rc=1; }
  [ -z "${RN_WEB_SCREENSHOT:-}" ] || cp "$W/web_ui.png" "$RN_WEB_SCREENSHOT"
fi
kill -0 "$server" 2> /dev/null || { echo "FAIL: the server died"; rc=1; }
if [ "$rc" != 0 ]; then
  [ "$rc" = 124 ] && echo "FAIL: the test ran over 50 s"
  echo "--- the server's log (last 40 lines)"
  tail -n 40 serve.err
fi
exit "$rc"
