#!/usr/bin/env bash
# Builds dcr's base runtime image, reproducibly, into an OCI image layout:
#
#   a Debian bookworm rootfs from mmdebstrap (minbase + python3 + ca-certificates; docs, man pages
#   and locales left out), the wheels of requirements.lock installed by hash into /usr/local, and
#   the statically linked dcr-launcher as /usr/local/bin/dcr-launcher, the entrypoint.
#
# Every time in it is SOURCE_DATE_EPOCH, the tar is normalised by `dcr-image from-rootfs` (sorted,
# zero mtimes, fixed gzip), so building twice from the same package versions gives the same digest.
# Debian's mirror moves on, though: for a digest that holds for years, point --mirror at a
# snapshot (https://snapshot.debian.org/archive/debian/20250101T000000Z/).
#
# Usage: runtime-image/build.sh [--layout DIR] [--tag TAG] [--mirror URL] [--push REF [--plain-http HOST]]
#   --layout  where the OCI layout goes   (default: ${DCR_CACHE_DIR:-~/.cache/dcr}/runtime-image/layout)
#   --tag     the tag inside the layout   (default: dcr-runtime:0.1.0)
#   --push    also push to a registry (credentials from ~/.docker/config.json)
# Prints the image digest on the last line. Needs root (mmdebstrap's root mode and chroot),
# mmdebstrap, python3 with pip, and cargo. Downloads are cached in ${DCR_CACHE_DIR}/runtime-image.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# Cargo reads .cargo/config.toml from the directory it runs in: run it from the repository, so
# its settings apply (and builds are the same) wherever this script is started.
cargo() { (cd "$root" && command cargo "$@"); }

export SOURCE_DATE_EPOCH=1735689600 # 2025-01-01T00:00:00Z
SUITE=bookworm
PIP_BOOTSTRAP=pip-24.3.1-py3-none-any.whl
PIP_BOOTSTRAP_SHA256=3790624780082365f47549d032f3770eeb2b1e8bd1f7b2e02dace1afa361b4ed

cache="${DCR_CACHE_DIR:-$HOME/.cache/dcr}/runtime-image"
layout="$cache/layout"
tag="dcr-runtime:0.1.0"
mirror="http://deb.debian.org/debian"
push=""
plain_http=()
while [ $# -gt 0 ]; do
  case "$1" in
    --layout) layout="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --mirror) mirror="$2"; shift 2 ;;
    --push) push="$2"; shift 2 ;;
    --plain-http) plain_http+=(--plain-http "$2"); shift 2 ;;
    *) echo "build.sh: unknown argument $1 (see the usage at the top of $0)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then
  echo "build.sh: run as root: mmdebstrap's root mode and the chroot that installs the wheels need it" >&2
  exit 1
fi
for tool in mmdebstrap cargo python3; do
  type -P "$tool" >/dev/null || { echo "build.sh: $tool not found (tests/install-tools.sh installs mmdebstrap)" >&2; exit 1; }
done
start=$SECONDS
mkdir -p "$cache/wheels"
work="$(mktemp -d "${TMPDIR:-/tmp}/dcr-runtime-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# 1. The launcher, static, with no path of this machine in it.
echo "== dcr-launcher (static, release)" >&2
RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=$root=/build --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo" \
  CARGO_TARGET_DIR="$root/target/launcher-static" \
  cargo build --quiet --release --locked --manifest-path "$root/Cargo.toml" -p dcr-launcher --target x86_64-unknown-linux-gnu
launcher="$root/target/launcher-static/x86_64-unknown-linux-gnu/release/dcr-launcher"
cargo build --quiet --locked --manifest-path "$root/Cargo.toml" -p dcr-image --bin dcr-image
dcr_image="$root/target/debug/dcr-image"

# 2. Wheels, by hash, for CPython 3.11 on x86_64 (what bookworm's python3 is), cached.
echo "== wheels" >&2
python3 -m pip download --quiet --disable-pip-version-check --require-hashes --no-deps --only-binary :all: \
  --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --platform any \
  -r "$here/requirements.lock" -d "$cache/wheels"
if [ ! -f "$cache/wheels/$PIP_BOOTSTRAP" ]; then
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
    -d "$cache/wheels" "pip==$(echo "$PIP_BOOTSTRAP" | cut -d- -f2)"
fi
echo "$PIP_BOOTSTRAP_SHA256  $cache/wheels/$PIP_BOOTSTRAP" | sha256sum --check --quiet
mkdir -p "$work/wheels"
cp "$cache/wheels/"*.whl "$here/requirements.lock" "$work/wheels/"

# 3. The rootfs. pip runs from its own wheel inside the chroot and is not installed; the wheels
#    land in /usr/local (Debian's python3 reads /usr/local/lib/python3.11/dist-packages). It runs
#    with an empty environment (`env -i`) plus what it needs: the host's PIP_* or PYTHON* settings
#    must not reach a reproducible install.
echo "== rootfs (mmdebstrap $SUITE)" >&2
mmdebstrap --quiet --mode=root --variant=minbase --include=python3,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook="cp -r '$work/wheels' \"\$1/tmp/wheels\"" \
  --customize-hook="chroot \"\$1\" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH python3 /tmp/wheels/$PIP_BOOTSTRAP/pip install --quiet --no-index --find-links /tmp/wheels --require-hashes --only-binary :all: --no-cache-dir --break-system-packages --root-user-action=ignore --disable-pip-version-check -r /tmp/wheels/requirements.lock" \
  --customize-hook='rm -rf "$1/tmp/wheels" "$1/root/.cache"' \
  --customize-hook="install -D -m 0755 '$launcher' \"\$1/usr/local/bin/dcr-launcher\"" \
  --customize-hook='mkdir -p "$1/dcr" "$1/run/dcr"' \
  "$SUITE" "$work/rootfs.tar" "$mirror"

# 4. The image. Confidential Space enforces the launch policy labels: only DCR_LOCAL_CLOUD may be
#    set from outside (and only local workloads read it), logs reach the console only on debug
#    images, and the memory-backed run directory is the one mount allowed.
echo "== image" >&2
digest="$("$dcr_image" from-rootfs --rootfs "$work/rootfs.tar" --layout "$layout" --tag "$tag" \
  --entrypoint /usr/local/bin/dcr-launcher \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 --env PYTHONUNBUFFERED=1 \
  --working-dir /dcr \
  --label org.opencontainers.image.title=dcr-runtime \
  --label org.opencontainers.image.description="dcr base runtime image: python3, papermill, ipykernel, pandas, numpy, dcr-launcher" \
  --label tee.launch_policy.allow_env_override=DCR_LOCAL_CLOUD \
  --label tee.launch_policy.allow_mount_destinations=/run/dcr \
  --label tee.launch_policy.log_redirect=debugonly \
  --created-by "runtime-image/build.sh (mmdebstrap $SUITE, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)")"
if [ -n "$push" ]; then
  echo "== push $push" >&2
  "$dcr_image" push --layout "$layout" --tag "$tag" --to "$push" "${plain_http[@]+"${plain_http[@]}"}" >&2
fi
echo "runtime-image/build.sh: $tag in $layout ($((SECONDS - start)) s)" >&2
echo "$digest"
