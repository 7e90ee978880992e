#!/usr/bin/env bash
# The live acceptance run: examples/gcp applied on two real Google Cloud projects, the data owner's
# and the consumer's, exactly as its README's hand-off goes. The owner publishes the dataset under a
# policy that admits nothing, the consumer plans its image's digest, the owner pins it, the consumer
# runs the notebook in a Confidential Space VM; then the released result is downloaded and its
# attestation token verified independently of the apply, and both configurations are destroyed. Each
# step's duration is printed at the end. Opt-in: without the two project variables it says so and
# exits 0. Set-up and what each step confirms: docs/guides/gcp.md#the-live-acceptance-run.
#
#   DCR_LIVE_OWNER_PROJECT      the data owner's project (required)
#   DCR_LIVE_CONSUMER_PROJECT   the consumer's project (required; may be the owner's)
#   DCR_LIVE_REGION             region of everything (default us-central1)
#   DCR_LIVE_ZONE               zone of the VM (default REGION-a)
#   DCR_LIVE_REGISTRY           Artifact Registry repository (default REGION-docker.pkg.dev/CONSUMER/dcr)
#   DCR_LIVE_SERVICE_ACCOUNT    the VM's service account (default dcr-workload@CONSUMER.iam.gserviceaccount.com)
#   DCR_LIVE_CONFIDENTIAL_TYPE  SEV (default) or TDX
#   DCR_LIVE_READER             an IAM member the owner's policy lets read released results (optional)
#   DCR_LIVE_OWNER_CREDENTIALS, DCR_LIVE_CONSUMER_CREDENTIALS
#                               credential files for each party (GOOGLE_APPLICATION_CREDENTIALS);
#                               default: the same Application Default Credentials for both
#   DCR_LIVE_RECREATE           1 (default): after the destroy, apply and destroy the owner once more
#                               (bucket names and the soft-deleted pool reused); 0 skips it
#   DCR_LIVE_KEEP               1: leave everything in place (no destroy)
#   DCR_LIVE_WORK_DIR           where the configurations, their state and the downloads go (default: a new
#                               temporary directory, printed)
set -euo pipefail

owner_project="${DCR_LIVE_OWNER_PROJECT:-}"
consumer_project="${DCR_LIVE_CONSUMER_PROJECT:-}"
if [ -z "$owner_project" ] && [ -z "$consumer_project" ]; then
  echo "gcp-live: skipped: DCR_LIVE_OWNER_PROJECT and DCR_LIVE_CONSUMER_PROJECT are not set (see docs/guides/gcp.md#the-live-acceptance-run)"
  exit 0
fi
if [ -z "$owner_project" ] || [ -z "$consumer_project" ]; then
  missing=DCR_LIVE_OWNER_PROJECT
  [ -n "$owner_project" ] && missing=DCR_LIVE_CONSUMER_PROJECT
  echo "gcp-live: $missing is not set: the run needs both the owner's and the consumer's project" >&2
  exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
region="${DCR_LIVE_REGION:-us-central1}"
recreate="${DCR_LIVE_RECREATE:-1}"
keep="${DCR_LIVE_KEEP:-0}"
issuer="https://confidentialcomputing.googleapis.com"
for f in DCR_LIVE_OWNER_CREDENTIALS DCR_LIVE_CONSUMER_CREDENTIALS; do
  if [ -n "${!f:-}" ] && [ ! -r "${!f}" ]; then
    echo "gcp-live: $f names ${!f}, which cannot be read" >&2
    exit 2
  fi
done

# --- steps and their durations -------------------------------------------------------------------
timings=()
current=""
current_start=0
applied_owner=0
applied_consumer=0

step() {
  local name="$1"
  shift
  current="$name"
  current_start=$SECONDS
  echo
  echo "== gcp-live: $name"
  "$@"
  timings+=("$(printf '%5ds  %s' $((SECONDS - current_start)) "$name")")
  current=""
}

