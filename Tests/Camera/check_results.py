#!/usr/bin/env python3
"""Judges what Tests/Camera/vm-scenario.sh recorded in the vivid VM.

Usage: check_results.py OUT_DIR --vm-exit RC

Prints one line per check (PASS/FAIL with the figures behind it), then the figures of the run,
then "camera test: N passed, M failed". Exit status 1 when anything failed or the VM did not run
the scenario to its end.
"""
import json
import re
import sys
from datetime import datetime
from pathlib import Path

out = Path(sys.argv[1])
vm_exit = int(sys.argv[sys.argv.index("--vm-exit") + 1]) if "--vm-exit" in sys.argv else 0
passed, failed = 0, 0
figures = []


def check(name, ok, detail=""):
    global passed, failed
    passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)
    print(f"{'PASS' if ok else 'FAIL'}: {name}{(' — ' + detail) if detail else ''}")


def read(name):
    p = out / name
    return p.read_text(errors="replace") if p.exists() else ""


def records(name):
    recs = []
    for line in read(name).splitlines():
        if line.startswith("{"):
            try:
                recs.append(json.loads(line))
            except json.JSONDecodeError:
                recs.append({"type": "unparseable"})
    return recs


def wall(rec):
    return datetime.fromisoformat(rec["time"].replace("Z", "+00:00")).timestamp()


def log_wall(line):
    """The wall time of a daemon log line (swift-log's ISO 8601 prefix)."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)(Z|[+-]\d{4})", line)
    if not m:
        return None
    tz = "+00:00" if m.group(2) == "Z" else m.group(2)[:3] + ":" + m.group(2)[3:]
    return datetime.fromisoformat(m.group(1) + tz).timestamp()


def log_metric(log, message, key):
    """key=... on the last daemon log line containing message."""
    for line in reversed(log.splitlines()):
        if message in line:
            m = re.search(re.escape(key) + r'=("[^"]*"|\S+)', line)
            if m:
                return m.group(1).strip('"')
    return None


def drops_between(log, kind, t0, t1):
    """Frames of a drop kind in the daemon's debug lines between two wall times."""
    n = 0
    for line in log.splitlines():
        if "camera frame dropped" in line and f'camera.drop="{kind}"' in line:
            t = log_wall(line)
            m = re.search(r"camera\.frames=(\d+)", line)
            if t is not None and m and t0 <= t < t1:
                n += int(m.group(1))
    return n


M = []
for line in read("marks.tsv").splitlines():
    p = line.split(" ")
    if len(p) >= 6:
        M.append({"uptime": float(p[0]), "wall": float(p[1]), "name": " ".join(p[2:-3]), "line": int(p[-3]),
                  "alive": p[-2] == "1", "subscriber": p[-1] == "1"})
mk = {m["name"]: m for m in M}
check("the VM ran the scenario to its end", vm_exit == 0 and "end" in mk,
      f"run.sh exit {vm_exit}, last mark {M[-1]['name'] if M else 'none'}")
for m in M:
    if m["name"].startswith("timeout:"):
        check(f"no wait timed out: {m['name'][8:]}", False)

# ------------------------------------------------------------------------ camclass cameras
cams = read("cameras.txt")
check("camclass cameras lists vivid: driver, bus, NV12 and YUYV, 640x480 and its rates",
      read("cameras.rc").strip() == "0" and "/dev/video0: vivid" in cams and "'NV12'" in cams and "'YUYV'" in cams
      and re.search(r"640x480: .*25 fps", cams) is not None and "bus: platform:vivid" in cams,
      cams.splitlines()[0] if cams else "no output")


