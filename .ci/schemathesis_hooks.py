"""Schemathesis hooks for .ci/checkers: values no client can make are not generated.

The service is right to refuse them, and no schema can describe them, so instead of switching a
check off these few generated values are left out (the README names them, with the reason):

- a `cursor` in a positive case: a cursor is the service's own signature over a position and a
  query, so a generated one is always refused (400), however well-formed. The project's tests walk
  real cursors; negative cases (malformed cursors) are kept and must be refused.
- an `If-Match` in a positive case: a generated ETag names no version of the signal, so the
  answer is 412 by definition (declared in the spec). `*` and malformed values (400) stay in the
  negative cases. Likewise `If-None-Match: *` on a write (PUT, PATCH, DELETE): the signal exists,
  so it is 412 by definition (declared in the spec); other tags name no version and stay.
- `sort=relevance` without a `q` in a positive case: API.md allows `relevance` only with `q`, so
  it is 400 (declared in the parameter's description); a parameter's schema cannot name another
  parameter. The negative cases keep it.
- a case meant to be refused whose query holds a value the wire cannot carry as generated: a
  query string is text, so `true`, `5`, an object or null where the spec wants text, a single
  value where it wants a list, a list item that is not text, all reach the service as text (an
  object as its keys) or not at all, and what arrives may be perfectly valid. Schemathesis 4.32.5
  judges a list-valued or `anyOf` parameter by the generated value, not by what was sent, so a
  service reading the wire right was reported as accepting invalid data (CI runs: GET / with
  `any_tag=true`, which is the valid list `["true"]`; GET / with `category` items that arrived
  as valid text). Such a case is left out whole; every negative case whose values are text (or
  numbers where the spec takes numbers) is sent. Left out too: a case whose query was meant to
  be refused but is valid as sent (a mutation that came out valid; CI: HEAD / with
  `any_tag=null&tag=`), unless its body or path is meant to be refused.
- a webhook `url` in a positive case that is an IP address, or a name that resolves only to
  addresses that are not global: the service runs without `SIGNALS_WEBHOOK_ALLOW_PRIVATE`, so it
  refuses URLs that lead to its own network (422, as API.md says), and which addresses those are
  is a rule of the service's (`live::outbound::forbidden`), not of any schema. Addresses are
  left out whole rather than judged here by a second copy of that rule; the project's tests
  cover both refused and accepted addresses.
"""

import ast
import concurrent.futures
import ipaddress
import socket
import threading
import uuid
from urllib.parse import urlsplit

import schemathesis
from schemathesis.core.parameters import ParameterLocation

# CPython 3.11 before 3.11.8 (this machine has 3.11.7) keeps the AST constructor's recursion
# depth in state that every thread shares (python/cpython#106905), so two `ast.parse` calls at
# once can fail with "SystemError: AST constructor recursion depth mismatch". Hypothesis parses
# source to describe lambdas, and with `--workers 2` the two workers did that at once: a CI run
# reported it as an error of GET /assets/{name}. One parse at a time avoids it.
_ast_parse = ast.parse
_ast_lock = threading.Lock()


def _parse_one_at_a_time(*args, **kwargs):
    with _ast_lock:
        return _ast_parse(*args, **kwargs)


ast.parse = _parse_one_at_a_time

UNFORGEABLE_QUERY = ("cursor",)
UNFORGEABLE_HEADERS = ("if-match",)


def _types(schema):
    """The JSON types a parameter's schema admits, through `anyOf`/`oneOf`."""
    if not isinstance(schema, dict):
        return set()
    declared = schema.get("type")
    found = set(declared if isinstance(declared, list) else [declared] if declared else [])
    for key in ("anyOf", "oneOf"):
        for branch in schema.get(key, []):
            found |= _types(branch)
    return found


