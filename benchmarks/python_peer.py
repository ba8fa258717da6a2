#!/usr/bin/env python3
"""The Python loop a user of the seed models would write, side by side with camclassd.

For every 640x480 NV12 camera frame: NV12 -> RGB -> centre crop -> resize to the model input ->
normalise -> onnxruntime -> softmax -> top-5, one frame after the other. Two variants:
  opencv   cv2.cvtColor(COLOR_YUV2RGB_NV12) + cv2.resize (the fast way; opencv-python-headless)
  pil      numpy BT.601 NV12 -> RGB + Pillow bilinear resize (no OpenCV)
onnxruntime runs with its defaults (all cores), as `ort.InferenceSession(path)` does.

In the same run, alternating rounds, `camclass bench` measures camclassd's daemon path on the
same frames and model: end-to-end FPS (replay -> queue -> workers -> socket + log) and the
capture -> publish latency at camera rate. Printed side by side with the ratio.

  .venv/bin/python benchmarks/python_peer.py --model models/efficientnet_lite0.model.yaml \
      --camclass .build/release/camclass [--rounds 3] [--seconds 3] [--json FILE]
Needs the tool venv (numpy, pillow, onnxruntime); OpenCV is optional (`make bench` installs it).
"""

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_DIR, "tools"))
import modeltool  # noqa: E402  (sidecar parsing, NV12 helpers)

FRAME_W, FRAME_H = 640, 480


def make_frames(samples, out):
    """640x480 NV12 (BT.601 limited range) from the sample JPEGs: the frames both sides replay."""
    np = modeltool.need("numpy")
    Image = modeltool.need("PIL.Image", "pillow")
    os.makedirs(out, exist_ok=True)
    files = sorted(f for f in glob.glob(os.path.join(samples, "*")) if f.lower().endswith((".jpg", ".jpeg")))
    if not files:
        raise SystemExit(f"python_peer: no JPEGs in {samples} (run `make models`)")
    paths = []
    for i, f in enumerate(files):
        dst = os.path.join(out, f"frame{i:02d}_{FRAME_W}x{FRAME_H}.nv12")
        if not os.path.exists(dst):
            with Image.open(f) as im:
                rgb = modeltool.centre_crop(im.convert("RGB"), FRAME_W / FRAME_H).resize((FRAME_W, FRAME_H), Image.BICUBIC)
            modeltool.write_atomic(dst, modeltool.rgb_to_nv12(np, np.asarray(rgb)))
        paths.append(dst)
    return paths


