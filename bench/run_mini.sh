#!/bin/bash
# Runs `headroom bench` and the PyTorch peer on the three configs/mini/ configs, one after the
# other, for bench/RESULTS.md. Usage: bench/run_mini.sh [BUILD_DIR] [STEPS]
# Needs an idle machine: other processes on the same cores distort every figure (the load average
# is printed before every run; on a shared machine, run it several times and keep the best).
set -euo pipefail
# The peer is Debian's PyTorch (python3-torch, 1.13 on Debian 12); installed here when missing,
# since the tests and the demo do not need it.
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  echo "bench/run_mini.sh: installing python3-torch (the PyTorch peer)"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    python3-torch >/dev/null
fi
build=${1:-build}
steps=${2:-5}
cd "$(dirname "$0")/.."
echo "date=$(date -u +%Y-%m-%dT%H:%MZ) load=$(cut -d' ' -f1-3 /proc/loadavg)"
for c in bert_mini_std bert_mini_fixed lm_mini; do
  echo "== headroom bench $c load=$(cut -d' ' -f1-3 /proc/loadavg)"
  "$build/headroom" bench --config "configs/mini/$c.textproto" --device cpu --steps "$steps"
  echo "== torch_peer $c load=$(cut -d' ' -f1-3 /proc/loadavg)"
  /usr/bin/python3 bench/torch_peer.py "configs/mini/$c.textproto" --steps "$steps" --threads 2
done
echo "load_at_end=$(cut -d' ' -f1-3 /proc/loadavg)"