# ------------------------------------------------------------------------ capture path alone
for name, fmt, n in (("stream-nv12-100.txt", "NV12", 100), ("stream-nv12-300.txt", "NV12", 300), ("stream-yuyv.txt", "YUYV", 100)):
    t = read(name)
    m = re.search(r"captured (\d+) frames in ([\d.]+) s: ([\d.]+) fps", t)
    ok = t.strip().splitlines()[-1:] == ["0"] and f": {fmt} 640x480 at 25 fps" in t \
        and m is not None and int(m.group(1)) == n and "timestamps increasing" in t
    check(f"camclass cameras --stream: {n} {fmt} frames through the capture path, timestamps increasing", ok,
          t.strip().replace("\n", " | ")[:260])
    if m:
        figures.append(f"capture path alone ({fmt}, no model): {m.group(3)} fps over {m.group(1)} frames")
a100, a300 = json.loads(read("alloc-100.json") or "{}"), json.loads(read("alloc-300.json") or "{}")
own100, own300 = a100.get("camclass-captur.own"), a300.get("camclass-captur.own")
lib100, lib300 = a100.get("camclass-captur.lib", 0), a300.get("camclass-captur.lib", 0)
# A warning line (the first dropped frame of a kind, then every 100th) costs ~25 allocations; the
# frames themselves must cost none.
extra_warnings = read("stream-nv12-300.txt").count(" warning ") - read("stream-nv12-100.txt").count(" warning ")
check("the capture thread does not allocate per frame (allocation counter, 100 vs 300 frames)",
      own100 is not None and own300 is not None and own300 - own100 <= 5 + 40 * max(0, extra_warnings),
      f"own code: {own100} → {own300} ({extra_warnings} more warning lines), libraries: {lib100} → {lib300} allocations")
if own100 is not None and own300 is not None:
    figures.append(f"capture thread allocations, 100 → 300 frames: camclassd's own {own100} → {own300}, "
                   f"libraries (libv4l2, libyuv) {lib100} → {lib300}")


def run_checks(tag, fmt):
    """Streaming, classification and timestamps of daemon `tag` (its rolling log and subscriber)."""
    log = records(f"{tag}.log")
    sub = records(f"{tag}.sub.jsonl")
    cls = [r for r in log if r.get("type") == "classification"]
    first = next((r for r in log if r.get("type") == "camera"), {})
    check(f"{tag}: the first camera record says streaming {fmt} 640x480 at 25 fps",
          first.get("state") == "streaming" and first.get("format") == fmt and first.get("width") == 640
          and first.get("height") == 480 and abs((first.get("fps") or 0) - 25) < 0.01,
          json.dumps(first)[:220])
    seqs = [r["seq"] for r in cls]
    check(f"{tag}: classification records with increasing seq",
          len(cls) >= 3 and all(b > a for a, b in zip(seqs, seqs[1:])),
          f"{len(cls)} records, seq {seqs[:3]} … {seqs[-2:]}")
    caps = [r["capture_ns"] for r in cls]
    offsets = [wall(r) - r["capture_ns"] / 1e9 for r in cls]
    start, stop = mk.get(f"{tag}:started", {"uptime": 0})["uptime"], mk.get(f"{tag}:stopped rc=0", mk.get(f"{tag}:stopping", {"uptime": 1e9}))["uptime"]
    ok = (len(caps) >= 3 and all(b > a for a, b in zip(caps, caps[1:])) and all(start <= c / 1e9 <= stop for c in caps)
          and max(offsets) - min(offsets) < 0.5 and all(0 < r["latency_ms"]["total"] < 60000 for r in cls))
    check(f"{tag}: plausible timestamps (driver's CLOCK_MONOTONIC, increasing, inside the run; wall time consistent)",
          ok, f"capture {caps[0] / 1e9:.3f} … {caps[-1] / 1e9:.3f} s, run {start:.1f} … {stop:.1f} s uptime, "
              f"wall−monotonic spread {max(offsets) - min(offsets):.3f} s" if caps else "no records")
    sub_cls = [r for r in sub if r.get("type") == "classification"]
    check(f"{tag}: the subscriber received the records", len(sub_cls) >= 2 and {r["seq"] for r in sub_cls} <= set(seqs),
          f"{len(sub_cls)} classification and {sum(1 for r in sub if r.get('type') == 'camera')} camera records")
    labels = {}
    for r in cls:
        if r.get("top"):
            labels[r["top"][0]["label"]] = labels.get(r["top"][0]["label"], 0) + 1
    top = sorted(labels.items(), key=lambda kv: -kv[1])[:3]
    figures.append(f"{tag} ({fmt}): {len(cls)} classification records, top-1 {top} (vivid's test pattern)")
    return log, sub, cls