class Peer:
    def __init__(self, sidecar, variant):
        import numpy as np
        import onnxruntime as ort
        self.np = np
        meta = modeltool.parse_sidecar(sidecar)
        inp = meta["input"]
        self.w, self.h = int(inp["width"]), int(inp["height"])
        self.mean = np.array(inp["mean"], np.float32)
        self.std = np.array(inp["scale"], np.float32)
        self.bgr = str(inp["color"]).upper() == "BGR"
        model = os.path.join(os.path.dirname(os.path.abspath(sidecar)), str(meta["model"]))
        self.sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        self.input = self.sess.get_inputs()[0].name
        self.variant = variant
        if variant == "opencv":
            import cv2
            self.cv2 = cv2
            self.engine = f"onnxruntime {ort.__version__} + OpenCV {cv2.__version__}"
        else:
            from PIL import Image
            self.Image = Image
            self.engine = f"onnxruntime {ort.__version__} + numpy/Pillow"

    def classify(self, nv12):
        np = self.np
        # centre crop of the 4:3 frame to the model's aspect
        cw = min(FRAME_W, round(FRAME_H * self.w / self.h))
        x0 = (FRAME_W - cw) // 2
        if self.variant == "opencv":
            cv2 = self.cv2
            rgb = cv2.cvtColor(nv12.reshape(FRAME_H * 3 // 2, FRAME_W), cv2.COLOR_YUV2RGB_NV12)
            img = cv2.resize(rgb[:, x0:x0 + cw], (self.w, self.h), interpolation=cv2.INTER_LINEAR)
        else:
            rgb = modeltool.nv12_to_rgb(np, nv12, FRAME_W, FRAME_H)
            img = np.asarray(self.Image.fromarray(rgb[:, x0:x0 + cw]).resize((self.w, self.h), self.Image.BILINEAR))
        x = img.astype(np.float32)
        if self.bgr:
            x = x[..., ::-1]
        x = ((x - self.mean) / self.std).transpose(2, 0, 1)[None]
        logits = self.sess.run(None, {self.input: np.ascontiguousarray(x)})[0].reshape(-1)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        top = np.argpartition(-p, 5)[:5]
        return top[np.argsort(-p[top])]

    def run(self, frames, seconds):
        for f in frames[:3]:
            self.classify(f)  # warm-up
        lat, n, start = [], 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            self.classify(frames[n % len(frames)])
            lat.append((time.perf_counter() - t0) * 1000)
            n += 1
        elapsed = time.perf_counter() - start
        return {"fps": n / elapsed, "p50_ms": statistics.median(lat), "frames": n}


def run_camclass(binary, sidecar, frames_dir, seconds):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "row.json")
        cmd = [binary, "bench", "--model", sidecar, "--samples", frames_dir, "--rounds", "1", "--seconds", str(seconds),
               "--latency-seconds", "0.3", "--curve-seconds", "0.2", "--in-flight", "1", "--json", out]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"python_peer: {' '.join(cmd)} failed: {r.stderr.strip() or r.stdout[-500:]}")
        with open(out, encoding="utf-8") as f:
            row = json.load(f)["rows"][0]
    return {"fps": row["daemonFPS"], "p50_ms": row["daemonLatencyP50Ms"], "raw_fps": row["rawFPS"],
            "engine": row["engine"]}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python_peer.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=os.path.join(REPO_DIR, "models", "efficientnet_lite0.model.yaml"))
    p.add_argument("--samples", default=os.path.join(REPO_DIR, "samples"), help="JPEGs the frames are made from")
    p.add_argument("--frames", default=os.path.join(REPO_DIR, ".run", "bench-frames"), help="where the NV12 frames go")
    p.add_argument("--camclass", help="camclass binary: measure camclassd side by side (else the peer only)")
    p.add_argument("--variant", choices=("opencv", "pil", "both"), default="both")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--json", help="write the figures to this file")
    a = p.parse_args(argv)
    np = modeltool.need("numpy")
    modeltool.need("onnxruntime")
    paths = make_frames(a.samples, a.frames)
    frames = [np.fromfile(f, np.uint8) for f in paths]
    variants = ["opencv", "pil"] if a.variant == "both" else [a.variant]
    peers = {}
    for v in variants:
        try:
            peers[v] = Peer(a.model, v)
        except ImportError as e:
            print(f"python_peer: variant {v} unavailable ({e}); `make bench` installs opencv-python-headless", file=sys.stderr)
    if not peers:
        raise SystemExit("python_peer: no variant can run")
    runs = {k: [] for k in list(peers) + (["camclassd"] if a.camclass else [])}
    for r in range(a.rounds):
        for name, peer in peers.items():
            runs[name].append(peer.run(frames, a.seconds))
            print(f"round {r + 1}: python peer ({name}): {runs[name][-1]['fps']:.1f} FPS, p50 {runs[name][-1]['p50_ms']:.2f} ms",
                  flush=True)
        if a.camclass:
            runs["camclassd"].append(run_camclass(a.camclass, a.model, a.frames, a.seconds))
            c = runs["camclassd"][-1]
            print(f"round {r + 1}: camclassd: {c['fps']:.1f} FPS end to end (raw engine {c['raw_fps']:.1f}), "
                  f"p50 {c['p50_ms']:.2f} ms capture->publish at 30 FPS", flush=True)
    med = {k: {"fps": statistics.median(x["fps"] for x in v), "p50_ms": statistics.median(x["p50_ms"] for x in v)}
           for k, v in runs.items()}
    print()
    print(f"Same {len(frames)} frames (640x480 NV12), model {os.path.basename(a.model)}, medians of {a.rounds} rounds:")
    print(f"| loop | FPS | p50 latency ms | camclassd FPS / this |")
    print(f"|---|---|---|---|")
    base = med.get("camclassd", {}).get("fps")
    for k, m in med.items():
        what = ("camclassd (daemon path: replay → NV12 crop/scale → OpenVINO → socket + log; latency capture→publish at 30 FPS)"
                if k == "camclassd" else f"Python peer, {k} ({peers[k].engine})")
        ratio = f"{base / m['fps']:.2f}×" if base and k != "camclassd" else "-"
        print(f"| {what} | {m['fps']:.1f} | {m['p50_ms']:.2f} | {ratio} |")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump({"medians": med, "runs": runs, "model": a.model, "frames": len(frames)}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
