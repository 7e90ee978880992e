#!/usr/bin/env bash
# README's test command. Installs what the tests need, then: formatting, lints, docs freshness,
# every test (unit, local cloud, end-to-end against real Terraform 1.15.5 and 1.0.3), and last the
# conformance check of every request the local cloud served during the tests against Google's
# discovery documents.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

echo "== cargo fmt --check"
cargo fmt --all -- --check

"$root/tests/install-tools.sh"
# shellcheck source=provider-env.sh
source "$root/tests/provider-env.sh"
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== terraform fmt of the modules and examples"
"$DCR_TOOLS_DIR/bin/terraform-1.15.5" fmt -check -recursive modules examples
echo "== docs are generated from the schemas"
cargo run -q -p terraform-provider-dcr -- docs --check

export DCR_REQUEST_LOG_DIR="$root/target/request-logs"
rm -rf "$DCR_REQUEST_LOG_DIR"
mkdir -p "$DCR_REQUEST_LOG_DIR"

echo "== cargo test"
cargo test --workspace --no-fail-fast

echo "== conformance of every request against Google's discovery documents"
cargo run -q -p dcr-e2e --bin conformance -- "$DCR_REQUEST_LOG_DIR"