# ------------------------------------------------------------------------ A: NV12 and faults
A, Asub, Acls = run_checks("A", "NV12")
alog = read("A.daemon.log")
steps = ["baseline", "drops_on", "errflag", "stall_on", "fatal", "disconnect", "unplug", "replug", "renumber",
         "relinked", "A:done", "A:stopping"]
check("A: daemon and subscriber alive at every step; the daemon exited 0 on SIGTERM",
      all(mk[s]["alive"] and mk[s]["subscriber"] for s in steps if s in mk) and all(s in mk for s in steps)
      and read("A.rc").strip() == "0", f"exit {read('A.rc').strip() or '?'}")
check("A: no frame source failure, no crash",
      "frame source failed" not in alog and "Fatal error" not in alog and "Crash" not in alog and "💣" not in alog)

stats = {k: log_metric(alog, "camera closed", "camera." + k) for k in
         ("frames", "sequence_gaps", "error_buffers", "empty_buffers", "corrupt_frames", "stalls", "losses", "recoveries")}
dropped_source = log_metric(alog, "camclassd stopped", "pipeline.dropped_source")

if all(k in mk for k in ("A:subscribed", "drops_on", "drops_applied", "drops_clearing")):
    # vivid under TCG already skips frames when it falls behind: compare rates, window vs before.
    t_on, t_off = mk["drops_applied"]["wall"], mk["drops_clearing"]["wall"]
    window_rate = drops_between(alog, "sequence gap", t_on, t_off) / (t_off - t_on)
    b0, b1 = mk["A:subscribed"]["wall"], mk["drops_on"]["wall"]
    base_rate = drops_between(alog, "sequence gap", b0, b1) / max(0.1, b1 - b0)
    ok = (window_rate >= base_rate + 5 and window_rate * (t_off - t_on) >= 10
          and int(dropped_source or 0) >= int(stats["sequence_gaps"] or 0) > 0)
    check("A: dropped buffers (percentage_of_dropped_buffers=80) are counted as sequence gaps and reach `dropped`", ok,
          f"{window_rate:.1f} skipped frames/s while injected vs {base_rate:.1f}/s before; camera total "
          f"{stats['sequence_gaps']}, pipeline dropped_source {dropped_source}")
    figures.append(f"A: vivid skipped frames (driver sequence gaps): {base_rate:.1f}/s before (TCG lateness), "
                   f"{window_rate:.1f}/s with 80% injected")
if "errflag" in mk and "stall_on" in mk:
    n = drops_between(alog, "error flag", mk["errflag"]["wall"], mk["stall_on"]["wall"] + 0.5)
    check("A: buffers with V4L2_BUF_FLAG_ERROR (3 injected) are dropped and counted",
          n >= 2 and int(stats["error_buffers"] or 0) == n and int(dropped_source or 0) >= n,
          f"{n} in the window, camera total {stats['error_buffers']}")
stall_lines = [l for l in alog.splitlines() if "camera stalled: no frame" in l]
check("A: the stall (no frames for > stall_timeout_ms) is reported once per stall, counted, and recovered from without a restart",
      # Each stall is reported once; the slow TCG guest may add a second, genuine one elsewhere.
      int(stats["stalls"] or 0) >= 1 and len(stall_lines) == int(stats["stalls"] or 0) and "camera frames resumed after a stall" in alog
      and not any(r.get("type") == "camera" for r in A[mk.get("stall_on", {}).get("line", 0):mk.get("fatal", {}).get("line", 0)]),
      f"stalls {stats['stalls']}: {stall_lines[0][stall_lines[0].find('camera.silent'):] if stall_lines else ''}")