report() {
  local status=$?
  set +e
  if [ "$status" -ne 0 ] && [ -n "$current" ]; then
    echo
    echo "gcp-live: FAILED in step: $current (exit $status)" >&2
    timings+=("$(printf '%5ds  %s (failed)' $((SECONDS - current_start)) "$current")")
  fi
  if [ "$keep" != 1 ] && { [ "$applied_consumer" = 1 ] || [ "$applied_owner" = 1 ]; }; then
    echo "gcp-live: destroying what this run created" >&2
    [ "$applied_consumer" = 1 ] && tf consumer destroy -auto-approve -input=false
    [ "$applied_owner" = 1 ] && tf owner destroy -auto-approve -input=false
  fi
  echo
  echo "gcp-live: step durations"
  local t
  for t in "${timings[@]}"; do
    echo "  $t"
  done
  [ "$status" -eq 0 ] && echo "gcp-live: PASSED (work directory: $work)"
  [ "$status" -ne 0 ] && echo "gcp-live: work directory (state, logs): $work" >&2
  exit "$status"
}

# A party's own credentials, when given, for what runs next in this (sub)shell. The provider, like
# Google's Terraform provider, prefers GOOGLE_OAUTH_ACCESS_TOKEN to any file, so that goes.
party_env() {
  local var="DCR_LIVE_${1^^}_CREDENTIALS"
  if [ -n "${!var:-}" ]; then
    export GOOGLE_APPLICATION_CREDENTIALS="${!var}"
    unset GOOGLE_OAUTH_ACCESS_TOKEN
  fi
}

# Terraform for one party: its configuration directory and its credentials.
tf() {
  local party="$1"
  shift
  (
    party_env "$party"
    TF_IN_AUTOMATION=1 "$terraform" -chdir="$work/$party" "$@"
  )
}

# Reads one value out of JSON on stdin: a path of keys, e.g. `json planned_values outputs x value`.
json() {
  python3 -c '
import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1:]:
    v = v[k]
print(v if isinstance(v, str) else json.dumps(v))' "$@"
}

# Writes a party's terraform.tfvars.json from NAME=VALUE pairs; a value starting with `[` is JSON.
tfvars() {
  local party="$1"
  shift
  python3 -c '
import json, sys
out = {}
for pair in sys.argv[2:]:
    k, v = pair.split("=", 1)
    if v != "":
        out[k] = json.loads(v) if v.startswith("[") else v
json.dump(out, open(sys.argv[1], "w"), indent=2)' "$work/$party/terraform.tfvars.json" "$@"
}

# Which credentials Google will see, and their quota project (x-goog-user-project).
describe_credentials() {
  (
    party_env "$1"
    local file="${GOOGLE_APPLICATION_CREDENTIALS:-$HOME/.config/gcloud/application_default_credentials.json}"
    if [ -n "${GOOGLE_OAUTH_ACCESS_TOKEN:-}" ]; then
      echo "  $1: GOOGLE_OAUTH_ACCESS_TOKEN (quota project: ${GOOGLE_CLOUD_QUOTA_PROJECT:-none})"
    elif [ -r "$file" ]; then
      python3 - "$1" "$file" <<'PY'
import json, os, sys
party, path = sys.argv[1:3]
c = json.load(open(path))
quota = os.environ.get("GOOGLE_CLOUD_QUOTA_PROJECT") or c.get("quota_project_id") or "none"
print(f"  {party}: {path} (type {c.get('type')}, quota project: {quota})")
PY
    else
      echo "  $1: no credential file: the metadata server's, if there is one"
    fi
  )
}

# --- the steps -----------------------------------------------------------------------------------
prepare() {
  "$repo/tests/install-tools.sh"
  # shellcheck source=provider-env.sh
  source "$repo/tests/provider-env.sh"
  dcr_ensure_base_image
  terraform="$DCR_TOOLS_DIR/bin/terraform-1.15.5"
  # The configurations as a user has them (links resolved), with their state, outside the tree.
  cp -RL "$repo/examples/gcp/owner" "$repo/examples/gcp/consumer" "$work/"
  echo "credentials:"
  describe_credentials owner
  describe_credentials consumer
  tfvars owner project="$owner_project" region="$region" \
    readers="${DCR_LIVE_READER:+[\"$DCR_LIVE_READER\"]}"
  tf owner init -input=false
  tf consumer init -input=false
}

owner_publish() {
  applied_owner=1
  tf owner apply -auto-approve -input=false
  local out
  out="$(tf owner output -json)"
  dataset="$(json dataset value <<<"$out")"
  policy_audience="$(json policy_audience value <<<"$out")"
  policy_uri="$(json policy_uri value <<<"$out")"
  echo "hand-off: dataset=$dataset"
  echo "          policy_audience=$policy_audience"
  echo "          policy_uri=$policy_uri"
}

