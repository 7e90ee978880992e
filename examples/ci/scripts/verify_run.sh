#!/usr/bin/env bash
# The auditor's step: verifies a released run with `dcr verify` and writes its report.
#   verify_run.sh RUN_URI_OR_DIR [dcr verify options...]
# Writes the JSON report to ${REPORT:-verify-report.json} and a Markdown summary to
# $GITHUB_STEP_SUMMARY when set; exits with dcr's exit code (0 verified, 10-17 the failed check).
set -uo pipefail
run="${1:?usage: verify_run.sh RUN_URI_OR_DIR [dcr verify options...]}"
shift
dcr="${DCR:-dcr}"
report="${REPORT:-verify-report.json}"
"$dcr" --json verify "$run" "$@" > "$report"
code=$?
python3 - "$report" "$run" "$code" <<'PY' >> "${GITHUB_STEP_SUMMARY:-/dev/stdout}"
import json, sys
report, run, code = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
print(f"## dcr verify {run}\n")
for c in report.get("checks", []):
    print(f"- {'✅' if c['passed'] else '❌'} **{c['check']}**: {c['what']}")
if report.get("verified"):
    r = report["run"]
    print(f"\nVerified: workload `{r['workload']}`, image `{r['image_digest']}`, held to "
          + ", ".join(f"{n} v{v}" for n, v in r["policies"]) + ".")
else:
    print(f"\nNot verified (exit {code}): {report.get('error', {}).get('message', '')}")
PY
exit "$code"
