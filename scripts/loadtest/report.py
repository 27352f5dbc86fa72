#!/usr/bin/env python3
"""Writes the load test's results into docs: a table between the markers of
the `## HTTP load test` section of benchmarks.md, and an SVG chart.

Usage: report.py --results RESULTS.jsonl --docs docs/benchmarks.md
                 --svg docs/loadtest.svg --command CMD --setup TEXT

Only the text between `<!-- loadtest:begin -->` and `<!-- loadtest:end -->`
is replaced. When the section or the file is missing it is created; other
sections of the file are never touched. Prints the table and the verdict on
the targets; exits 0 whether or not they hold (the caller decides).
"""

import argparse
import datetime
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chart  # noqa: E402  (beside this file, not a package)

SECTION = "## HTTP load test"
BEGIN, END = "<!-- loadtest:begin -->", "<!-- loadtest:end -->"
BASELINE, SUBJECT, TARGET_ENDPOINT = "none", "hybrid", "/products/{id}"
# The targets: hybrid get-by-id throughput at least 3x none, p99 at
# most a third of none's, and no error in any scenario.
MIN_SPEEDUP, MAX_P99_RATIO = 3.0, 1 / 3
# Cores used by processes outside the test above which a run is flagged.
NOISE_CORES = 0.1

INTRO = f"""{SECTION}

`scripts/loadtest.sh` starts the catalog once per cache mode against the same
PostgreSQL database (1,000 seeded products) and the same Redis, each mode as
three instances behind an nginx round-robin balancer, and drives
`GET /products/{{id}}` (a random seeded id per request) and `GET /products`
(the full list) with wrk for a fixed duration after a warm-up. It installs
what it lacks (wrk, nginx), picks free ports, and cleans up on exit. Knobs
(environment): `DURATION`, `WARMUP`, `CONNECTIONS`, `THREADS`, `MODES`,
`INSTANCES`, `PIN`, `QUIET_WAIT`; see the script's header. The script writes
the report between the markers below and the chart `docs/loadtest.svg`.

Besides wrk's figures, the script reads /proc before and after each
measurement: *server CPU per request* is the CPU time of the catalog
instances, nginx, PostgreSQL and Redis divided by the requests served, and
`other` is process time of anything else on the machine. The machine has two
cores shared with whatever else runs there; a run with `other` above 0.1
core is flagged, because its req/s and latencies are skewed.

{BEGIN}
{END}
"""


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kib = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))
            mem = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, AttributeError):
        pass
    return f"{os.cpu_count()} CPUs ({model}){mem}"


def fmt_ms(v):
    return f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms"


def errors_cell(row):
    if not row["errors"]:
        return "0"
    detail = ", ".join(f"{k} {v}" for k, v in row["error_detail"].items())
    return f"**{row['errors']}** ({detail})"


def serving_us(row):
    """Core-microseconds the serving side (catalog, nginx, PostgreSQL, Redis)
    spent per request, or None: a cost that other load on the machine skews
    far less than req/s, because it counts only these processes' own time."""
    cores = (row.get("cpu") or {}).get("cores")
    if not cores or not row["rps"]:
        return None
    serving = sum(cores.get(k, 0) for k in ("catalog", "nginx", "postgres", "redis"))
    return serving / row["rps"] * 1e6


def cpu_per_request(row):
    us = serving_us(row)
    return "n/a" if us is None else f"{us:,.0f} µs"


