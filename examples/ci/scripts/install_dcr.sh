#!/usr/bin/env bash
# Builds dcr from a checkout (the provider and the `dcr` command) and installs the provider in a
# filesystem mirror Terraform finds without any registry:
#   install_dcr.sh DCR_CHECKOUT [INSTALL_DIR]
# INSTALL_DIR (default ~/.dcr-ci) receives bin/dcr, the mirror, and dcr.tfrc. Prints the lines to
# append to $GITHUB_ENV (TF_CLI_CONFIG_FILE, DCR) and, on GitHub Actions, appends them itself.
# DCR_BINARIES names a directory of already built binaries (terraform-provider-dcr, dcr) to
# install instead of building (dcr's own test of this script gives its debug build).
set -euo pipefail
src="$(cd "${1:?usage: install_dcr.sh DCR_CHECKOUT [INSTALL_DIR]}" && pwd)"
dest="${2:-$HOME/.dcr-ci}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$src/Cargo.toml" | head -1)"
if [ -n "${DCR_BINARIES:-}" ]; then
  out="$DCR_BINARIES"
else
  (cd "$src" && cargo build --quiet --release --locked -p terraform-provider-dcr -p dcr-cli)
  out="${CARGO_TARGET_DIR:-$src/target}/release"
fi
plugin="$dest/mirror/registry.terraform.io/dcr/dcr/$version/linux_amd64"
mkdir -p "$plugin" "$dest/bin"
cp "$out/terraform-provider-dcr" "$plugin/terraform-provider-dcr_v$version"
cp "$out/dcr" "$dest/bin/dcr"
cat > "$dest/dcr.tfrc" <<TFRC
provider_installation {
  filesystem_mirror {
    path    = "$dest/mirror"
    include = ["registry.terraform.io/dcr/dcr"]
  }
  direct {
    exclude = ["registry.terraform.io/dcr/dcr"]
  }
}
TFRC
env_lines="TF_CLI_CONFIG_FILE=$dest/dcr.tfrc
DCR=$dest/bin/dcr"
echo "$env_lines"
if [ -n "${GITHUB_ENV:-}" ]; then
  echo "$env_lines" >> "$GITHUB_ENV"
  echo "$dest/bin" >> "$GITHUB_PATH"
fi
