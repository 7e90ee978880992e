#!/usr/bin/env bash
# Workload benchmark: notebook-layer build time and digest, base image size (compressed and
# unpacked), the launcher's time from its start in the container to papermill's exec, and the
# end-to-end `terraform apply` of examples/quickstart from scratch (Terraform 1.15.5, local backend).
# Needs what tests/run.sh installs, and root (runc). Prints one line per figure.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$root/tests/install-tools.sh" >/dev/null
# shellcheck source=../provider-env.sh
source "$root/tests/provider-env.sh" >/dev/null
layout="${DCR_CACHE_DIR:-$HOME/.cache/dcr}/runtime-image/layout"
if ! grep -q 'dcr-runtime:0.1.0' "$layout/index.json" 2>/dev/null; then
  "$root/runtime-image/build.sh" >/dev/null
fi

echo "== notebook layer (cargo bench -p dcr-image --bench notebook_layer)"
cargo bench -q --manifest-path "$root/Cargo.toml" -p dcr-image --bench notebook_layer 2>/dev/null | grep -v '^$'

echo "== base image"
manifest="$(python3 -c "import json,sys; i=json.load(open('$layout/index.json')); print([m for m in i['manifests'] if m.get('annotations',{}).get('org.opencontainers.image.ref.name')=='dcr-runtime:0.1.0'][0]['digest'][7:])")"
layer="$(python3 -c "import json; m=json.load(open('$layout/blobs/sha256/$manifest')); print(m['layers'][0]['digest'][7:])")"
echo "base image compressed: $(stat -c %s "$layout/blobs/sha256/$layer") bytes"
echo "base image unpacked:   $(gzip -dc "$layout/blobs/sha256/$layer" | wc -c) bytes (tar stream)"

echo "== quickstart apply (terraform 1.15.5, from scratch)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r "$root/examples/quickstart/." "$work/"
rm -rf "$work/.dcr" "$work/.terraform" "$work"/terraform.tfstate* "$work/.terraform.lock.hcl"
tf="$DCR_TOOLS_DIR/bin/terraform-1.15.5"
"$tf" -chdir="$work" init -input=false -no-color >/dev/null
start=$(date +%s.%N)
"$tf" -chdir="$work" apply -auto-approve -input=false -no-color >"$work/apply.log"
end=$(date +%s.%N)
echo "quickstart apply: $(python3 -c "print(f'{$end - $start:.1f}')") s"
grep -E 'Creation complete' "$work/apply.log" | sed 's/^/  /'

echo "== launcher, container start to papermill exec"
serial="$(ls "$work"/.dcr/compute/instances/*/serial.log | head -1)"
grep -E 'dcr-launcher \[ *[0-9]+ ms\] (started|starting papermill|notebook finished|released)' "$serial" | sed 's/^/  /'
"$tf" -chdir="$work" destroy -auto-approve -input=false -no-color >/dev/null
