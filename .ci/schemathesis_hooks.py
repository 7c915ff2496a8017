"""Schemathesis hooks for .ci/checkers: values no client can make are not generated.

The service is right to refuse them, and no schema can describe them, so instead of switching a
check off these few generated values are left out (the README names them, with the reason):

- a `cursor` in a positive case: a cursor is the service's own signature over a position and a
  query, so a generated one is always refused (400), however well-formed. The project's tests walk
  real cursors; negative cases (malformed cursors) are kept and must be refused.
- an `If-Match` in a positive case: a generated ETag names no version of the signal, so the
  answer is 412 by definition (declared in the spec). `*` and malformed values (400) stay in the
  negative cases.
- in a case meant to be refused, a query array whose items are not all strings (a number, an
  object, a list, null where the spec wants text): a query string carries only text, so such an
  item reaches the service as text (`-4.1e16`; an object's keys, a list's items) or not at all
  (null), and what arrives may be perfectly valid. Schemathesis 4.32.5 judges such a case by
  the generated value, not by what was sent, so a service that reads the wire right was reported
  as accepting invalid data (a CI run: GET / with a `category` list whose every item arrived as
  valid text). Such a case is left out whole; every other negative case is sent.
"""

import ast
import threading
import uuid

import schemathesis

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


def _items_the_wire_turns_into_text(query):
    return any(
        isinstance(value, list) and any(not isinstance(item, str) for item in value)
        for value in query.values()
    )


@schemathesis.hook
def filter_case(ctx, case):
    meta = case.meta
    if meta is None:
        return True
    if not meta.generation.mode.is_positive:
        return not _items_the_wire_turns_into_text(case.query or {})
    query = case.query or {}
    headers = {name.lower(): value for name, value in (case.headers or {}).items()}
    if any(name in query for name in UNFORGEABLE_QUERY):
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
