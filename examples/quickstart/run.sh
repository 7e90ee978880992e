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

dcr_ensure_base_image

tf="$DCR_TOOLS_DIR/bin/terraform-1.15.5"
"$tf" -chdir="$here" init -upgrade -input=false -no-color
"$tf" -chdir="$here" apply -auto-approve -input=false "$@"
