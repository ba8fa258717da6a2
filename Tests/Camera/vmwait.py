#!/usr/bin/env python3
"""Waits (inside the vivid VM) for records in a camclassd rolling log (JSON Lines).

Usage: vmwait.py LOG --after-line L [--source NAME] [--event lost|streaming] [--classified N]
                 [--since WALL] [--timeout S]

Looks only at lines after line L. With --event, first waits for a camera record in that state.
With --classified, then waits for N classification records *captured* after that event (or after
WALL, seconds since the epoch): records of frames captured before a fault can still be published
after it, and do not show that classification resumed. With --source, only that source's records
count (camera and classification). Exit 0 when seen, 1 on timeout.
"""
import json
import sys
import time
from datetime import datetime


def arg(name, default=None, cast=str):
    return cast(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


log = sys.argv[1]
after = arg("--after-line", 0, int)
event = arg("--event")
need = arg("--classified", 0, int)
source = arg("--source")
since = arg("--since", None, float)
deadline = time.time() + arg("--timeout", 60, float)


def wall(rec):
    return datetime.fromisoformat(rec["time"].replace("Z", "+00:00")).timestamp()


while True:
    try:
        with open(log, errors="replace") as f:
            lines = f.read().splitlines()[after:]
    except OSError:
        lines = []
    recs = []
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line still being written
        if source is None or rec.get("source") == source:
            recs.append(rec)
    t0 = since
    ok = True
    if event:
        ev = next((r for r in recs if r.get("type") == "camera" and r.get("state") == event), None)
        ok = ev is not None
        if ev is not None:
            t0 = wall(ev)
    if ok and need:
        n = sum(1 for r in recs if r.get("type") == "classification" and (t0 is None or wall(r) > t0))
        ok = n >= need
    if ok:
        sys.exit(0)
    if time.time() > deadline:
        sys.exit(1)
    time.sleep(0.3)
