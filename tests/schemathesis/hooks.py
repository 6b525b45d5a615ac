"""Checks of our own for the schemathesis run in scripts/test.

The command API answers a request its OpenAPI document allows, but whose fields the
server's own rules refuse, with one of the problem types below. That is the document
and the server disagreeing about a rule, which is what this run exists to catch. A
refusal the document cannot state (a business rule, a state conflict, a reused
Idempotency-Key) has a type of its own and is allowed.
"""

import schemathesis

SCHEMA_RULE_REFUSALS = {
    "/problems/validation",
    "/problems/malformed-body",
    "/problems/bad-header",
    "/problems/invalid-path",
    "/problems/invalid-query",
    "/problems/unsupported-media-type",
}


@schemathesis.check
def document_states_every_field_rule(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    if response.status_code not in (400, 415, 422):
        return None
    try:
        problem = response.json()
    except ValueError:
        return None
    kind = problem.get("type") if isinstance(problem, dict) else None
    if kind in SCHEMA_RULE_REFUSALS:
        raise AssertionError(
            f"The document allows this request, but the server refused it as {kind}: "
            f"{problem.get('errors') or problem.get('detail')}"
        )
    return None


# A chain of calls (register an account, approve it, place an order) reaches the
# business rules only if each step is taken. In the stateful phase, then:
# - no If-Match: a generated one names a version at random (409);
# - no Idempotency-Key: generated keys repeat across steps (422, reused for another
#   request);
# - an account is registered in one currency: its credit limit and approval threshold
#   in two (a rule between fields, 422) would end every chain at its first step.
# The other phases send all of these as generated.
CHAIN_BREAKING_HEADERS = ("If-Match", "Idempotency-Key")


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    if case.meta is None or case.meta.phase.name != "stateful":
        return
    for header in CHAIN_BREAKING_HEADERS:
        if case.headers:
            case.headers.pop(header, None)
    body = case.body
    if case.method.upper() == "POST" and case.path == "/v1/accounts" and isinstance(body, dict):
        limit, threshold = body.get("credit_limit"), body.get("approval_threshold")
        if isinstance(limit, dict) and isinstance(threshold, dict) and "currency" in limit:
            threshold["currency"] = limit["currency"]
