#!/usr/bin/env python3
"""Summarises what a Terraform plan changes in a dcr clean room, as Markdown for a pull request.

Usage: plan_summary.py PLAN_JSON   (PLAN_JSON from `terraform show -json PLAN_FILE`)

For the consumer's repository: every workload image whose digest changes (a new notebook or new
parameters give a new image, which the owners must pin before it can run). For the owner's
repository: every policy whose pinned digests or attribute condition change, with the digests
added and removed and the condition before and after. Standard library only. Exits 0 and prints
"No clean-room change." when nothing of the above changes.
"""

import json
import sys


def resources(plan):
    """(address, type, before, after, actions) of every resource and data source change."""
    for rc in plan.get("resource_changes", []):
        change = rc.get("change", {})
        yield rc["address"], rc["type"], change.get("before") or {}, change.get("after") or {}, change.get("actions", [])


def unknown(plan_change_after_unknown, key):
    return bool((plan_change_after_unknown or {}).get(key))


def digest_lines(plan):
    lines = []
    for rc in plan.get("resource_changes", []):
        if rc["type"] not in ("dcr_workload", "dcr_image_digest"):
            continue
        change = rc.get("change", {})
        before, after = change.get("before") or {}, change.get("after") or {}
        key = "image_digest" if rc["type"] == "dcr_workload" else "digest"
        old, new = before.get(key), after.get(key)
        if unknown(change.get("after_unknown"), key):
            new = "(known after apply)"
        if old == new or change.get("actions") == ["delete"]:
            continue
        lines.append(f"| `{rc['address']}` | `{old or '(none)'}` | `{new or '(none)'}` |")
    return lines


def policy_sections(plan):
    sections = []
    for address, kind, before, after, actions in resources(plan):
        if kind != "dcr_policy" or actions == ["no-op"] or actions == ["read"]:
            continue
        old_digests = set(before.get("allowed_image_digests") or [])
        new_digests = set(after.get("allowed_image_digests") or [])
        old_cond, new_cond = before.get("attribute_condition"), after.get("attribute_condition")
        if old_digests == new_digests and old_cond == new_cond and actions != ["delete"]:
            continue
        out = [f"### `{address}` ({'/'.join(actions)})", ""]
        for d in sorted(new_digests - old_digests):
            out.append(f"- pins `{d}`")
        for d in sorted(old_digests - new_digests):
            out.append(f"- unpins `{d}`")
        if old_cond != new_cond:
            new_text = new_cond if new_cond is not None else "(known after apply)"
            out += ["", "```diff", f"- {old_cond or '(none)'}", f"+ {new_text}", "```"]
        sections.append("\n".join(out))
    return sections


def summary(plan):
    parts = []
    digests = digest_lines(plan)
    if digests:
        parts += ["## Workload images", "", "| image | before | after |", "|---|---|---|", *digests, ""]
    policies = policy_sections(plan)
    if policies:
        parts += ["## Policies", "", *policies, ""]
    return "\n".join(parts) if parts else "No clean-room change.\n"


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        plan = json.load(f)
    sys.stdout.write(summary(plan))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
