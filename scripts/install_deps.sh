#!/usr/bin/env bash
# scripts/install_deps.sh — installs the Debian packages the build and tests need.
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
      bible-kjv                        # the built-in default corpus (its `bible` program)
      wrk)                             # test-only: the HTTP load generator of tests/serve_wrk.sh
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
