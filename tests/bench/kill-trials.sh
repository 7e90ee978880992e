#!/usr/bin/env bash
# Kill-trial benchmark (issue 10, item 6): tests/tests/reliability.rs with 20 trials instead of
# CI's 5. Each trial SIGKILLs examples/quickstart's `terraform apply` (the provider alone or
# Terraform's process group) after a seeded random delay, applies again and checks that it
# converged and left nothing. Prints one line per trial (seed, delay, what was killed and when, what
# the killed run left for the next apply to reclaim, outcome, re-apply and trial times; a failure's
# details under it) and a summary line. DCR_KILL_TRIALS, DCR_KILL_SEED and DCR_KILL_WINDOW_MS
# override the count, the seed and the delay window (the summary prints the last two to replay a
# run). Needs what tests/run.sh installs, and root (runc). Exits 1 if any trial failed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Cargo reads .cargo/config.toml from the directory it runs in: run it from the repository, so
# its settings apply (and builds are the same) wherever this script is started.
cargo() { (cd "$root" && command cargo "$@"); }
"$root/tests/install-tools.sh" >/dev/null
# shellcheck source=../provider-env.sh
source "$root/tests/provider-env.sh" >/dev/null
dcr_ensure_base_image

export DCR_KILL_TRIALS="${DCR_KILL_TRIALS:-20}"
out="$(mktemp)"
err="$(mktemp)"
trap 'rm -f "$out" "$err"' EXIT
status=0
RUST_BACKTRACE=0 cargo test -q --manifest-path "$root/Cargo.toml" -p dcr-e2e --test reliability -- --nocapture \
  >"$out" 2>"$err" || status=$?

# The test's own lines; a failed trial's details (indented) until the next trial's line.
awk '/^kill trial/ { failed = /FAILED/; print; next } failed && !/^(test |running |failures|$)/ { print "    " $0 }' "$out"
if ! grep -q '^kill trials: .* converged' "$out"; then
  echo "the kill trials did not run to their summary:" >&2
  cat "$out" "$err" >&2
fi
exit "$status"
