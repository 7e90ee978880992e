# shellcheck shell=bash
# Sourced by examples/quickstart/run.sh, tests/run.sh and tests/gcp-live.sh: builds the provider and
# publishes it in a local filesystem mirror that a Terraform CLI config points at, so `terraform init`
# finds registry.terraform.io/dcr/dcr without any network. Exports DCR_TOOLS_DIR, DCR_PROVIDER_BIN and
# TF_CLI_CONFIG_FILE, and defines dcr_ensure_base_image.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DCR_TOOLS_DIR="${DCR_TOOLS_DIR:-$HOME/.cache/dcr/tools}"

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: dcr needs a Rust toolchain (1.91 or newer) on PATH" >&2
  exit 1
fi
# From the repository, so its .cargo/config.toml applies wherever this file is sourced.
(cd "$root" && cargo build -p terraform-provider-dcr -p dcr-launcher -p dcr-cli)
export DCR_PROVIDER_BIN="$root/target/debug/terraform-provider-dcr"

mirror="$DCR_TOOLS_DIR/provider-mirror"
dest="$mirror/registry.terraform.io/dcr/dcr/0.1.0/linux_amd64"
mkdir -p "$dest"
cp "$DCR_PROVIDER_BIN" "$dest/terraform-provider-dcr_v0.1.0"
cat > "$DCR_TOOLS_DIR/dcr.tfrc" <<TFRC
provider_installation {
  filesystem_mirror {
    path    = "$mirror"
    include = ["registry.terraform.io/dcr/dcr"]
  }
  direct {
    exclude = ["registry.terraform.io/dcr/dcr"]
  }
}
TFRC
export TF_CLI_CONFIG_FILE="$DCR_TOOLS_DIR/dcr.tfrc"
export CHECKPOINT_DISABLE=1

# The workload image starts from dcr's base runtime image: builds it once (reproducibly, with
# runtime-image/build.sh; needs root) unless its layout is already there.
dcr_ensure_base_image() {
  local layout="${DCR_CACHE_DIR:-$HOME/.cache/dcr}/runtime-image/layout"
  if ! grep -qs '"dcr-runtime:0.1.0"' "$layout/index.json"; then
    "$(dirname "${BASH_SOURCE[0]}")/../runtime-image/build.sh"
  fi
}
