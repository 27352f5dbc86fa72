#!/usr/bin/env python3
"""CPU time of the load test's parts, read from /proc: where the cores went.

Usage:
  cpu.py snap CATALOG_PIDS NGINX_PID > before.json   (pids comma-separated)
  cpu.py diff before.json after.json [WRK_CPU_SECONDS]  -> usage JSON

A snapshot holds the cumulative user + system ticks of each group (the
catalog instances, nginx's master and workers, every `postgres` process,
every `redis-server`) and each CPU's busy and total ticks. The diff turns two
snapshots into cores used per group over the interval (1.0 = one core busy)
and each CPU's busy share, plus the machine's interrupt time (`irq`: much of
loopback networking runs in softirq, charged to no process) and the time the
hypervisor stole (`steal`). Given wrk's CPU seconds (which /proc no longer
shows once wrk has exited), it adds wrk and `other`: process time not
accounted for, that is, whatever else ran on the machine meanwhile.
PostgreSQL and Redis are counted machine-wide: other clients of the same
servers would show up there too.
"""

import json
import os
import sys
import time


def proc_stat(pid):
    """(ppid, comm, ticks) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            raw = f.read()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    # After "pid (comm) ": state ppid ... utime(14th overall) stime(15th).
    return int(fields[1]), comm, int(fields[11]) + int(fields[12])


def snap(catalog, nginx):
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st:
                procs[int(entry)] = st
    groups = {"catalog": 0, "nginx": 0, "postgres": 0, "redis": 0}
    for pid, (ppid, comm, ticks) in procs.items():
        if pid in catalog:
            groups["catalog"] += ticks
        elif pid == nginx or (nginx and ppid == nginx):
            groups["nginx"] += ticks
        elif comm == "postgres":
            groups["postgres"] += ticks
        elif comm == "redis-server":
            groups["redis"] += ticks
    cpus = {}
    # Read before the processes' ticks would be better, but both are
    # cumulative counters: the skew is a few ticks over a whole run.
    with open("/proc/stat", encoding="utf-8") as f:
        for line in f:
            name, *vals = line.split()
            if name.startswith("cpu") and name != "cpu":
                # user nice system idle iowait irq softirq steal
                v = [int(x) for x in vals[:8]]
                cpus[name] = {
                    "busy": v[0] + v[1] + v[2] + v[5] + v[6] + v[7],
                    "total": sum(v),
                    # Time charged to processes; interrupts (loopback
                    # networking runs much of its work in softirq) and time
                    # the hypervisor stole are counted apart.
                    "tasks": v[0] + v[1] + v[2],
                    "irq": v[5] + v[6],
                    "steal": v[7],
                }
    return {"time": time.monotonic(), "groups": groups, "cpus": cpus}


def diff(before, after, wrk_seconds=None):
    hz = os.sysconf("SC_CLK_TCK")
    seconds = max(after["time"] - before["time"], 1e-9)
    # A process that exits in between takes its ticks along (a database
    # connection closed): clamp at zero rather than report a negative core.
    groups = {
        k: round(max(after["groups"][k] - before["groups"][k], 0) / hz / seconds, 2)
        for k in after["groups"]
    }
    cpus = {}
    for name, a in after["cpus"].items():
        b = before["cpus"].get(name, {"busy": 0, "total": 0})
        total = a["total"] - b["total"]
        cpus[name] = round(100 * (a["busy"] - b["busy"]) / total) if total else 0
    def machine(field):
        ticks = sum(a[field] - before["cpus"].get(n, {}).get(field, 0) for n, a in after["cpus"].items())
        return ticks / hz / seconds

    if wrk_seconds is not None:
        groups["wrk"] = round(wrk_seconds / seconds, 2)
        groups["other"] = round(max(machine("tasks") - sum(groups.values()), 0), 2)
    groups["irq"] = round(machine("irq"), 2)
    groups["steal"] = round(machine("steal"), 2)
    return {"cores": groups, "busy_pct": cpus}


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "snap":
        catalog = {int(p) for p in sys.argv[2].split(",") if p}
        nginx = int(sys.argv[3]) if sys.argv[3] else 0
        print(json.dumps(snap(catalog, nginx)))
    elif len(sys.argv) in (4, 5) and sys.argv[1] == "diff":
        with open(sys.argv[2], encoding="utf-8") as f:
            before = json.load(f)
        with open(sys.argv[3], encoding="utf-8") as f:
            after = json.load(f)
        wrk = float(sys.argv[4]) if len(sys.argv) == 5 else None
        print(json.dumps(diff(before, after, wrk)))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