timings = []


def fault(name, until, reason, device=None):
    seg = A[mk[name]["line"]:mk[until]["line"]] if name in mk and until in mk else []
    lost = next((r for r in seg if r.get("type") == "camera" and r.get("state") == "lost"), None)
    up = next((r for r in seg if r.get("type") == "camera" and r.get("state") == "streaming" and lost and wall(r) >= wall(lost)), None)
    resumed = [r for r in seg if r.get("type") == "classification" and up and wall(r) > wall(up)]
    ok = lost is not None and up is not None and resumed and re.search(reason, lost.get("reason", "")) is not None
    if device:
        ok = ok and up.get("device") == device
    detail = "no lost → streaming pair"
    if lost and up:
        t_lost = wall(lost) - mk[name + "_applied"]["wall"] if name + "_applied" in mk else float("nan")
        t_cmd = mk[name + "_applied"]["wall"] - mk[name]["wall"] if name + "_applied" in mk else float("nan")
        t_first = (wall(resumed[0]) - wall(up)) if resumed else float("nan")
        detail = (f"lost {t_lost:+.2f} s from the fault command's return ({lost.get('reason')}); streaming on {up.get('device')} after "
                  f"{up.get('downtime_ms')} ms down; {len(resumed)} frames classified since")
        timings.append(f"{name}: the fault command took {t_cmd:.2f} s, lost reported {t_lost:+.2f} s from its return, "
                       f"streaming again after {up.get('downtime_ms')} ms, first classified frame captured {t_first:.2f} s after that")
    check(f"A: {name}: lost → streaming, classification resumes", ok, detail)
    sub_states = [r.get("state") for r in Asub if r.get("type") == "camera"]
    return sub_states


fault("fatal", "disconnect", r"DQBUF.*(Input/output|I/O)")
fault("disconnect", "unplug", r"No such device")
fault("unplug", "renumber", r"No such device|Invalid argument")
if "unplug" in mk and "replug" in mk:
    check("A: no streaming while the driver was unloaded (retries only)",
          not any(r.get("type") == "camera" and r.get("state") == "streaming" for r in A[mk["unplug"]["line"]:mk["replug"]["line"]])
          and "camera unavailable; retrying" in alog)
fault("renumber", "A:done", r".", device="/dev/video1")
states = [r.get("state") for r in Asub if r.get("type") == "camera"]
check("A: the subscriber stayed connected and got every lost/streaming record",
      states.count("lost") >= 4 and states.count("streaming") >= 4
      and sum(1 for r in Asub if r.get("type") == "classification" and wall(r) > mk.get("relinked", {"wall": 1e18})["wall"]) >= 1,
      f"camera records seen by the subscriber: {states}")
check("A: the camera counters add up (losses = recoveries = 4; dropped_source ≥ everything the camera dropped)",
      stats["losses"] == "4" and stats["recoveries"] == "4" and int(dropped_source or 0) >= sum(int(stats[k] or 0) for k in
      ("sequence_gaps", "error_buffers", "empty_buffers", "corrupt_frames")),
      ", ".join(f"{k} {v}" for k, v in stats.items()) + f", pipeline dropped_source {dropped_source}")

# ------------------------------------------------------------------------ B: YUYV via auto
B, Bsub, Bcls = run_checks("B", "YUYV")
blog = read("B.daemon.log")
check("B: source auto picked the vivid camera", re.search(r'source auto.*source\.path=/dev/video\d', blog) is not None,
      next((l[l.find("source auto"):] for l in blog.splitlines() if "source auto" in l), "no 'source auto' line"))
check("B: exited 0 on SIGTERM", read("B.rc").strip() == "0", f"exit {read('B.rc').strip() or '?'}")
busy = read("busy.log")
check("a second daemon on the streaming camera refuses to start: 'used by another process' (exit 69)",
      read("busy.rc").strip() == "69" and "used by another process" in busy and "engine ready" not in busy,
      f"exit {read('busy.rc').strip()}: {next((l for l in busy.splitlines() if 'used by another' in l), busy[-200:])[-200:]}")
