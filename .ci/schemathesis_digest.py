"""One entry per schemathesis failure, from its terminal output: operation, check, response, why,
and the request that failed (the last request of a stateful sequence).

Usage: python3 .ci/schemathesis_digest.py OUTPUT.txt
"""

import json
import re
import sys

HEADING = re.compile(r"^_{3,} (.+?) _{3,}$")
CASE = re.compile(r"^\d+\. Test Case ID: (\S+)")
STATUS = re.compile(r"^\[(\d{3})\] ")
SKIP = ("Valid data should have been accepted", "Invalid data should have been rejected", "Expected:",
        "Validated against")
STOP = ("Schema at", "Value:")  # a schema dump follows: the explanation is over


def request_of(curl: str) -> str:
    method = re.search(r"-X (\S+)", curl)
    url = re.search(r"'?(https?://[^\s']+)'?\s*$", curl)
    path = re.sub(r"^https?://[^/]+", "", url.group(1)) if url else "?"
    text = f"{method.group(1) if method else '?'} {path if len(path) <= 150 else path[:150] + '...'}"
    headers = [h for h in re.findall(r"-H '([^']*)'", curl)
               if not h.startswith(("Authorization:", "Content-Type:")) and h != "Idempotency-Key: [Filtered]"]
    if headers:
        text += " headers: " + "; ".join(headers)[:100]
    body = re.search(r"-d '(.*?)' https?://", curl)
    if body:
        b = body.group(1)
        text += " body: " + (b if len(b) <= 120 else b[:120] + "...")
    return text


def cases(lines):
    section, case = None, None
    for line in lines:
        if line.startswith("=") and "SUMMARY" in line:
            break
        m = HEADING.match(line)
        if m:
            if case:
                yield case
            section, case = m.group(1), None
            continue
        m = CASE.match(line)
        if m and section:
            if case:
                yield case
            case = {"op": section, "id": m.group(1), "lines": []}
            continue
        if case is not None:
            case["lines"].append(line)
    if case:
        yield case


def describe(case) -> list[str]:
    lines = case["lines"]
    checks, why, status, detail, curls = [], [], "", "", []
    in_check = False
    for line in lines:
        s = line.strip()
        if line.startswith("- ST"):
            checks.append(s[2:])
            in_check = True
        elif STATUS.match(line):
            status = line.strip().rstrip(":")
            in_check = False
        elif s.startswith("curl "):
            curls.append(s)
        elif s.startswith("`{") and s.endswith("}`") and not detail:
            try:
                problem = json.loads(s[1:-1])
                detail = problem.get("detail", "")
                errors = [f"{e.get('field')}: {e.get('message')}" for e in problem.get("errors", [])[:3]]
                if errors and not any(e.split(": ", 1)[1] in detail for e in errors):
                    detail += " (" + "; ".join(errors) + ")"
            except ValueError:
                pass
        elif in_check and s.startswith(STOP):
            in_check = False
        elif in_check and s and not s.startswith(SKIP) and len(why) < 2:
            why.append(s if len(s) <= 200 else s[:200] + "...")
    out = [f"{case['op']}: {' + '.join(checks) or '?'} (test case {case['id']})",
           f"    response {status or '-'}" + (f": {detail}" if detail else "")]
    if why:
        out.append("    why: " + " | ".join(why))
    if curls:
        out.append("    request: " + request_of(curls[-1]) + (f" (step {len(curls)} of a sequence)" if len(curls) > 1 else ""))
    return out


def main() -> None:
    text = open(sys.argv[1], encoding="utf-8", errors="replace").read()
    found = list(cases(text.splitlines()))
    for n, case in enumerate(found, 1):
        entry = describe(case)
        print(f"{n:2}. {entry[0]}")
        for line in entry[1:]:
            print(line)
    if not found:
        print("no failures")


if __name__ == "__main__":
    main()
