"""Prints, per operation of the spec, how many cases schemathesis sent and how many failed.

Reads the NDJSON event stream schemathesis writes (--report ndjson) and the spec (for the
operation ids). Exits 1 when any check failed or no case was sent to some operation.
"""

import collections
import json
import sys

import yaml


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
    for line in open(events_path):
        event = json.loads(line)
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
    if dropped:
        # No hook filters failures; any filtered failure is a failure all the same.
        print(f"schemathesis: {sum(dropped.values())} failures filtered by a hook: {dict(sorted(dropped.items()))}")
        total_failures += sum(dropped.values())
    untested = sorted(set(operations.values()) - set(cases))
    if untested:
        print(f"operations never called: {', '.join(untested)}")
    return 1 if total_failures or untested else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
