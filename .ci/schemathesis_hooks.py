"""Schemathesis hooks for .ci/schemathesis: fresh idempotency keys, and no inferred links
that pass one value as two different path parameters (see `after_load_schema`). Neither
filters a failure.

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


@schemathesis.hook
def after_load_schema(context, schema):
    """Drops the inferred links that fill two path parameters from one response value.

    Besides the links written in openapi/crm.yaml, schemathesis infers links from names. One
    of them goes from POST /lists to DELETE /lists/{id}/items/{item_id} and passes the new
    list's id as both `id` and `item_id`; the server rightly answers 404 ("not on list"), which
    the stateful checks then report as a created resource gone missing. A record is never its
    own list item, so such a link is dropped; every other link is kept.
    """
    schema.analysis.inject_links()
    for path_item in schema.raw_schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            for response in operation.get("responses", {}).values():
                links = response.get("links") if isinstance(response, dict) else None
                for name, link in list((links or {}).items()):
                    if not link.get("x-schemathesis", {}).get("is_inferred"):
                        continue
                    sources = [
                        value
                        for parameter, value in link.get("parameters", {}).items()
                        if parameter.startswith("path.")
                    ]
                    if len(sources) != len(set(sources)):
                        print(f"schemathesis hooks: dropped the inferred link {name} ({link.get('operationRef') or link.get('operationId')})")
                        del links[name]