perm = read("perm.log")
check("a user without access to the camera is told to join the 'video' group (exit 77)",
      read("perm.rc").strip() == "77" and "'video' group" in perm,
      f"exit {read('perm.rc').strip()}: {next((l for l in perm.splitlines() if 'video' in l), perm[-200:])[-200:]}")

# ------------------------------------------------------------------------ A: unplug with leases out
def log_lines(log, message, t0=0.0, t1=float("inf")):
    return [l for l in log.splitlines() if message in l and t0 <= (log_wall(l) or -1) < t1]


def meta(line, key):
    m = re.search(re.escape(key) + r'=("[^"]*"|\S+)', line or "")
    return m.group(1).strip('"') if m else None


if "unplug" in mk and "replug" in mk:
    # The queue (capacity 2) holds frames, each a leased driver buffer, while the worker spends
    # seconds on one inference: the unbind finds them out. The device stays open until they are
    # back (logged), and the camera must recover after the replug.
    lost_line = next(iter(log_lines(alog, "camera lost", mk["unplug"]["wall"], mk["replug"]["wall"])), None)
    leased = meta(lost_line, "camera.leased")
    back = next(iter(log_lines(alog, "camera buffers returned after loss", log_wall(lost_line) if lost_line else 1e18)), None)
    waited = meta(back, "camera.waited_ms")
    seg = A[mk["replug"]["line"]:mk.get("renumber", {"line": len(A)})["line"]]
    up = next((r for r in seg if r.get("type") == "camera" and r.get("state") == "streaming"), None)
    after = [r for r in seg if r.get("type") == "classification" and up and wall(r) > wall(up)]
    ok = (leased is not None and int(leased) >= 1 and waited is not None and back is not None
          and log_wall(back) < mk["replug"]["wall"] and up is not None and len(after) >= 1
          and all(mk[s]["alive"] for s in ("unplug_applied", "replug", "renumber") if s in mk))
    check("A: unplug (unbind) with buffers leased to queued frames: lost says camera.leased ≥ 1, their return is "
          "logged (before the replug), the camera recovers after the replug",
          ok, f"camera.leased={leased}, buffers returned after {waited} ms, streaming again "
              f"{'yes' if up else 'no'}, {len(after)} classified since")
    figures.append(f"A unplug: {leased} buffers leased at the loss; all back {waited} ms after it")
    if "unplug_returned" in mk and "driver_unloaded" in mk:
        # rmmod goes through only when the daemon has closed the old file: how long after the
        # buffers were back that was (up to ~0.7 s is the retry loop's own granularity).
        figures.append(f"A unplug: rmmod went through {mk['driver_unloaded']['wall'] - mk['unplug_returned']['wall']:.1f} s "
                       f"after the buffers were back (the daemon held the old device file until then)")
losses = [(meta(l, "camera.reason"), meta(l, "camera.leased")) for l in log_lines(alog, "camera lost")]
figures.append("A: buffers leased at each loss: " + ", ".join(f"{lz} ({rz})" for rz, lz in losses))
figures.append("A: buffers back after each loss (ms): " + ", ".join(
    meta(l, "camera.waited_ms") or "?" for l in log_lines(alog, "camera buffers returned after loss")))

# ------------------------------------------------------------------------ E: two cameras
E, Esub, elog = records("E.log"), records("E.sub.jsonl"), read("E.daemon.log")


def of(recs, source, kind="classification", state=None):
    return [r for r in recs if r.get("type") == kind and r.get("source") == source and (state is None or r.get("state") == state)]


front, rear = of(E, "front"), of(E, "rear")
for name, fmt in (("front", "NV12"), ("rear", "YUYV")):
    first = next(iter(of(E, name, "camera")), {})
    check(f"E: {name}'s first camera record says streaming {fmt} 640x480 at 5 fps",
          first.get("state") == "streaming" and first.get("format") == fmt and first.get("width") == 640
          and first.get("height") == 480 and abs((first.get("fps") or 0) - 5) < 0.01, json.dumps(first)[:220])
