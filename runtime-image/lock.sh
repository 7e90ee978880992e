#!/usr/bin/env bash
# Regenerates requirements.lock from requirements.txt: resolves every dependency for CPython 3.11 on
# x86_64 Linux (the base image's python3), downloads the wheels and writes each one's version and
# SHA-256. Run it after changing requirements.txt, then rebuild the image.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dl="$(mktemp -d)"
trap 'rm -rf "$dl"' EXIT
python3 -m pip download --quiet --disable-pip-version-check --only-binary :all: \
  --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --platform any \
  -r "$here/requirements.txt" -d "$dl"
python3 - "$dl" "$here/requirements.lock" <<'PY'
import hashlib, os, re, sys
dl, out = sys.argv[1], sys.argv[2]
lines = []
for f in sorted(os.listdir(dl)):
    if not f.endswith(".whl"):
        continue
    name, version = f.split("-")[:2]
    name = re.sub(r"[-_.]+", "-", name).lower()
    digest = hashlib.sha256(open(os.path.join(dl, f), "rb").read()).hexdigest()
    lines.append(f"{name}=={version} \\\n    --hash=sha256:{digest}")
with open(out, "w") as fh:
    fh.write("# Generated from requirements.txt for CPython 3.11 on x86_64 Linux (Debian bookworm's python3):\n"
             "# every wheel the base image installs, pinned by version and hash. Regenerate with\n"
             "# runtime-image/lock.sh after changing requirements.txt.\n" + "\n".join(lines) + "\n")
PY
echo "wrote $here/requirements.lock"
