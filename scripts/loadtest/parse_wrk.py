#!/usr/bin/env python3
"""Turns one `wrk --latency` report into one JSON object on stdout.

Usage: parse_wrk.py WRK_OUTPUT MODE ENDPOINT [EXTRA_JSON]

Fields: mode, endpoint, rps, p50_ms, p90_ms, p99_ms, requests, seconds,
errors (socket errors of every kind plus non-2xx/3xx responses) and
error_detail. EXTRA_JSON (an object) is merged in: the caller adds what it
measured beside wrk, such as database reads. Exits non-zero when the report
lacks a figure, so that a wrk failure cannot turn into a row of zeros.
"""

import json
import re
import sys

# wrk prints latencies with these units (src/units.c: us, ms, s, m, h).
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def latency_ms(text):
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    if not match:
        raise ValueError(f"unreadable latency {text!r}")
    return float(match.group(1)) * UNIT_MS[match.group(2)]


def parse(report):
    out = {}
    percentiles = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", report, re.M))
    for p in ("50", "90", "99"):
        if p not in percentiles:
            raise ValueError(f"no {p}% latency: was wrk run with --latency?")
        out[f"p{p}_ms"] = latency_ms(percentiles[p])

    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", report, re.M)
    total = re.search(r"^\s+(\d+) requests in ([0-9.]+)(us|ms|s|m|h)", report, re.M)
    if not rps or not total:
        raise ValueError("no Requests/sec or request count in the report")
    out["rps"] = float(rps.group(1))
    out["requests"] = int(total.group(1))
    out["seconds"] = latency_ms(total.group(2) + total.group(3)) / 1000.0

    detail = {}
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", report
    )
    if sockets:
        for name, value in zip(("connect", "read", "write", "timeout"), sockets.groups()):
            if int(value):
                detail[name] = int(value)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", report)
    if non2xx:
        detail["non-2xx"] = int(non2xx.group(1))
    out["errors"] = sum(detail.values())
    out["error_detail"] = detail
    return out


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        report = f.read()
    try:
        row = parse(report)
    except ValueError as error:
        sys.exit(f"parse_wrk.py: {sys.argv[1]}: {error}")
    row = {"mode": sys.argv[2], "endpoint": sys.argv[3], **row}
    if len(sys.argv) == 5:
        row.update(json.loads(sys.argv[4]))
    print(json.dumps(row))


if __name__ == "__main__":
    main()