check("E: both cameras classified on the one engine (records with source front and rear, in the log and at the subscriber)",
      len(front) >= 3 and len(rear) >= 2 and of(Esub, "front") and of(Esub, "rear")
      and {r["seq"] for r in of(Esub, "front")} <= {r["seq"] for r in front},
      f"log: front {len(front)}, rear {len(rear)}; subscriber: front {len(of(Esub, 'front'))}, rear {len(of(Esub, 'rear'))}")


def status(name):
    try:
        return json.loads(read(name).strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return {}


st, st_out = status("E.status.json"), status("E.status-outage.json")
states = {s.get("name"): s.get("state") for s in st.get("sources", [])}
check("E: camclass status --json lists both sources, streaming", st.get("type") == "status"
      and [s.get("name") for s in st.get("sources", [])] == ["front", "rear"] and set(states.values()) == {"streaming"},
      f"sources {states}" if st else read("E.status.json")[:200])
states_out = {s.get("name"): s.get("state") for s in st_out.get("sources", [])}
check("E: during rear's outage status says rear lost, front streaming",
      states_out.get("rear") == "lost" and states_out.get("front") == "streaming", f"sources {states_out}")

seg = E[mk["E:unplug"]["line"]:] if "E:unplug" in mk else []
lost = next(iter(of(seg, "rear", "camera", "lost")), None)
up = next((r for r in of(seg, "rear", "camera", "streaming") if lost and wall(r) > wall(lost)), None)
rear_after = [r for r in of(seg, "rear") if up and wall(r) > wall(up)]
check("E: rear unplugged: reports lost, streaming again only after its link is back, then classified",
      lost is not None and up is not None and "E:replug" in mk and wall(up) >= mk["E:replug"]["wall"] and len(rear_after) >= 1,
      f"lost ({lost.get('reason') if lost else '-'}), streaming after {up.get('downtime_ms') if up else '-'} ms, "
      f"{len(rear_after)} rear records since")
check("E: front was never lost; the daemon and subscriber stayed up; exit 0 on SIGTERM",
      not of(E, "front", "camera", "lost") and read("E.rc").strip() == "0"
      and all(mk[s]["alive"] and mk[s]["subscriber"] for s in ("E:baseline", "E:unplug", "E:rear_lost", "E:replug", "E:done"))
      if all(s in mk for s in ("E:baseline", "E:unplug", "E:rear_lost", "E:replug", "E:done")) else False,
      f"exit {read('E.rc').strip() or '?'}")

def published(r):
    """When a classification was published: `time` is the frame's capture (wall clock)."""
    return wall(r) + r["latency_ms"]["total"] / 1000


if lost is not None and up is not None and len(front) >= 4:
    t_lost, t_up = wall(lost), wall(up)
    pre = [r for r in front if published(r) < t_lost]
    # The outage as front saw it: from its last record before rear's loss to its first after rear
    # streamed again.
    i0 = max(0, len(pre) - 1)
    i1 = next((i for i, r in enumerate(front) if published(r) > t_up), len(front) - 1)
    during = front[i0:i1 + 1]
    gaps_pre = [published(b) - published(a) for a, b in zip(pre, pre[1:])]
    gaps_during = [published(b) - published(a) for a, b in zip(during, during[1:])]
    # Not "two frame intervals": under TCG one inference takes 6–10 s and front and rear share one
    # worker, so front's records come at the pipeline's pace (about one per two inferences while
    # both stream), never at the camera's 5 fps. A front disturbed by rear's unplug (its capture or
    # its lane waiting on rear's device, leases or re-open) shows as a gap well beyond that pace;
    # so the yardstick is front's own median gap before the unplug, with 1 s for TCG jitter. (The
    # first gap includes OpenVINO's slower first inferences: it only loosens the yardstick.)
    g = sorted(gaps_pre)
    med = (g[(len(g) - 1) // 2] + g[len(g) // 2]) / 2 if g else float("nan")
    longest = max(gaps_during) if gaps_during else float("inf")
    check("E: front's records kept coming during rear's outage (longest gap ≤ 2 × front's median gap before + 1 s)",
          len(gaps_pre) >= 2 and len(gaps_during) >= 2 and longest <= 2 * med + 1.0,
          f"median gap before {med:.1f} s ({len(gaps_pre)} gaps), longest during {longest:.1f} s over "
          f"{len(gaps_during)} gaps: {[round(g, 1) for g in gaps_during]}")
    # Consecutive seqs cannot be: one worker at 6-10 s per inference classifies one frame of the
    # many each camera delivers (drop-oldest). So "contiguous" is judged as: seq per source never
    # restarts or goes back; every frame front delivered but did not classify is reported in
    # `dropped` (cumulatively: a record's `dropped` also counts drops of frames newer than it that
    # happened before it was published, so pairwise sums do not balance; by the time record b is
    # published, each of front's b.seq earlier frames is a record or counted); and front's capture
    # did not pause: its seq advanced at the same pace (frames per second of driver time) across
    # rear's outage as before it.
    seqs = [r["seq"] for r in front]
    cum, accounted = 0, all(b["seq"] > a["seq"] for a, b in zip(front, front[1:]))
    for i, r in enumerate(front):
        cum += r.get("dropped", 0)
        accounted = accounted and cum >= r["seq"] - i

    def rate(rs):
        span = (rs[-1]["capture_ns"] - rs[0]["capture_ns"]) / 1e9 if len(rs) >= 2 else 0
        return (rs[-1]["seq"] - rs[0]["seq"]) / span if span > 0 else float("nan")

    r_pre, r_during = rate(pre), rate(during)
    check("E: front's seq contiguous across rear's unplug: increasing, every frame not classified counted in `dropped`, "
          "captured at its pace before (≥ 0.7×)",
          accounted and r_during >= 0.7 * r_pre, f"seq {seqs[:2]} … {seqs[-2:]}; front captured {r_pre:.2f} fps before, "
          f"{r_during:.2f} fps during the outage")
    figures.append(f"E: front record gaps: median {med:.1f} s before rear's unplug, during its outage "
                   f"{[round(g, 1) for g in gaps_during]} s (longest {longest:.1f} s); front capture {r_pre:.2f} → {r_during:.2f} fps")
    figures.append(f"E: rear down {up.get('downtime_ms')} ms (link removed for "
                   f"{mk['E:replug']['wall'] - mk['E:unplug_applied']['wall']:.1f} s); records front {len(front)}, rear {len(rear)}")
else:
    check("E: enough records to judge front across rear's outage", False,
          f"rear lost {lost is not None}, streaming again {up is not None}, front records {len(front)}")
rl = next(iter(log_lines(elog, "camera lost")), None)
rb = next(iter(log_lines(elog, "camera buffers returned after loss")), None)
figures.append(f"E: rear lost with camera.leased={meta(rl, 'camera.leased')}, buffers back after {meta(rb, 'camera.waited_ms')} ms")

# ------------------------------------------------------------------------ figures
if len(Acls) >= 2 and "drops_on" in mk:
    bl = [r for r in Acls if wall(r) < mk["drops_on"]["wall"]]
    if len(bl) >= 2:
        span = (bl[-1]["capture_ns"] - bl[0]["capture_ns"]) / 1e9
        figures.append(f"A: capture {(bl[-1]['seq'] - bl[0]['seq']) / span:.1f} fps before the faults (pipeline seq over "
                       f"driver time), {len(bl) / span:.2f} classifications/s (OpenVINO under TCG: the rest drop-oldest)")
figures.append("A camera: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
figures += timings
print("--- figures")
for f in figures:
    print(f)
print(f"camera test: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
