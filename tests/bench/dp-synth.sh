#!/usr/bin/env bash
# DP-synthesis benchmark: dcr's MST generator (dcr-synth) and the peer, smartnoise-synth's MST, on
# the same integer-coded table (UCI Adult as the private-pgm project codes it), at ε ∈ {0.1, 1, 10}
# and δ = 1e-9. Each prints one JSON line: fit and sample seconds, mean and max TVD of the 1-, 2-
# and 3-way marginals, and the independent-columns baseline. Our lines come with peak RSS
# (/usr/bin/time -v).
#
#   tests/bench/dp-synth.sh DATA_DIR [PEER_PYTHON]
#
# DATA_DIR holds adult.csv and adult-domain.json (not in this repository: the private-pgm project
# publishes them, CC BY 4.0). PEER_PYTHON is a Python with smartnoise-synth installed
# (`python3 -m venv v && v/bin/pip install smartnoise-synth`, several GB of wheels) and
# PEER_SCRIPT the peer's driver; without them only dcr's figures are printed. Then a stand-in of a
# generated 1,000,000-row, 30-column source streamed from disk on one core (taskset -c 0), with
# its wall time and peak RSS.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
data="${1:?usage: dp-synth.sh DATA_DIR [PEER_PYTHON]}"
peer_python="${2:-}"
seeds="${SEEDS:-0}"
(cd "$root" && cargo build -q --release -p dcr-synth --example mst_bench --example standin_bench)
bench="$root/target/release/examples/mst_bench"
for eps in 0.1 1 10; do
  for seed in $seeds; do
    out="$(/usr/bin/time -v "$bench" "$data/adult.csv" "$data/adult-domain.json" "$eps" "$seed" 2>/tmp/dp-synth-time.$$)"
    rss="$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' /tmp/dp-synth-time.$$)"
    echo "${out%\}}, \"peak_rss_kib\": $rss}"
  done
  if [ -n "$peer_python" ] && [ -n "${PEER_SCRIPT:-}" ]; then
    JAX_PLATFORMS=cpu "$peer_python" "$PEER_SCRIPT" adult "$eps" 0 2>/dev/null | tail -1
  fi
done
out="$(/usr/bin/time -v taskset -c 0 "$root/target/release/examples/standin_bench" 1000000 30 2>/tmp/dp-synth-time.$$)"
rss="$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' /tmp/dp-synth-time.$$)"
echo "${out%\}}, \"peak_rss_kib\": $rss}"
rm -f /tmp/dp-synth-time.$$
