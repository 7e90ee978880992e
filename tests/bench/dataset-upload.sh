#!/usr/bin/env bash
# Benchmark: `terraform apply` of a dcr_dataset whose source is SIZE_MIB (default 1024) of CSV, on
# the embedded local cloud. Reports plan time (hash + schema check of the file), apply time and
# throughput (encrypt + upload), and the provider's peak RSS (VmHWM) during each: once as the
# machine schedules it and once pinned to one core (taskset -c 0, Terraform and provider alike).
# Beside them, in the same run, the peers: `sha256sum` of the same file and
# `openssl speed -evp aes-256-gcm` (16 KiB and 8 KiB blocks, one core).
# Usage: tests/bench/dataset-upload.sh [SIZE_MIB]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Cargo reads .cargo/config.toml from the directory it runs in: run it from the repository, so
# its settings apply (and builds are the same) wherever this script is started.
cargo() { (cd "$root" && command cargo "$@"); }
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
      # Only this bench's provider (Terraform runs it in the -chdir directory), not another job's.
      [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$work" ] || continue
      hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
      if [ -n "$hwm" ] && [ "$hwm" -gt "$peak" ]; then peak=$hwm; echo "$peak" > "$peak_file"; fi
    done
    sleep 0.05
  done
}

measure() {
  local label="$1"; shift
  # Earlier runs' dirty pages (the source, uploaded objects) are written back first, so their
  # writeback does not land in this measurement.
  sync
  watch_rss & local watcher=$!
  local start end
  start=$(date +%s.%N)
  "$@" >"$work/$label.log" 2>&1 || { kill "$watcher"; cat "$work/$label.log"; exit 1; }
  end=$(date +%s.%N)
  kill "$watcher"; wait "$watcher" 2>/dev/null || true
  local secs; secs=$(echo "$end - $start" | bc -l)
  local peak_kib; peak_kib=$(cat "$peak_file")
  printf '%-12s %8.2f s  %8.1f MB/s  provider peak RSS %6.1f MiB\n' "$label" "$secs" \
    "$(echo "$bytes / $secs / 1000000" | bc -l)" "$(echo "$peak_kib / 1024" | bc -l)"
}

echo "source: $bytes bytes ($size_mib MiB) of CSV; load $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
echo "== peers (one core)"
cat "$work/big.csv" >/dev/null # the file is in the page cache for every reader below
start=$(date +%s.%N)
sha256sum "$work/big.csv" >/dev/null
end=$(date +%s.%N)
secs=$(echo "$end - $start" | bc -l)
printf '%-12s %8.2f s  %8.1f MB/s\n' sha256sum "$secs" "$(echo "$bytes / $secs / 1000000" | bc -l)"
# -mr prints bytes per second for 16, 64, 256, 1024, 8192 and 16384-byte blocks.
openssl speed -evp aes-256-gcm -seconds 3 -mr 2>/dev/null | awk -F: '/^\+F:/ {
  printf "openssl speed -evp aes-256-gcm: %8.1f MB/s (16 KiB blocks)  %8.1f MB/s (8 KiB blocks)\n", $9 / 1e6, $8 / 1e6 }'
echo "== dcr_dataset (plan: hash + check; apply: encrypt + upload)"
# A fresh cache per plan: the provider remembers files that passed their check (checkcache.rs),
# which would turn a repeated plan into a lookup; apply then re-plans from that cache, as in use.
export DCR_CACHE_DIR="$work/cache"
measure plan "$tf" -chdir="$work" plan -input=false -no-color -out=tfplan
measure apply "$tf" -chdir="$work" apply -input=false -no-color tfplan
"$tf" -chdir="$work" destroy -auto-approve -input=false -no-color >/dev/null
echo "== dcr_dataset, one core (taskset -c 0); load $(cut -d' ' -f1-3 /proc/loadavg)"
export DCR_CACHE_DIR="$work/cache-1c"
measure plan-1c taskset -c 0 "$tf" -chdir="$work" plan -input=false -no-color -out=tfplan
measure apply-1c taskset -c 0 "$tf" -chdir="$work" apply -input=false -no-color tfplan
"$tf" -chdir="$work" destroy -auto-approve -input=false -no-color >/dev/null
echo "targets: plan >= 600 MB/s, apply >= 1000 MB/s on one core, provider RSS < 100 MiB"