consumer_digest() {
  tfvars consumer project="$consumer_project" region="$region" zone="${DCR_LIVE_ZONE:-}" \
    registry="${DCR_LIVE_REGISTRY:-}" service_account="${DCR_LIVE_SERVICE_ACCOUNT:-}" \
    confidential_type="${DCR_LIVE_CONFIDENTIAL_TYPE:-SEV}" \
    dataset="$dataset" policy_audience="$policy_audience" policy_uri="$policy_uri"
  tf consumer plan -input=false -out=digest.tfplan
  image_digest="$(tf consumer show -json digest.tfplan | json planned_values outputs image_digest value)"
  echo "image digest to pin: $image_digest"
}

owner_pin() {
  tfvars owner project="$owner_project" region="$region" \
    readers="${DCR_LIVE_READER:+[\"$DCR_LIVE_READER\"]}" allowed_image_digests="[\"$image_digest\"]"
  tf owner apply -auto-approve -input=false
}

consumer_run() {
  applied_consumer=1
  tf consumer apply -auto-approve -input=false
  tf consumer output
}

# The result checked with other code than the apply's: the released objects downloaded with Google's
# own Storage client, the manifest hashed here and each output against it, then the token verified
# with provider::dcr::verify_attestation against Google's published keys, for this run's prefix,
# the pinned digest, nonce = the manifest's SHA-256, confidential hardware, no debug.
verify_result() {
  local results recorded_sha nonce
  results="$(tf consumer output -raw results)"
  recorded_sha="$(tf consumer output -raw output_manifest_sha256)"
  mkdir -p "$work/result"
  (
    party_env consumer
    "$DCR_TOOLS_DIR/google-clients-venv/bin/python" - "$consumer_project" "$results" "$work/result" <<'PY'
import hashlib, json, os, sys
from google.cloud import storage
project, uri, out = sys.argv[1:4]
if os.environ.get("GOOGLE_OAUTH_ACCESS_TOKEN"):  # as the provider: the token before any file
    from google.oauth2.credentials import Credentials
    client = storage.Client(project=project, credentials=Credentials(os.environ["GOOGLE_OAUTH_ACCESS_TOKEN"]))
else:
    client = storage.Client(project=project)
bucket_name, prefix = uri.removeprefix("gs://").split("/", 1)
bucket = client.bucket(bucket_name)
manifest = bucket.blob(prefix + "output-manifest.json").download_as_bytes()
open(os.path.join(out, "output-manifest.json"), "wb").write(manifest)
for f in json.loads(manifest)["outputs"]:
    data = bucket.blob(prefix + "outputs/" + f["name"]).download_as_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != f["sha256"] or len(data) != f["size"]:
        sys.exit(f"outputs/{f['name']}: sha256 {got}, {len(data)} bytes; the manifest says {f['sha256']}, {f['size']}")
    open(os.path.join(out, os.path.basename(f["name"])), "wb").write(data)
    print(f"outputs/{f['name']}: {len(data)} bytes, sha256 matches the manifest")
token = bucket.blob(prefix + "attestation-token.jwt").download_as_bytes()
open(os.path.join(out, "attestation-token.jwt"), "wb").write(token.strip())
PY
  )
  nonce="$(sha256sum "$work/result/output-manifest.json" | cut -d' ' -f1)"
  if [ "$nonce" != "$recorded_sha" ]; then
    echo "gcp-live: the downloaded output manifest hashes to $nonce; the apply recorded $recorded_sha" >&2
    return 1
  fi
  if [ "$(cat "$work/result/attestation-token.jwt")" != "$(tf consumer output -raw attestation_token)" ]; then
    echo "gcp-live: the released attestation-token.jwt is not the token the apply verified" >&2
    return 1
  fi
  mkdir -p "$work/verify"
  cat >"$work/verify/main.tf" <<EOF
terraform {
  required_providers {
    dcr = {
      source = "dcr/dcr"
    }
  }
}

variable "token" {
  type      = string
  sensitive = true
}

output "claims_json" {
  value = nonsensitive(provider::dcr::verify_attestation(var.token, {
    issuer                        = "$issuer"
    audience                      = "$results"
    image_digest                  = "$image_digest"
    nonce                         = "$nonce"
    require_confidential_hardware = true
    allow_debug                   = false
  }).claims_json)
}
EOF
  TF_IN_AUTOMATION=1 "$terraform" -chdir="$work/verify" init -input=false >/dev/null
  TF_VAR_token="$(cat "$work/result/attestation-token.jwt")" TF_IN_AUTOMATION=1 \
    "$terraform" -chdir="$work/verify" apply -auto-approve -input=false >/dev/null
  "$terraform" -chdir="$work/verify" output -raw claims_json >"$work/result/claims.json"
  python3 - "$work/result/claims.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
gce = c.get("submods", {}).get("gce", {})
print("verified: issuer, signature, audience, image digest, nonce, confidential hardware, production image")
for k in ["hwmodel", "swname", "dbgstat", "swversion"]:
    print(f"  {k}: {json.dumps(c.get(k))}")
print(f"  eat_nonce: {type(c.get('eat_nonce')).__name__} {json.dumps(c.get('eat_nonce'))}")
print(f"  support_attributes: {json.dumps(c.get('submods', {}).get('confidential_space', {}).get('support_attributes'))}")
print(f"  submods.gce types: " + ", ".join(f"{k}={type(v).__name__}" for k, v in sorted(gce.items())))
PY
  echo "released files: $work/result"
}

