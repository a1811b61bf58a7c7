#!/usr/bin/env bash
# scripts/install_deps.sh — installs the Debian packages the build and tests need, and the
# npm packages of tests/web/.
# Used by the README's commands and by CI (.ci/run); safe to run again.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
PKGS=(cmake ninja-build g++ pkg-config
      libboost-dev libboost-test-dev   # Boost.Test (used header-only), later Beast/Asio
      libopenblas-dev                  # CBLAS for CPU matmul
      nlohmann-json3-dev               # JSON for configs, logs and benchmark results
      libsentencepiece-dev             # the tokenizer (retnet prepare)
      libhdf5-dev                      # checkpoints
      libcli11-dev                     # the retnet command line
      libopenmpi-dev openmpi-bin       # MPI: starts data-parallel jobs (mpirun), CPU collectives
      zlib1g-dev                       # reads the dictd dictionaries (.dict.dz) of the corpora
      bible-kjv                        # the built-in default corpus (its `bible` program)
      dict-gcide dict-foldoc dict-jargon dict-devil fortunes fortunes-min
                                       # more built-in corpora: retnet prepare --corpus english (docs/data.md)
      wrk                              # test-only: the HTTP load generator of tests/serve_wrk.sh
      chromium)                        # test-only: the browser of tests/web/ (the page at GET /)
# Node.js and npm, test-only (tests/web/: the page in Chromium, the OpenAI Node client):
# Debian's, unless a node is installed already (NodeSource's brings its own npm, which
# Debian's npm package would conflict with). The npm packages pinned there want Node >= 20;
# with an older node those tests say so and are skipped.
if ! command -v node > /dev/null || ! command -v npm > /dev/null; then PKGS+=(nodejs npm); fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "all build dependencies present"
fi

# the npm packages of tests/web/, exactly as tests/web/package-lock.json pins them (npm ci),
# when node_modules is missing or older than the lock file
web="$(cd "$(dirname "$0")/.." && pwd)/tests/web"
if [ ! -f "$web/node_modules/.package-lock.json" ] || [ "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]; then
  echo "npm ci --prefix tests/web"
  # test-only: a failure (no npm registry reachable) must not stop the main job's setup;
  # the web tests then say SKIP, or fail where RN_WEB_TESTS_REQUIRED=1 (CI)
  npm ci --prefix "$web" --no-audit --no-fund || echo "npm ci failed: the tests labelled web will be skipped" >&2
fi
