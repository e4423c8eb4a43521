"""Schemathesis hooks for .ci/schemathesis: fresh idempotency keys. The hook filters no
failure, and a run without it (`CRM_ST_HOOKS=none`) must pass too.

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