# The dcr command against Google (Application Default Credentials, or each party's own): the
# consumer's `dcr verify` of the run where it lies, and the owner's audit trail, whose key accesses
# must show the TEE's decrypt of the dataset's key in the owner's Data Access log (which the owner's
# project must log: docs/guides/gcp.md, "Log every use of a dataset's key").
audit_trail() {
  local results
  results="$(tf consumer output -raw results)"
  (
    party_env consumer
    "$repo/target/debug/dcr" --gcp verify "$results" --require-confidential-hardware
  )
  (
    party_env owner
    "$repo/target/debug/dcr" --gcp --json runs "${results%/*/}/" >"$work/result/runs.json"
  )
  python3 - "$work/result/runs.json" "$results" <<'PY'
import json, sys
trail, run = json.load(open(sys.argv[1])), sys.argv[2]
listed = [r for r in trail["runs"] if r["uri"] == run]
if not listed or not listed[0]["verified"]:
    sys.exit(f"gcp-live: dcr runs does not list {run} verified: {json.dumps(trail['runs'])}")
tee = [a for a in trail["key_accesses"] if a["granted"] and "/workloadIdentityPools/" in a["principal"]]
if not tee:
    sys.exit(f"gcp-live: no decrypt by a pool's principal in the owner's audit log: {json.dumps(trail)}")
print(f"dcr runs: {run} verified; {len(trail['key_accesses'])} key access(es), e.g. {json.dumps(tee[0])}")
PY
}

consumer_destroy() {
  tf consumer destroy -auto-approve -input=false
  applied_consumer=0
}

owner_destroy() {
  tf owner destroy -auto-approve -input=false
  applied_owner=0
}

owner_recreate() {
  tfvars owner project="$owner_project" region="$region"
  applied_owner=1
  tf owner apply -auto-approve -input=false
  owner_destroy
}

work="${DCR_LIVE_WORK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/dcr-gcp-live.XXXXXX")}"
mkdir -p "$work"
terraform=""
trap report EXIT
echo "gcp-live: owner $owner_project, consumer $consumer_project, region $region; work directory $work"

step "build the provider and the base image" prepare
step "owner: publish the dataset under a policy admitting nothing" owner_publish
step "consumer: plan the image digest" consumer_digest
step "owner: pin the digest" owner_pin
step "consumer: run the notebook in Confidential Space" consumer_run
step "verify the released result and its token" verify_result
step "the dcr command: verify the run, list the owner's audit trail" audit_trail
if [ "$keep" = 1 ]; then
  echo "gcp-live: DCR_LIVE_KEEP=1: everything stays; destroy with terraform -chdir=$work/consumer destroy, then $work/owner"
  exit 0
fi
step "consumer: destroy" consumer_destroy
step "owner: destroy" owner_destroy
if [ "$recreate" = 1 ]; then
  step "owner: apply and destroy again (names reused)" owner_recreate
fi
