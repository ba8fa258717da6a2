#!/usr/bin/env python3
"""Export the seed model families from timm to ONNX, with a camclassd sidecar.

REQUIRES PyTorch + timm + onnx (NOT needed for the default EfficientNet-Lite0 model,
which tools/modeltool.py builds without torch).  Use a separate venv, e.g.
    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch timm onnx
(plain `pip install torch timm onnx` pulls the ~5 GB CUDA build, which runs fine on CPU; a
CPU-only build needs torch AND torchvision from the same index, e.g.
pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu, then
pip install timm onnx: a CPU torch with PyPI's torchvision fails to import with
"operator torchvision::nms does not exist").  onnxruntime is optional: if importable,
each export is checked against torch on a random input.

Recipe (as in the seed documents):
  timm.layers.set_fused_attn(False)      # plain MatMul/Softmax attention, exportable at opset 11
  m = timm.create_model(name, pretrained=False).eval()   # offline, random weights
  m = timm.utils.reparameterize_model(m) # FastViT (harmless for the others)
  torch.onnx.export(m, x, f, opset_version=11, dynamo=False, input_names=["input"],
                    output_names=["logits"])
With pretrained=False the weights are RANDOM: the models are right for measuring speed, but
their classes are meaningless.  --pretrained downloads real weights from the Hugging Face
hub; --checkpoint FILE loads a local timm checkpoint.

Input size: the seeds (and their RDK X5 *_224x224_nv12.bin files and the CPU baseline) use
224x224 for every model, so that is the default (--size seed).  --size cfg uses the model's
pretrained_cfg input_size instead (256 for EdgeNeXt/FastViT/EfficientNet-B2, 288 B3, 320 B4).

Sidecar: same format as tools/modeltool.py; mean/scale = pretrained_cfg mean*255 / std*255,
RGB, NCHW, output logits, params = sum of numel of the (reparameterised) model's parameters.
"""

import argparse
import hashlib
import os
import shutil
import sys
import time
import warnings

TOOL_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TOOL_DIR)
DEFAULT_LABELS = os.path.join(REPO_DIR, "config", "imagenet1k-labels.txt")
SEED_SIZE = 224

# timm name -> family (the five seed documents)
SEED_MODELS = {
    "efficientformerv2_s0": "EfficientFormerV2",
    "efficientformerv2_s1": "EfficientFormerV2",
    "efficientformerv2_s2": "EfficientFormerV2",
    "efficientvit_m5": "EfficientViT",
    "edgenext_xx_small": "EdgeNeXt",
    "edgenext_x_small": "EdgeNeXt",
    "edgenext_small": "EdgeNeXt",
    "edgenext_base": "EdgeNeXt",
    "fastvit_t8": "FastViT",
    "fastvit_t12": "FastViT",
    "fastvit_s12": "FastViT",
    "fastvit_sa12": "FastViT",
    "efficientnet_b2": "EfficientNet",
    "efficientnet_b3": "EfficientNet",
    "efficientnet_b4": "EfficientNet",
}
FAMILY_PREFIXES = (("efficientformerv2", "EfficientFormerV2"), ("efficientvit", "EfficientViT"),
                   ("edgenext", "EdgeNeXt"), ("fastvit", "FastViT"), ("efficientnet", "EfficientNet"))


class ExportError(Exception):
    pass


def import_stack():
    missing = []
    mods = {}
    for mod, pip in (("torch", "torch"), ("timm", "timm"), ("onnx", "onnx")):
        try:
            mods[mod] = __import__(mod)
        except ImportError as e:
            missing.append(pip if getattr(e, "name", None) in (None, mod) else f"{pip} ({e})")
        except Exception as e:  # e.g. torchvision built for another torch
            missing.append(f"{pip} (import failed: {type(e).__name__}: {e})")
    if missing:
        raise ExportError(
            f"missing Python package(s): {', '.join(missing)}. export_timm.py needs PyTorch + timm "
            f"+ onnx, which the camclassd tool venv deliberately does not have.\n"
            f"  Use a separate venv:  python3 -m venv /tmp/torchvenv && "
            f"/tmp/torchvenv/bin/pip install torch timm onnx\n"
            f"  then:  /tmp/torchvenv/bin/python3 tools/export_timm.py ...")
    import timm.layers
    import timm.utils
    return mods["torch"], mods["timm"], mods["onnx"]


