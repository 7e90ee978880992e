#!/usr/bin/env bash
# Benchmark: `terraform apply` of a dcr_dataset whose source is SIZE_MIB (default 1024) of CSV, on
# the embedded local cloud. Reports plan time (hash + schema check of the file), apply time and
# throughput (encrypt + upload), and the provider's peak RSS (VmHWM) during each.
# Usage: tests/bench/dataset-upload.sh [SIZE_MIB]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
size_mib="${1:-1024}"

"$root/tests/install-tools.sh" >/dev/null
export DCR_TOOLS_DIR="${DCR_TOOLS_DIR:-$HOME/.cache/dcr/tools}"
if [ -z "${DCR_BENCH_DEBUG:-}" ]; then
  cargo build -q --release --manifest-path "$root/Cargo.toml" -p terraform-provider-dcr
  bin="$root/target/release/terraform-provider-dcr"
else
  cargo build -q --manifest-path "$root/Cargo.toml" -p terraform-provider-dcr
  bin="$root/target/debug/terraform-provider-dcr"
fi

work="$(mktemp -d /tmp/dcr-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mirror="$work/mirror/registry.terraform.io/dcr/dcr/0.1.0/linux_amd64"
mkdir -p "$mirror"
cp "$bin" "$mirror/terraform-provider-dcr_v0.1.0"
cat > "$work/cli.tfrc" <<TFRC
provider_installation {
  filesystem_mirror {
    path    = "$work/mirror"
    include = ["registry.terraform.io/dcr/dcr"]
  }
  direct {
    exclude = ["registry.terraform.io/dcr/dcr"]
  }
}
TFRC
export TF_CLI_CONFIG_FILE="$work/cli.tfrc" CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1

# A conforming CSV of the requested size, written from a repeated block so generation is fast.
python3 - "$work/big.csv" "$size_mib" <<'PY'
import random, sys
path, mib = sys.argv[1], int(sys.argv[2])
random.seed(1)
rows = "".join(f"{i},{random.randint(0, 1000)},{random.random() * 100:.4f},{random.choice('abcd')}\n" for i in range(20000))
block = rows.encode()
with open(path, "wb") as f:
    f.write(b"id,count,score,kind\n")
    written = 0
    while written < mib << 20:
        f.write(block)
        written += len(block)
PY
bytes=$(stat -c %s "$work/big.csv")

cat > "$work/main.tf" <<'TF'
terraform {
  required_providers {
    dcr = { source = "dcr/dcr" }
  }
}
provider "dcr" {}
resource "dcr_dataset" "big" {
  name   = "bench"
  source = "big.csv"
  schema {
    column {
      name = "id"
      type = "integer"
      min  = 0
      max  = 1000000000
    }
    column {
      name = "count"
      type = "integer"
      min  = 0
      max  = 1000
    }
    column {
      name = "score"
      type = "float"
      min  = 0
      max  = 100
    }
    column {
      name   = "kind"
      type   = "category"
      values = ["a", "b", "c", "d"]
    }
  }
}
TF

tf="$DCR_TOOLS_DIR/bin/terraform-1.15.5"
"$tf" -chdir="$work" init -input=false -no-color >/dev/null

# Samples the provider's peak RSS while a command runs.
peak_file="$work/peak"
watch_rss() {
  local peak=0
  echo 0 > "$peak_file"
  while true; do
    for pid in $(pgrep -f terraform-provider-dcr_v0.1.0 || true); do
      hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
      if [ -n "$hwm" ] && [ "$hwm" -gt "$peak" ]; then peak=$hwm; echo "$peak" > "$peak_file"; fi
    done
    sleep 0.05
  done
}

measure() {
  local label="$1"; shift
  watch_rss & local watcher=$!
  local start end
  start=$(date +%s.%N)
  "$@" >"$work/$label.log" 2>&1 || { kill "$watcher"; cat "$work/$label.log"; exit 1; }
  end=$(date +%s.%N)
  kill "$watcher"; wait "$watcher" 2>/dev/null || true
  local secs; secs=$(echo "$end - $start" | bc -l)
  local peak_kib; peak_kib=$(cat "$peak_file")
  printf '%-6s %8.2f s  %8.1f MB/s  provider peak RSS %6.1f MiB\n' "$label" "$secs" \
    "$(echo "$bytes / $secs / 1000000" | bc -l)" "$(echo "$peak_kib / 1024" | bc -l)"
}

echo "source: $bytes bytes ($size_mib MiB) of CSV"
measure plan "$tf" -chdir="$work" plan -input=false -no-color -out=tfplan
measure apply "$tf" -chdir="$work" apply -input=false -no-color tfplan
"$tf" -chdir="$work" destroy -auto-approve -input=false -no-color >/dev/null
