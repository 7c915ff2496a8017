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
    print("Medians over the rounds; a round is one wrk run, then pgbench on the service's own SQL,")
    print("then pgbench on the plain table with its obvious SQL (issue 15's baseline).")
    print(f"{'query':<34} {'API req/s':>10} {'p50 ms':>7} {'p99 ms':>7} | {'own SQL tps':>10} {'ratio':>6} | "
          f"{'plain tps':>9} {'p50 ms':>7} {'p99 ms':>7} {'ratio':>6} {'p99 x':>6}  ratio to plain per round")
    print("-" * 150)
    for r in results["queries"]:
        rounds = r["rounds"]
        api = {k: median([x["api"][k] for x in rounds]) for k in ("rps", "p50", "p99")}
        pg = {k: median([x["pgbench"][k] for x in rounds]) for k in ("tps", "p50", "p99")}
        own = median([x["api"]["rps"] / x["pgbench"]["tps"] for x in rounds])
        bad = sum(x["api"]["bad"] for x in rounds)
        # wrk counts a request that got no answer within 2 s as a timeout.
        timeouts = sum(x["api"].get("timeouts", 0) for x in rounds)
        flag = "" if not bad else f"  ({bad} non-2xx!)"
        flag += "" if not timeouts else f"  ({timeouts} wrk timeouts)"
        line = f"{r['name']:<34} {api['rps']:>10.0f} {api['p50']:>7.2f} {api['p99']:>7.2f} | {pg['tps']:>10.0f} {own:>6.2f} | "
        if all(x.get("plain") for x in rounds):
            plain = {k: median([x["plain"][k] for x in rounds]) for k in ("tps", "p50", "p99")}
            ratios = [x["api"]["rps"] / x["plain"]["tps"] for x in rounds]
            p99x = median([x["api"]["p99"] / x["plain"]["p99"] for x in rounds])
            per_round = " ".join(f"{x:.2f}" for x in ratios)
            line += f"{plain['tps']:>9.0f} {plain['p50']:>7.2f} {plain['p99']:>7.2f} {median(ratios):>6.2f} {p99x:>6.2f}  {per_round}"
        else:
            line += f"{'-':>9} {'':>7} {'':>7} {'':>6} {'':>6}"
        print(line + flag)
    for s in results.get("search", []):
        print(f"search {s['name']:<40} matches {s['matches']:>8}  1 client p50 {s['p50']:.1f} ms  "
              f"32 connections {s['rps']:.0f} req/s, non-2xx {s['bad']}")
    if "healthz_rps" in results:
        print(f"GET /healthz (the framework's ceiling): {results['healthz_rps']:.0f} req/s")
    print()
    print(f"service peak RSS: {results['peak_rss_kb'] / 1024:.1f} MB")


if __name__ == "__main__":
    if sys.argv[1] == "wrk":
        print(json.dumps(wrk(sys.argv[2])))
    elif sys.argv[1] == "pgbench":
        print(json.dumps(pgbench(sys.argv[2], sys.argv[3], sys.argv[4])))
    else:
        main()
