#!/usr/bin/env bash
# README's main job: build the provider and `terraform apply` this example with Terraform 1.15.5 on
# the embedded local cloud. Safe to run again: a second apply changes nothing.
# The first run also builds the base runtime image (runtime-image/build.sh; needs root).
# Extra arguments go to `terraform apply` (e.g. -destroy).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

"$root/tests/install-tools.sh"
# shellcheck source=../../tests/provider-env.sh
source "$root/tests/provider-env.sh"

# The workload image starts from dcr's base runtime image: build it once (reproducibly; needs root).
layout="${DCR_CACHE_DIR:-$HOME/.cache/dcr}/runtime-image/layout"
if ! grep -qs '"dcr-runtime:0.1.0"' "$layout/index.json"; then
  "$root/runtime-image/build.sh"
fi

tf="$DCR_TOOLS_DIR/bin/terraform-1.15.5"
"$tf" -chdir="$here" init -upgrade -input=false -no-color
"$tf" -chdir="$here" apply -auto-approve -input=false "$@"