def _sent_as_generated(value, schema):
    """Whether the service reads `value` off a query string as the value it was generated as."""
    types = _types(schema)
    if "array" in types:
        # one value is a list of one on the wire
        items = schema.get("items", {})
        return isinstance(value, list) and all(_sent_as_generated(item, items) for item in value)
    if isinstance(value, str):
        return True
    if isinstance(value, bool):
        return "boolean" in types
    if isinstance(value, (int, float)):
        return bool(types & {"integer", "number"})
    return False


def _query_sent_as_generated(case):
    if not case.query:
        return True
    declared = case.operation.get_parameter_set(ParameterLocation.QUERY).schema
    properties = declared.get("properties", {}) if isinstance(declared, dict) else {}
    return all(
        _sent_as_generated(value, properties.get(name, {})) for name, value in case.query.items()
    )


def _query_refusal_undone(case):
    """Whether the query is the part of a case meant to be refused, yet valid as it is sent
    (the case has no body or path part meant to be refused): a mutation whose result turned
    valid. Schemathesis's own re-check of such cases can still report them (CI: HEAD / with
    `any_tag=null&tag=`, the valid lists `["null"]` and `[""]`, reported as violating `anyOf`)."""
    meta = case.meta
    if not meta.is_negative_at(ParameterLocation.QUERY) or any(
        meta.is_negative_at(other) for other in (ParameterLocation.BODY, ParameterLocation.PATH)
    ):
        return False
    try:
        validator = case.operation.get_parameter_set(ParameterLocation.QUERY).get_strict_validator()
        return validator.is_valid(dict(case.query or {}))
    except Exception:  # a schema its validator cannot compile: judge nothing
        return False


_RESOLVER = concurrent.futures.ThreadPoolExecutor(max_workers=4)


def _leads_to_an_address(url):
    """Whether a webhook URL names an address, or a name that resolves only to addresses that
    are not global (`localhost`)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    if not host:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    # As the service does: a name that does not resolve within 2 s is taken (and a case whose
    # lookup is slower is sent, as the service will take it too).
    lookup = _RESOLVER.submit(socket.getaddrinfo, host, 443, type=socket.SOCK_STREAM)
    try:
        found = {info[4][0] for info in lookup.result(timeout=2)}
    except (OSError, UnicodeError, concurrent.futures.TimeoutError):
        return False
    return bool(found) and not any(
        ipaddress.ip_address(a.split("%")[0]).is_global for a in found
    )


@schemathesis.hook
def filter_case(ctx, case):
    meta = case.meta
    if meta is None:
        return True
    if not meta.generation.mode.is_positive:
        return _query_sent_as_generated(case) and not _query_refusal_undone(case)
    query = case.query or {}
    headers = {name.lower(): value for name, value in (case.headers or {}).items()}
    if any(name in query for name in UNFORGEABLE_QUERY):
        return False
    if query.get("sort") == "relevance" and not query.get("q"):
        return False
    body = case.body if isinstance(case.body, dict) else {}
    if (
        case.operation.path.startswith("/v1/webhooks")
        and isinstance(body.get("url"), str)
        and _leads_to_an_address(body["url"])
    ):
        return False
    if (
        case.method.upper() in ("PUT", "PATCH", "DELETE")
        and str(headers.get("if-none-match", "")).strip() == "*"
    ):
        return False
    return not any(
        name in headers and headers[name] != "*" for name in UNFORGEABLE_HEADERS
    )


@schemathesis.hook
def before_call(ctx, case, kwargs):
    """An `Idempotency-Key` names one request: the same key with another body is refused (422),
    as API.md says. Generated and example keys repeat across cases (and across the two
    operations that take one), so in every case not meant to be rejected the key is made unique
    to its case, within the documented pattern and length.
    """
    meta = case.meta
    if (meta is not None and not meta.generation.mode.is_positive) or not case.headers:
        return
    for name in list(case.headers):
        if name.lower() == "idempotency-key":
            case.headers[name] = f"{str(case.headers[name])[:222]}-{uuid.uuid4().hex}"
