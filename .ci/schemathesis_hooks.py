"""Schemathesis hooks for .ci/schemathesis.

Schemathesis draws `Idempotency-Key` from the spec's example, so many different calls carry
the same key, and a stateful scenario replayed later gets the first call's stored answer
back (a record since deleted, say). That is idempotency working as documented, not a
defect, so every well-formed key is made unique per drawn case; malformed keys (negative tests)
are sent as drawn.
"""

import re
import uuid

import schemathesis

WELL_FORMED = re.compile(r"[\x21-\x7e]{1,255}")


@schemathesis.hook
def map_headers(context, headers):
    if headers:
        for name in list(headers):
            value = headers[name]
            if name.lower() == "idempotency-key" and isinstance(value, str) and WELL_FORMED.fullmatch(value):
                headers[name] = f"st-{uuid.uuid4()}"
    return headers


def _sends_json(case):
    media_type = (getattr(case, "media_type", None) or "").split(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Drops one known deviation, and only that one: a body that is not JSON is answered
    415 (in the contract's error shape), which the released 1.0.0 spec does not list.
    Listing it is a new response code, which the release gate counts as breaking, so it
    waits for the next major version. The report counts every failure dropped here."""
    undocumented_415 = getattr(failure, "code", None) == "ST103" and getattr(failure, "status_code", None) == 415
    return not (undocumented_415 and not _sends_json(case))