def family_of(name):
    if name in SEED_MODELS:
        return SEED_MODELS[name]
    for prefix, fam in FAMILY_PREFIXES:
        if name.startswith(prefix):
            return fam
    return "timm"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_sidecar_sha(path):
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("sha256:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def fmt(v):
    s = repr(round(float(v), 6))
    return s if ("." in s or "e" in s) else s + ".0"


def sidecar_text(name, model_file, family, params, size, mean, scale, labels, sha, weights):
    lst = lambda vs: "[" + ", ".join(fmt(v) for v in vs) + "]"
    return (
        "# Model sidecar written by tools/modeltool.py\n"
        f"# exported by tools/export_timm.py from timm; weights: {weights}\n"
        f"name: {name}\n"
        f"model: {model_file}\n"
        f"family: {family}\n"
        f"params: {int(params)}\n"
        "input:\n"
        f"  width: {size[1]}\n"
        f"  height: {size[0]}\n"
        "  layout: NCHW\n"
        "  color: RGB\n"
        f"  mean: {lst(mean)}\n"
        f"  scale: {lst(scale)}\n"
        "output: logits\n"
        f"labels: {labels}\n"
        f"sha256: {sha}\n")


def export_one(torch, timm, onnx, name, a):
    out = a.out
    onnx_path = os.path.join(out, f"{name}.onnx")
    yaml_path = os.path.join(out, f"{name}.model.yaml")
    labels_name = os.path.basename(a.labels)
    if (not a.force and os.path.isfile(onnx_path)
            and read_sidecar_sha(yaml_path) == sha256_file(onnx_path)):
        print(f"{name}: up to date ({onnx_path}), skipped")
        return
    if name not in timm.list_models():
        raise ExportError(f"{name}: not a timm model name (timm {timm.__version__})")

    t0 = time.monotonic()
    kwargs = {}
    if a.checkpoint:
        kwargs["pretrained_cfg_overlay"] = {"file": a.checkpoint}
    model = timm.create_model(name, pretrained=bool(a.pretrained or a.checkpoint), **kwargs)
    model.eval()
    model = timm.utils.reparameterize_model(model)  # FastViT: fuse branches; no-op otherwise
    model.eval()
    cfg = dict(model.pretrained_cfg or {})
    if a.size == "seed":
        size = (SEED_SIZE, SEED_SIZE)
    elif a.size == "cfg":
        size = tuple(int(v) for v in cfg.get("input_size", (3, SEED_SIZE, SEED_SIZE))[1:])
    else:
        size = (int(a.size), int(a.size))
    mean = [m * 255.0 for m in cfg.get("mean", (0.485, 0.456, 0.406))]
    scale = [s * 255.0 for s in cfg.get("std", (0.229, 0.224, 0.225))]
    params = sum(p.numel() for p in model.parameters())
    num_classes = getattr(model, "num_classes", 1000)
    if num_classes != 1000:
        raise ExportError(f"{name}: {num_classes} classes, the labels file has 1000")

    x = torch.randn(1, 3, size[0], size[1], generator=torch.Generator().manual_seed(0))
    os.makedirs(out, exist_ok=True)
    tmp = f"{onnx_path}.tmp{os.getpid()}"
    export_kwargs = dict(opset_version=a.opset, input_names=["input"], output_names=["logits"],
                         do_constant_folding=True)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # "legacy TorchScript export"
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape-dependent ifs
            try:
                torch.onnx.export(model, (x,), tmp, dynamo=False, **export_kwargs)
            except TypeError:  # torch < 2.5 has no `dynamo` argument (always TorchScript)
                torch.onnx.export(model, (x,), tmp, **export_kwargs)
            ref = model(x).numpy()
        m = onnx.load(tmp)
        # Make the output shape static (the tracer sometimes leaves a symbolic batch dim,
        # e.g. efficientvit_m5's 'Gemmlogits_dim_0').
        outs = list(m.graph.output)
        if len(outs) != 1 or outs[0].name != "logits":
            raise ExportError(f"{name}: unexpected ONNX outputs {[o.name for o in outs]}")
        dims = outs[0].type.tensor_type.shape.dim
        if len(dims) != ref.ndim:
            raise ExportError(f"{name}: ONNX output rank {len(dims)}, torch gives {ref.shape}")
        if any(d.dim_value != n for d, n in zip(dims, ref.shape)):
            for d, n in zip(dims, ref.shape):
                d.dim_value = int(n)
            onnx.save(m, tmp)
        onnx.checker.check_model(m)
        ins = [i for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}]
        if len(ins) != 1 or ins[0].name != "input":
            raise ExportError(f"{name}: unexpected ONNX inputs {[i.name for i in ins]}")
        os.replace(tmp, onnx_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    if os.path.exists(onnx_path + ".data"):
        raise ExportError(f"{name}: exporter wrote external data {onnx_path}.data; "
                          "use the TorchScript exporter (dynamo=False)")

    check = "onnxruntime not installed, not run"
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    if ort is not None:
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        got = sess.run(None, {"input": x.numpy()})[0]
        diff = float(abs(got - ref).max())
        check = f"onnxruntime vs torch max |diff| {diff:.2e}"
        if diff > 1e-2 * max(1.0, float(abs(ref).max())):
            raise ExportError(f"{name}: ONNX output differs from torch ({check})")

    if a.labels and os.path.isfile(a.labels):
        dst = os.path.join(out, labels_name)
        if os.path.abspath(dst) != os.path.abspath(a.labels):
            shutil.copyfile(a.labels, dst)
    else:
        raise ExportError(f"labels file not found: {a.labels}")
    weights = ("timm pretrained" if a.pretrained else
               f"checkpoint {os.path.basename(a.checkpoint)}" if a.checkpoint else
               "RANDOM (pretrained=False; for speed tests only, classes are meaningless)")
    text = sidecar_text(name, os.path.basename(onnx_path), family_of(name), params, size,
                        mean, scale, labels_name, sha256_file(onnx_path), weights)
    tmp = f"{yaml_path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, yaml_path)
    print(f"{name}: wrote {onnx_path} ({os.path.getsize(onnx_path)} bytes, {params} params, "
          f"{size[1]}x{size[0]}, opset {a.opset}) in {time.monotonic() - t0:.1f} s; {check}")


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="export_timm.py",
        description=__doc__.split("\n\n")[0] + " Requires torch + timm + onnx (see below).",
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="timm model name(s); see --list")
    p.add_argument("--all", action="store_true", help="export all 15 seed variants")
    p.add_argument("--list", action="store_true", help="list the seed variants and exit")
    p.add_argument("--out", default=os.path.join(REPO_DIR, "models"), metavar="DIR",
                   help="output directory (default: models/ of this repository)")
    p.add_argument("--size", default="seed", metavar="seed|cfg|N",
                   help="input size: seed = 224 (default), cfg = pretrained_cfg input_size, "
                        "or a number")
    p.add_argument("--opset", type=int, default=11, help="ONNX opset (default 11, as the seeds)")
    p.add_argument("--pretrained", action="store_true",
                   help="download real weights from the Hugging Face hub (needs internet)")
    p.add_argument("--checkpoint", metavar="FILE", help="load weights from a local timm checkpoint")
    p.add_argument("--labels", default=DEFAULT_LABELS, metavar="FILE",
                   help="labels file copied next to the models (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch/onnxruntime threads (default 1)")
    p.add_argument("--force", action="store_true", help="re-export even if up to date")
    a = p.parse_args(argv)

    if a.list:
        for n, fam in SEED_MODELS.items():
            print(f"{n:22s} {fam}")
        return 0
    names = list(SEED_MODELS) if a.all else a.models
    if not names:
        p.error("name at least one MODEL, or --all (see --list)")
    if a.size not in ("seed", "cfg") and not a.size.isdigit():
        p.error("--size must be seed, cfg or a number")
    if a.pretrained and a.checkpoint:
        p.error("--pretrained and --checkpoint exclude each other")
    try:
        torch, timm, onnx = import_stack()
        torch.set_num_threads(max(1, a.threads))
        # Must precede create_model: attention modules read it at construction. Gives plain
        # MatMul/Softmax instead of scaled_dot_product_attention (which needs opset >= 14).
        timm.layers.set_fused_attn(False)
        for name in names:
            export_one(torch, timm, onnx, name, a)
    except ExportError as e:
        print(f"export_timm: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
