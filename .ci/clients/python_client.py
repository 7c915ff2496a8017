"""Drive the service through the Python client that openapi-python-client generated from
openapi/openapi.json, used exactly as generated (package `signals_client`).

Environment: SIGNALS_URL (base URL of the running service), SIGNALS_KEY (a write or admin key).
Creates two signals in a category of its own, reads one back by id and by slug, lists with
min_score and checks what comes back. Exits non-zero on the first mismatch.
"""

import datetime
import os
import sys
import uuid
from http import HTTPStatus

from signals_client import AuthenticatedClient, Client
from signals_client.api.signals import create_signal, get_signal, list_signals
from signals_client.models import Section, Signal, SignalInput, SignalPage


def check(cond: bool, what: str) -> None:
    if not cond:
        print(f"python client: FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def main() -> None:
    base_url = os.environ["SIGNALS_URL"]
    key = os.environ["SIGNALS_KEY"]
    writer = AuthenticatedClient(base_url=base_url, token=key, raise_on_unexpected_status=True)
    reader = Client(base_url=base_url, raise_on_unexpected_status=True)  # reads are public

    run = uuid.uuid4().hex[:12]
    category = f"Checker Py {run}"
    published = datetime.datetime(2026, 5, 6, 18, 2, tzinfo=datetime.timezone.utc)

    high_in = SignalInput(
        title=f"Python client signal {run}",
        score=8,
        category=category,
        published_at=published,
        summary="Created by the generated Python client.",
        body="The lede paragraph.",
        sections=[
            Section(heading="Technical Context", body="First section."),
            Section(heading="Why It Matters", body="Second section."),
        ],
        tags=["Checker", "Python", "checker"],  # the case-insensitive duplicate is dropped
        source_url="https://example.com/python-client",
    )
    low_in = SignalInput(title=f"Python client low signal {run}", score=3, category=category)

    # create
    resp = create_signal.sync_detailed(client=writer, body=high_in)
    check(resp.status_code == HTTPStatus.CREATED, f"create: status {resp.status_code}: {resp.content!r}")
    high = resp.parsed
    check(isinstance(high, Signal), f"create: parsed as {type(high).__name__}, not Signal")
    assert isinstance(high, Signal)
    check(resp.headers.get("location") == f"/v1/signals/{high.id}", f"create: Location {resp.headers.get('location')!r}")
    check(bool(resp.headers.get("etag")), "create: no ETag")
    check(high.title == high_in.title, f"create: title {high.title!r}")
    check(high.score == 8, f"create: score {high.score}")
    check(high.category == category, f"create: category {high.category!r}")
    check(high.published_at == published, f"create: published_at {high.published_at!r}")
    check([(s.heading, s.body) for s in high.sections] == [(s.heading, s.body) for s in high_in.sections],
          f"create: sections {high.sections!r}")
    check(high.tags == ["Checker", "Python"], f"create: tags {high.tags!r}")
    check(high.source_url == "https://example.com/python-client", f"create: source_url {high.source_url!r}")
    check(bool(high.slug), "create: empty slug")

    resp = create_signal.sync_detailed(client=writer, body=low_in)
    check(resp.status_code == HTTPStatus.CREATED, f"create low: status {resp.status_code}: {resp.content!r}")
    low = resp.parsed
    check(isinstance(low, Signal), f"create low: parsed as {type(low).__name__}, not Signal")
    assert isinstance(low, Signal)
    check(low.summary == "" and low.body == "" and low.sections == [] and low.tags == [],
          f"create low: defaults {low.summary!r} {low.body!r} {low.sections!r} {low.tags!r}")

    # get by id and by slug
    for ident in (str(high.id), high.slug):
        resp = get_signal.sync_detailed(ident, client=reader)
        check(resp.status_code == HTTPStatus.OK, f"get {ident}: status {resp.status_code}: {resp.content!r}")
        got = resp.parsed
        check(isinstance(got, Signal), f"get {ident}: parsed as {type(got).__name__}, not Signal")
        assert isinstance(got, Signal)
        check(got.to_dict() == high.to_dict(), f"get {ident}: {got.to_dict()!r} != {high.to_dict()!r}")
        check(bool(resp.headers.get("etag")), f"get {ident}: no ETag")

    # list with min_score
    resp = list_signals.sync_detailed(client=reader, min_score=5, category=[category], include_total=True)
    check(resp.status_code == HTTPStatus.OK, f"list: status {resp.status_code}: {resp.content!r}")
    page = resp.parsed
    check(isinstance(page, SignalPage), f"list: parsed as {type(page).__name__}, not SignalPage")
    assert isinstance(page, SignalPage)
    check([s.id for s in page.items] == [high.id], f"list min_score=5: ids {[str(s.id) for s in page.items]}")
    check(page.total == 1, f"list min_score=5: total {page.total!r}")
    check(page.next_cursor is None, f"list min_score=5: next_cursor {page.next_cursor!r}")

    resp = list_signals.sync_detailed(client=reader, min_score=0, category=[category], limit=1)
    check(resp.status_code == HTTPStatus.OK, f"list limit=1: status {resp.status_code}: {resp.content!r}")
    page = resp.parsed
    assert isinstance(page, SignalPage)
    check(len(page.items) == 1 and isinstance(page.next_cursor, str), f"list limit=1: {page.to_dict()!r}")
    resp = list_signals.sync_detailed(client=reader, min_score=0, category=[category], limit=1, cursor=page.next_cursor)
    page2 = resp.parsed
    check(isinstance(page2, SignalPage), f"list page 2: status {resp.status_code}: {resp.content!r}")
    assert isinstance(page2, SignalPage)
    ids = {s.id for s in page.items} | {s.id for s in page2.items}
    check(ids == {high.id, low.id}, f"list pages: ids {sorted(map(str, ids))}")

    print(f"python client: ok (created {high.id} and {low.id}, read by id and slug, listed with min_score)")


if __name__ == "__main__":
    main()
