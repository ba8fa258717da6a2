#!/usr/bin/env python3
"""Subscribe to camclassd (protocol v1) with the Python standard library only.

    python3 examples/python/subscribe.py --socket /run/camclassd/camclassd.sock --label cat --min-score 0.3
    python3 examples/python/subscribe.py --status          # one status record, then exit
    python3 examples/python/subscribe.py --last            # the latest classification, then exit

Each line from the daemon is one JSON object; see docs/protocol.md.
"""
import argparse
import json
import socket
import sys


def lines(sock):
    """Yields one decoded JSON object per line received."""
    buf = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line:
                yield json.loads(line)


def send(sock, request):
    sock.sendall(json.dumps(request).encode() + b"\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--socket", default="/run/camclassd/camclassd.sock")
    p.add_argument("--min-score", type=float)
    p.add_argument("--class", dest="classes", type=int, action="append", help="class id (repeatable)")
    p.add_argument("--label", dest="labels", action="append", help="label or coarse group, e.g. cat (repeatable)")
    p.add_argument("--top-k", type=int)
    p.add_argument("--every-n", type=int)
    p.add_argument("--max-rate", type=float, help="records per second at most")
    p.add_argument("--events", help="comma-separated: change,camera (or 'none')")
    p.add_argument("--count", type=int, help="exit after this many classification records")
    p.add_argument("--status", action="store_true", help="print one status record and exit")
    p.add_argument("--last", action="store_true", help="print the latest classification and exit")
    p.add_argument("--json", action="store_true", help="print the raw records")
    args = p.parse_args()

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(args.socket)
    except OSError as e:
        sys.exit(f"cannot connect to camclassd at {args.socket}: {e} (is it running? see --socket)")
    records = lines(sock)
    hello = next(records)
    if hello.get("type") != "hello" or hello.get("protocol") != 1:
        sys.exit(f"unexpected greeting (not protocol v1): {hello}")
    print(f"# camclassd {hello['version']}, model {hello['model']['id']} (sha256 {str(hello['model']['sha256'])[:12]}…), "
          f"source {hello['source']}", file=sys.stderr)

    if args.status or args.last:
        send(sock, {"subscribe": {"classifications": False, "events": []}})  # replies only
        send(sock, {"status": {}} if args.status else {"last": {}})
        # Records broadcast before the quiet subscribe took effect may come first: take the reply
        # only (a status record, or the classification marked "reply":"last").
        for r in records:
            if r["type"] == "error":
                sys.exit(f"camclassd: {r['error']}")
            if (r["type"] == "status") if args.status else (r.get("reply") == "last"):
                print(json.dumps(r))
                return

    f = {}
    if args.min_score is not None: f["min_score"] = args.min_score
    if args.classes: f["classes"] = args.classes
    if args.labels: f["labels"] = args.labels
    if args.top_k: f["top_k"] = args.top_k
    if args.every_n: f["every_n"] = args.every_n
    if args.max_rate: f["max_rate_hz"] = args.max_rate
    if args.events is not None: f["events"] = [] if args.events == "none" else args.events.split(",")
    if f:
        send(sock, {"subscribe": f})
    # Records already on their way when the daemon reads the request are not filtered: with a
    # filter, skip records until the "subscribed" reply.
    filtered = not f

    seen = 0
    for r in records:
        t = r["type"]
        if not filtered:
            if t == "error":
                sys.exit(f"camclassd refused the filter: {r['error']}")
            filtered = t == "subscribed"
            continue
        if args.json:
            print(json.dumps(r), flush=True)
        elif t == "classification":
            top = r["top"][0] if r["top"] else {"label": "-", "score": 0}
            stable = f" (stable: {r['stable']})" if "stable" in r else ""
            print(f"{r['time'][:23]}Z #{r['seq']} {top['label']} {top['score']:.2f}{stable} {r['latency_ms']['total']:.1f} ms", flush=True)
        elif t == "change":
            print(f"-- stable: {r['previous']} -> {r['stable']} ({r['previous']} lasted {r['previous_ms'] / 1000:.1f} s)", flush=True)
        elif t == "dropped":
            print(f"-- missed {r['count']} records (too slow)", flush=True)
        elif t == "error":
            print(f"-- error {r['code']}: {r['error']}", file=sys.stderr, flush=True)
        elif t != "subscribed":
            print(f"-- {json.dumps(r)}", flush=True)
        if t == "classification":
            seen += 1
            if args.count and seen >= args.count:
                return


if __name__ == "__main__":
    try:
        main()
    except (KeyboardInterrupt, BrokenPipeError):
        pass
