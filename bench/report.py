"""Turns wrk and pgbench outputs into the benchmark table (used by bench/run.sh)."""
import json
import re
import sys
from pathlib import Path


def wrk(path):
    text = Path(path).read_text()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:.*", text)
    timeouts = re.search(r"timeout (\d+)", errors.group(0)) if errors else None
    return {"rps": rps, "p50": pct(50), "p99": pct(99),
            "bad": int(non2xx.group(1)) if non2xx else 0, "errors": errors.group(0) if errors else "",
            "timeouts": int(timeouts.group(1)) if timeouts else 0}


def pgbench(out_path, log_glob_dir, prefix):
    text = Path(out_path).read_text()
    tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", text).group(1))
    latencies = []
    for log in Path(log_glob_dir).glob(prefix + "*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3:
                latencies.append(int(fields[2]) / 1000.0)  # microseconds -> ms
    latencies.sort()
    def pct(p):
        return latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))] if latencies else float("nan")
    return {"tps": tps, "p50": pct(50), "p99": pct(99)}


def median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def main():
    results = json.loads(Path(sys.argv[1]).read_text())
    print()
    print("Medians over the rounds. A round: wrk on the service without its cache, pgbench on the")
    print("service's own SQL, pgbench on the plain table with its obvious SQL (issue 15's baseline),")
    print("wrk on the service with its cache.")
    print(f"{'query':<30} {'API req/s':>9} {'p50':>6} {'p99':>6} | {'own SQL':>8} {'ratio':>5} | "
          f"{'plain':>7} {'p50':>6} {'p99':>6} {'ratio':>5} {'p99 x':>5} | {'cached':>7} {'p99':>6} {'x plain':>7}")
    print("-" * 152)
    for r in results["queries"]:
        rounds = r["rounds"]
        api = {k: median([x["api"][k] for x in rounds]) for k in ("rps", "p50", "p99")}
        pg = {k: median([x["pgbench"][k] for x in rounds]) for k in ("tps", "p50", "p99")}
        own = median([x["api"]["rps"] / x["pgbench"]["tps"] for x in rounds])
        bad = sum(x["api"]["bad"] for x in rounds) + sum(x.get("cached", {}).get("bad", 0) for x in rounds)
        # wrk counts a request that got no answer within 2 s as a timeout.
        timeouts = sum(x["api"].get("timeouts", 0) for x in rounds)
        flag = "" if not bad else f"  ({bad} non-2xx!)"
        flag += "" if not timeouts else f"  ({timeouts} wrk timeouts)"
        line = f"{r['name'][:30]:<30} {api['rps']:>9.0f} {api['p50']:>6.2f} {api['p99']:>6.2f} | {pg['tps']:>8.0f} {own:>5.2f} | "
        plain_tps = None
        if all(x.get("plain") for x in rounds):
            plain = {k: median([x["plain"][k] for x in rounds]) for k in ("tps", "p50", "p99")}
            plain_tps = plain["tps"]
            ratio = median([x["api"]["rps"] / x["plain"]["tps"] for x in rounds])
            p99x = median([x["api"]["p99"] / x["plain"]["p99"] for x in rounds])
            line += f"{plain['tps']:>7.0f} {plain['p50']:>6.2f} {plain['p99']:>6.2f} {ratio:>5.2f} {p99x:>5.2f} | "
        else:
            line += f"{'-':>7} {'':>6} {'':>6} {'':>5} {'':>5} | "
        if all(x.get("cached") for x in rounds):
            cached = {k: median([x["cached"][k] for x in rounds]) for k in ("rps", "p99")}
            times = "" if plain_tps is None else f"{median([x['cached']['rps'] / x['plain']['tps'] for x in rounds]):>7.2f}"
            line += f"{cached['rps']:>7.0f} {cached['p99']:>6.2f} {times:>7}"
        print(line + flag)
    print()
    total = results.get("signals", 1_000_000)
    for s in results.get("search", []):
        print(f"search {s['name'][:24]!r:<26} matches {s['matches']:>7} ({s['matches'] * 100 / total:.1f} % of {total:,}): "
              f"one client p50 {s['p50']:.1f} ms; 32 connections {s['rps']:.0f} req/s, non-2xx {s['bad']}")
    if "healthz_rps" in results:
        print(f"GET /healthz (the framework's ceiling): {results['healthz_rps']:.0f} req/s")
        best = max((median([x["cached"]["rps"] for x in r["rounds"]]) for r in results["queries"]
                    if all(x.get("cached") for x in r["rounds"])), default=None)
        if best:
            print(f"fastest cached query: {best / results['healthz_rps']:.2f} x /healthz")
    print(f"service peak RSS: {results['peak_rss_kb'] / 1024:.1f} MB without the cache"
          + (f", {results['peak_rss_cached_kb'] / 1024:.1f} MB with it" if "peak_rss_cached_kb" in results else ""))
    if results.get("cache_lookups"):
        print("cache lookups of the cached instance: "
              + ", ".join(f"{k} {v:,}" for k, v in results["cache_lookups"].items()))
    if results.get("import"):
        print(f"import: {results['import']}")
    if results.get("ingest"):
        sys.path.insert(0, str(Path(__file__).parent))
        from ingest import summary
        print()
        print("\n".join(summary(results["ingest"])))


if __name__ == "__main__":
    if sys.argv[1] == "wrk":
        print(json.dumps(wrk(sys.argv[2])))
    elif sys.argv[1] == "pgbench":
        print(json.dumps(pgbench(sys.argv[2], sys.argv[3], sys.argv[4])))
    else:
        main()