def table(rows):
    lines = [
        "| mode | endpoint | req/s | p50 | p99 | errors | requests | DB reads | server CPU per request |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        reads = f"{r['db_reads']:,}" if r.get("db_reads") is not None else "n/a"
        lines.append(
            f"| {r['mode']} | `GET {r['endpoint']}` | {r['rps']:,.0f} | {fmt_ms(r['p50_ms'])} "
            f"| {fmt_ms(r['p99_ms'])} | {errors_cell(r)} | {r['requests']:,} | {reads} "
            f"| {cpu_per_request(r)} |"
        )
    return lines


def ratios(rows):
    base = {r["endpoint"]: r for r in rows if r["mode"] == BASELINE}
    lines = [
        f"| mode | endpoint | req/s vs {BASELINE} | p99 vs {BASELINE} | server CPU per request vs {BASELINE} |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        b = base.get(r["endpoint"])
        if r["mode"] == BASELINE or not b:
            continue
        cost, base_cost = serving_us(r), serving_us(b)
        cost_ratio = f"{cost / base_cost:.2f}x" if cost and base_cost else "n/a"
        lines.append(
            f"| {r['mode']} | `GET {r['endpoint']}` | {r['rps'] / b['rps']:.2f}x "
            f"| {r['p99_ms'] / b['p99_ms']:.2f}x | {cost_ratio} |"
        )
    return lines if len(lines) > 2 else []


def cpu_text(cpu):
    if not cpu:
        return ""
    cores = ", ".join(f"{k} {v:.2f}" for k, v in cpu["cores"].items())
    busy = ", ".join(f"{k} {v}%" for k, v in cpu["busy_pct"].items())
    return f"; CPU in cores: {cores}; busy: {busy}"


def checks(rows):
    """What each mode reported beside wrk: its cache layers, the spread of
    requests over the instances, and warnings in the instances' logs."""
    lines = ["Per scenario, beside wrk:", ""]
    for r in rows:
        split = "/".join(str(n) for n in r.get("per_instance", []))
        lines.append(
            f"- {r['mode']} `GET {r['endpoint']}`: readiness reports cache `{r.get('cache', '?')}`; "
            f"requests per instance {split or 'n/a'}; "
            f"{r.get('log_warnings', 0)} WARN/ERROR lines in the instances' logs"
            f"{cpu_text(r.get('cpu'))}"
        )
    return lines


def verdict(rows):
    """(lines, all_met) for the targets."""
    find = {(r["mode"], r["endpoint"]): r for r in rows}
    base, subj = find.get((BASELINE, TARGET_ENDPOINT)), find.get((SUBJECT, TARGET_ENDPOINT))
    errors = sum(r["errors"] for r in rows)
    if not base or not subj:
        return [f"Targets not evaluated: the run lacked `{BASELINE}` or `{SUBJECT}`."], False
    speedup, p99 = subj["rps"] / base["rps"], subj["p99_ms"] / base["p99_ms"]
    checks = [
        (f"{SUBJECT} throughput ≥ {MIN_SPEEDUP:g}x {BASELINE}", speedup >= MIN_SPEEDUP, f"{speedup:.2f}x"),
        (f"{SUBJECT} p99 ≤ 1/3 of {BASELINE}", p99 <= MAX_P99_RATIO, f"{p99:.2f}x"),
        ("zero errors in every scenario", errors == 0, f"{errors} errors"),
    ]
    lines = [f"Targets (`GET {TARGET_ENDPOINT}`):", ""]
    for name, ok, got in checks:
        lines.append(f"- {name}: **{'met' if ok else 'missed'}** ({got})")
    noisy = [r for r in rows if (r.get("cpu") or {}).get("cores", {}).get("other", 0) > NOISE_CORES]
    if noisy:
        worst = max(r["cpu"]["cores"]["other"] for r in noisy)
        lines += [
            "",
            f"Caution: other processes used up to {worst:.2f} cores during {len(noisy)} of "
            f"{len(rows)} scenarios (`other` below): these figures are skewed by them.",
        ]
    return lines, all(ok for _, ok, _ in checks)


def section_body(rows, command, setup, svg_name):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Measured {now} on {machine()}.",
        "",
        f"Command: `{command}`",
        "",
        setup,
        "",
        *table(rows),
        "",
    ]
    rat = ratios(rows)
    if rat:
        lines += rat + [""]
    lines += verdict(rows)[0]
    lines += [""] + checks(rows)
    lines += ["", f"![req/s and p99 per cache mode and endpoint]({svg_name})"]
    return "\n".join(lines)


def update_docs(path, body):
    try:
        with open(path, encoding="utf-8") as f:
            doc = f.read()
    except FileNotFoundError:
        doc = "# Benchmarks\n\nFigures measured on the project's machines, and how to reproduce them.\n"
    if SECTION not in doc:
        doc = doc.rstrip("\n") + "\n\n" + INTRO
    if BEGIN not in doc or END not in doc:
        # The section exists but lost its markers: put them at its end.
        start = doc.index(SECTION)
        nxt = re.search(r"^## ", doc[start + len(SECTION):], re.M)
        cut = start + len(SECTION) + nxt.start() if nxt else len(doc)
        doc = doc[:cut].rstrip("\n") + f"\n\n{BEGIN}\n{END}\n" + ("\n" + doc[cut:] if nxt else "")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{head}{BEGIN}\n{body}\n{END}{tail}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", required=True)
    ap.add_argument("--docs", required=True)
    ap.add_argument("--svg", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--setup", required=True)
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()

    with open(args.results, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not rows:
        sys.exit("report.py: no results")

    print("\n".join(table(rows)))
    rat = ratios(rows)
    if rat:
        print("\n" + "\n".join(rat))
    print("\n" + "\n".join(verdict(rows)[0]))
    print("\n" + "\n".join(checks(rows)))
    if args.no_write:
        return
    body = section_body(rows, args.command, args.setup, os.path.basename(args.svg))
    update_docs(args.docs, body)
    caption = args.command
    with open(args.svg, "w", encoding="utf-8") as f:
        f.write(chart.render(rows, "Catalog HTTP load test: req/s and p99 per cache mode", caption))
    print(f"\nwrote {args.docs} and {args.svg}")


if __name__ == "__main__":
    main()
