#!/usr/bin/env bash
# Workload benchmark: notebook-layer build time and digest, base image size (compressed and
# unpacked), the launcher's time from its start in the container to papermill's exec, and the
# end-to-end `terraform apply` of examples/quickstart from scratch (Terraform 1.15.5, local backend),
# broken down (image build, VM start, papermill, release) for that first run and for a second run of
# the same workload (`-replace=dcr_workload.study`), from the apply's output and the VM's serial
# console, each line timestamped as it appears.
# Needs what tests/run.sh installs, and root (runc). Prints one line per figure.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Cargo reads .cargo/config.toml from the directory it runs in: run it from the repository, so
# its settings apply (and builds are the same) wherever this script is started.
cargo() { (cd "$root" && command cargo "$@"); }
"$root/tests/install-tools.sh" >/dev/null
# shellcheck source=../provider-env.sh
source "$root/tests/provider-env.sh" >/dev/null
layout="${DCR_CACHE_DIR:-$HOME/.cache/dcr}/runtime-image/layout"
if ! grep -q 'dcr-runtime:0.1.0' "$layout/index.json" 2>/dev/null; then
  "$root/runtime-image/build.sh" >/dev/null
fi

echo "== notebook layer (cargo bench -p dcr-image --bench notebook_layer)"
cargo bench -q --manifest-path "$root/Cargo.toml" -p dcr-image --bench notebook_layer 2>/dev/null | grep -v '^$'

echo "== base image"
manifest="$(python3 -c "import json,sys; i=json.load(open('$layout/index.json')); print([m for m in i['manifests'] if m.get('annotations',{}).get('org.opencontainers.image.ref.name')=='dcr-runtime:0.1.0'][0]['digest'][7:])")"
layer="$(python3 -c "import json; m=json.load(open('$layout/blobs/sha256/$manifest')); print(m['layers'][0]['digest'][7:])")"
echo "base image compressed: $(stat -c %s "$layout/blobs/sha256/$layer") bytes"
echo "base image unpacked:   $(gzip -dc "$layout/blobs/sha256/$layer" | wc -c) bytes (tar stream)"

echo "== quickstart apply (terraform 1.15.5, from scratch)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r "$root/examples/quickstart/." "$work/"
rm -rf "$work/.dcr" "$work/.terraform" "$work"/terraform.tfstate* "$work/.terraform.lock.hcl"
tf="$DCR_TOOLS_DIR/bin/terraform-1.15.5"
"$tf" -chdir="$work" init -input=false -no-color >/dev/null
# Runs `terraform apply ARGS...` in $work, timestamping each output line and each line of the VM
# serial console that appears meanwhile, and prints the breakdown of dcr_workload.study's create.
cat > "$work/breakdown.py" <<'PY'
import glob, os, re, subprocess, sys, threading, time
work, tf, args = sys.argv[1], sys.argv[2], sys.argv[3:]
state = os.path.join(work, ".dcr")
def serials():
    out = {}
    for p in glob.glob(f"{state}/compute/instances/*/serial.log"):
        try:
            out[p] = os.stat(p).st_ino
        except FileNotFoundError:
            pass
    return out
before = serials()
index = f"{state}/images/index.json"
done = threading.Event()
serial_lines = []  # (time, line) of the serial console of the VM this apply starts
def watch():
    path, pos, buf = None, 0, b""
    while True:
        finished = done.is_set()
        if path is None:
            new = [p for p, ino in serials().items() if before.get(p) != ino]
            path = new[0] if new else None
        if path is not None:
            try:
                with open(path, "rb") as f:
                    f.seek(pos)
                    chunk = f.read()
            except FileNotFoundError:
                chunk = b""
            now = time.time()
            pos += len(chunk)
            buf += chunk
            *lines, buf = buf.split(b"\n")
            serial_lines.extend((now, l.decode(errors="replace")) for l in lines)
        if finished:
            return
        time.sleep(0.01)
watcher = threading.Thread(target=watch)
watcher.start()
start = time.time()
proc = subprocess.Popen([tf, f"-chdir={work}", "apply", "-auto-approve", "-input=false", "-no-color", *args],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
out_lines = [(time.time(), l.decode(errors="replace").rstrip("\n")) for l in proc.stdout]
rc = proc.wait()
end = time.time()
done.set(); watcher.join()
with open(os.path.join(work, "apply.log"), "a") as f:
    f.writelines(f"{t - start:9.3f} {l}\n" for t, l in out_lines)
if rc:
    sys.exit("\n".join(l for _, l in out_lines))
print(f"quickstart apply: {end - start:.1f} s")
for _, l in out_lines:
    if "complete after" in l:
        print("  " + l)
def first(lines, pattern):
    for t, l in lines:
        m = re.search(pattern, l)
        if m:
            return t, m
    sys.exit(f"no line matching {pattern!r}")
creating, _ = first(out_lines, r"^dcr_workload\.study: Creating\.\.\.")
created, _ = first(out_lines, r"^dcr_workload\.study: Creation complete")
booting, _ = first(serial_lines, r"booting")
_, root = first(serial_lines, r"^Root: (.*) in (\d+) ms")
started, _ = first(serial_lines, r"dcr-launcher \[ *\d+ ms\] started")
exiting, _ = first(serial_lines, r"TEE container launcher exiting")
ms = lambda p: int(first(serial_lines, r"dcr-launcher \[ *(\d+) ms\] " + p)[1].group(1))
pushed = os.stat(index).st_mtime
image = f"{pushed - creating:6.3f} s" if pushed > creating else " unchanged (index not rewritten)"
print(f"  dcr_workload.study create:                      {created - creating:6.3f} s")
print(f"    image build + push (Creating to index.json): {image}")
print(f"    then to VM booting (output access, VM insert): {booting - max(pushed, creating):6.3f} s")
print(f"    VM start (booting to launcher started):    {started - booting:6.3f} s  (root: {root.group(1)} in {root.group(2)} ms)")
print(f"    launcher start to papermill exec:          {ms('starting papermill') / 1000:6.3f} s")
print(f"    papermill:                                 {(ms('notebook finished') - ms('starting papermill')) / 1000:6.3f} s")
print(f"    release:                                   {(ms('released') - ms('notebook finished')) / 1000:6.3f} s")
print(f"    VM exit to create complete (verify token): {created - exiting:6.3f} s")
PY
echo "-- first run; load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$work/breakdown.py" "$work" "$tf"

echo "== launcher, container start to papermill exec"
serial="$(ls "$work"/.dcr/compute/instances/*/serial.log | head -1)"
grep -E 'dcr-launcher \[ *[0-9]+ ms\] (started|starting papermill|notebook finished|released)' "$serial" | sed 's/^/  /'

echo "== quickstart apply, second run of the workload (-replace=dcr_workload.study)"
echo "-- second run; load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$work/breakdown.py" "$work" "$tf" -replace=dcr_workload.study
"$tf" -chdir="$work" destroy -auto-approve -input=false -no-color >/dev/null
