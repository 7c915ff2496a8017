"""Ingest benchmark helpers (used by bench/ingest.sh).

  python3 bench/ingest.py generate N FILE.jsonl    realistic signals, one JSON object a line
  python3 bench/ingest.py copy FILE.jsonl FILE.tsv  the same rows as COPY text for the signals table
  python3 bench/ingest.py post URL KEY FILE.jsonl BATCH CLIENTS
                                                   POST /v1/signals/batch, prints rows/s
  python3 bench/ingest.py report FILE.json         the table of bench/ingest.sh's rounds
"""
import json
import random
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

WORDS = ("model training inference compute cluster chips export funding round valuation startup "
         "investors research paper benchmark reasoning agents tools open weights release safety policy "
         "regulation market revenue cloud datacenter energy memory attention transformer experts routing "
         "robotics satellite network silicon foundry supply chain lawsuit privacy security exploit patch "
         "defense contract hospital drug protein finance bank payments fraud acquisition hiring talent "
         "platform developers pricing enterprise customers coding search browser media election deepfake "
         "evaluation scaling distillation quantization retrieval vector database kernels compiler runtime").split()
CATEGORIES = ["Industry", "Research", "Policy", "Security", "Hardware", "Open Source", "Funding",
              "Robotics", "Health", "Finance", "Energy", "Space"]
TAGS = [f"{w.title()}{i}" for i, w in enumerate(WORDS * 3)][:200]


def text(rng, chars):
    out = []
    while sum(len(w) + 1 for w in out) < chars:
        out.append(rng.choice(WORDS))
    return " ".join(out).capitalize() + "."


def generate(n, path):
    rng = random.Random(42)
    now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    with open(path, "w") as f:
        for i in range(n):
            score = max(0, min(10, round(rng.gauss(5, 1.9))))
            tags = list(dict.fromkeys(TAGS[int(rng.random() ** 2.2 * 200)] for _ in range(rng.randint(3, 6))))
            signal = {
                "slug": f"ingest-{i}",
                "title": text(rng, 60).rstrip("."),
                "summary": text(rng, 200),
                "body": text(rng, 400),
                "score": score,
                "category": CATEGORIES[int(rng.random() ** 1.5 * 12)],
                "published_at": (now - timedelta(seconds=rng.randint(0, 730 * 86400))).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "sections": [{"heading": h, "body": text(rng, 400)}
                             for h in ("Technical Context", "Why It Matters", "What to Watch Next")],
                "tags": tags,
                "source_url": f"https://example.com/story/{i}",
            }
            f.write(json.dumps(signal) + "\n")


def copy_escape(value):
    return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r"))


def pg_array(items):
    return "{" + ",".join('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in items) + "}"


def to_copy(src, dst):
    """The columns the service writes, as COPY text (the trigger computes the search document)."""
    with open(src) as f, open(dst, "w") as out:
        for line in f:
            s = json.loads(line)
            row = [str(uuid.uuid4()), s["slug"], s["title"], s["summary"], s["body"], str(s["score"]),
                   s["category"], s["category"].lower(), s["published_at"], json.dumps(s["sections"]),
                   pg_array(s["tags"]), pg_array([t.lower() for t in s["tags"]]), s["source_url"],
                   s["published_at"], s["published_at"]]
            out.write("\t".join(copy_escape(v) for v in row) + "\n")


def post(url, key, path, batch, clients):
    with open(path) as f:
        items = [json.loads(line) for line in f]
    batches = [items[i:i + batch] for i in range(0, len(items), batch)]
    bodies = [json.dumps({"items": b}).encode() for b in batches]

    def send(body):
        req = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {key}"})
        with urllib.request.urlopen(req, timeout=300) as res:
            assert res.status == 200, res.status
            return len(json.loads(res.read())["created"])

    started = time.time()
    with ThreadPoolExecutor(clients) as pool:
        created = sum(pool.map(send, bodies))
    seconds = time.time() - started
    assert created == len(items), (created, len(items))
    print(f"{created / seconds:.0f}")


def summary(results):
    """Lines of the medians of the rounds: rows/s of each way and its ratio to COPY."""
    from report import median
    rounds = results["rounds"]
    lines = [f"{'way in (' + format(results['rows'], ',') + ' signals, median of ' + str(len(rounds)) + ')':<44} {'rows/s':>8} {'x COPY':>7}"]
    for key, name in (("copy", "COPY (baseline, same trigger)"), ("import", "signals import"),
                      ("batch", "POST /v1/signals/batch (500 x 4 clients)")):
        ratio = median([r[key] / r["copy"] for r in rounds])
        lines.append(f"{name:<44} {median([r[key] for r in rounds]):>8.0f} {ratio:>7.2f}")
    return lines


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "generate":
        generate(int(sys.argv[2]), sys.argv[3])
    elif cmd == "copy":
        to_copy(sys.argv[2], sys.argv[3])
    elif cmd == "post":
        post(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    elif cmd == "report":
        with open(sys.argv[2]) as f:
            print("\n".join(summary(json.load(f))))
