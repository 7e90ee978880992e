#!/usr/bin/env bash
# Regenerates requirements.lock from requirements.txt: resolves every dependency for CPython 3.11 on
# x86_64 Linux (the base image's python3), downloads the wheels and writes each one's version and
# SHA-256. Run it after changing requirements.txt, then rebuild the image.
#
#   runtime-image/lock.sh [REQUIREMENTS LOCK [KEEP]]
#
# locks another requirements file for the same Python the same way, keeping every package it
# shares with the lock KEEP at KEEP's version (`dcr lab`'s venv: provider/cli/lab/requirements.txt
# and .lock, keeping runtime-image/requirements.lock's versions, so its kernel is the image's).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
requirements="${1:-$here/requirements.txt}"
lock="${2:-$here/requirements.lock}"
keep="${3:-}"
if [ $# -eq 0 ]; then
  header="# Generated from requirements.txt for CPython 3.11 on x86_64 Linux (Debian bookworm's python3):
# every wheel the base image installs, pinned by version and hash. Regenerate with
# runtime-image/lock.sh after changing requirements.txt.
"
else
  header="# Generated from $(basename "$requirements") by runtime-image/lock.sh for CPython 3.11 on x86_64
# Linux: every wheel, pinned by version and hash. Regenerate after changing $(basename "$requirements").
"
fi
dl="$(mktemp -d)"
trap 'rm -rf "$dl"' EXIT
constraints=()
if [ -n "$keep" ]; then
  grep -E '^[a-z0-9-]+==' "$keep" | sed 's/ .*//' >"$dl/keep.txt"
  constraints=(-c "$dl/keep.txt")
fi
python3 -m pip download --quiet --disable-pip-version-check --only-binary :all: \
  --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --platform any \
  -r "$requirements" "${constraints[@]}" -d "$dl"
python3 - "$dl" "$lock" "$header" <<'PY'
import hashlib, os, re, sys
dl, out, header = sys.argv[1], sys.argv[2], sys.argv[3]
lines = []
for f in sorted(os.listdir(dl)):
    if not f.endswith(".whl"):
        continue
    name, version = f.split("-")[:2]
    name = re.sub(r"[-_.]+", "-", name).lower()
    digest = hashlib.sha256(open(os.path.join(dl, f), "rb").read()).hexdigest()
    lines.append(f"{name}=={version} \\\n    --hash=sha256:{digest}")
with open(out, "w") as fh:
    fh.write(header + "\n".join(lines) + "\n")
PY
echo "wrote $lock"
