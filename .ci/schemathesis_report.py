"""Prints, per operation of the spec, how many cases schemathesis sent and how many failed.

Reads the NDJSON event stream schemathesis writes (--report ndjson) and the spec (for the
operation ids). Exits 1 when any check failed, no case was sent to some operation, or the
engine reported an error.

A schema-valid request the server refuses (`positive_data_acceptance`) is a failure unless
its answer is one of the rules a schema cannot state (listed in README.md next to the
schemathesis section and in each operation's description), recognised by the answer's
status and the `data.parameter` or `data.field` it names. Those are counted per rule and
printed; every other refusal of schema-valid data fails the run.
"""

import base64
import collections
import json
import sys

import yaml

# (rule, status, `data.parameter` or `data.field` it names: a name, or a prefix ending in "[")
TOLERATED = [
    ("fields together with exclude_fields", 400, "parameter", "exclude_fields"),
    ("a next/page cursor the server did not issue", 400, "parameter", "next"),
    ("an Idempotency-Key reused with another body", 422, "field", "Idempotency-Key"),
    ("a stale If-Match (or body etag)", 412, "data", "etag"),
    ("last_name missing on create, or cleared with null", 422, "field", "last_name"),
    ("name missing on create (list, custom field definition)", 422, "field", "name"),
    ("id or etag in a create body, or another record's id in an update", 422, "field", "id"),
    ("id or etag in a create body, or another record's id in an update", 422, "field", "etag"),
    ("list item ids naming no record of the list's kind", 422, "field", "item_ids"),
    ("emails and email_addresses (or the phone pair) listing different values", 422, "field", "emails"),
    ("emails and email_addresses (or the phone pair) listing different values", 422, "field", "phone_numbers"),
    ("select type without options, or an option id twice", 422, "field", "options"),
    ("custom field values against their definitions", 422, "field", "custom_fields["),
    ("a blank unified name (a key of mappings)", 422, "field", "mappings"),
]


def tolerated_rule(interaction):
    """The rule of TOLERATED a refusal answers under, or None."""
    response = (interaction or {}).get("response") or {}
    try:
        body = json.loads(base64.b64decode(response["content"]["$base64"]))
    except (KeyError, TypeError, ValueError):
        return None
    if not isinstance(body, dict):
        return None
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    for rule, status, kind, name in TOLERATED:
        if response.get("status_code") != status or body.get("statusCode") != status:
            continue
        if kind == "data":
            if name in data:
                return rule
            continue
        value = data.get(kind)
        if isinstance(value, str) and (value == name or (name.endswith("[") and value.startswith(name))):
            return rule
    return None


def main(events_path: str, spec_path: str) -> int:
    spec = yaml.safe_load(open(spec_path))
    operations = {}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if isinstance(op, dict) and "operationId" in op:
                operations[(method.upper(), path)] = op["operationId"]

    cases = collections.Counter()
    by_phase = collections.defaultdict(collections.Counter)
    by_mode = collections.defaultdict(collections.Counter)
    failures = collections.Counter()
    failed_checks = collections.defaultdict(set)
    dropped = collections.Counter()
    tolerated = collections.Counter()
    errors = []
    for line in open(events_path):
        event = json.loads(line)
        for kind in ("NonFatalError", "FatalError"):
            if kind in event:
                error = event[kind]
                info = error.get("info") or {}
                errors.append(f"{kind} in {error.get('label', '?')}: {info.get('title') or info.get('message') or error}")
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished["recorder"]
        for case_id, count in recorder.get("filtered_failures", {}).items():
            case = recorder.get("cases", {}).get(case_id)
            if case:
                value = case["value"]
                dropped[operations.get((value["method"].upper(), value["path"]), "?")] += count
        for case_id, case in recorder.get("cases", {}).items():
            if case_id not in recorder.get("interactions", {}):
                continue
            value = case["value"]
            key = (value["method"].upper(), value["path"])
            # Probes with methods the spec does not declare (expected: 405) are counted together.
            op = operations.get(key, "(methods not in the spec)")
            cases[op] += 1
            meta = value.get("meta") or {}
            by_phase[op][(meta.get("phase") or {}).get("name", "?")] += 1
            by_mode[op][(meta.get("generation") or {}).get("mode", "?")] += 1
            failed = {c["name"] for c in recorder.get("checks", {}).get(case_id, []) if c["status"] == "failure"}
            if "positive_data_acceptance" in failed:
                rule = tolerated_rule(recorder["interactions"][case_id])
                if rule:
                    tolerated[rule] += 1
                    failed.discard("positive_data_acceptance")
            if failed:
                failures[op] += 1
                failed_checks[op] |= failed

    width = max(len(op) for op in operations.values())
    print(f"{'operation':<{width}}  cases  positive  negative  stateful  failures")
    for op in sorted(set(operations.values()) | set(cases)):
        print(
            f"{op:<{width}}  {cases[op]:>5}  {by_mode[op]['positive']:>8}  "
            f"{by_mode[op]['negative']:>8}  {by_phase[op]['stateful']:>8}  {failures[op]:>8}"
            + (f"  ({', '.join(sorted(failed_checks[op]))})" if failed_checks[op] else "")
        )
    total_failures = sum(failures.values())
    tested = len(set(cases) & set(operations.values()))
    print(f"schemathesis: {sum(cases.values())} cases, {tested} of {len(operations)} operations")
    print(f"schemathesis: {sum(cases.values()) - total_failures} passed, {total_failures} failed")
    if tolerated:
        print("schema-valid requests refused by a rule the schema cannot state (tolerated):")
        for rule, count in sorted(tolerated.items(), key=lambda item: -item[1]):
            print(f"  {count:>5}  {rule}")
    if dropped:
        # No hook filters failures; any filtered failure is a failure all the same.
        print(f"schemathesis: {sum(dropped.values())} failures filtered by a hook: {dict(sorted(dropped.items()))}")
        total_failures += sum(dropped.values())
    untested = sorted(set(operations.values()) - set(cases))
    if untested:
        print(f"operations never called: {', '.join(untested)}")
    for error in errors:
        print(f"schemathesis: {error}")
    return 1 if total_failures or untested or errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
