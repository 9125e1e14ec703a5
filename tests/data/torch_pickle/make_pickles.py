#!/usr/bin/env python3
"""Writes torch.save-format checkpoints (and hostile look-alikes) without torch.

torch.save (>= 1.6, `_use_new_zipfile_serialization=True`) writes an uncompressed zip:
  <archive>/data.pkl   the object, pickled (protocol 2) with persistent ids
                       ('storage', torch.<T>Storage, key, location, numel) for storages,
  <archive>/byteorder  b"little",
  <archive>/data/<key> each storage's raw bytes, the data 64-byte aligned (an "FB" extra field
                       pads the local header, as PyTorchFileWriter does),
  <archive>/version    b"3\\n".
Tensors pickle as torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
requires_grad, OrderedDict()); a state dict is an OrderedDict with a `_metadata` attribute
(pickled through BUILD). Fake `torch` / `torch._utils` modules let the standard pickler emit
exactly these GLOBALs, so the bytes match what torch writes for the same tensors.

Usage: make_pickles.py [OUT_DIR] [--fixtures DIR]
  OUT_DIR defaults to this script's folder; fixtures default to $MAMBACPP_FIXTURES or
  ../shared/fixtures next to the checkout. Cross-check with real torch (on a machine that has
  it): python -c "import torch; torch.save(sd, 'pytorch_model.bin')" and point the test at it
  with MAMBACPP_TORCH_BIN=path/to/dir (holding pytorch_model.bin and model.safetensors).
"""
import collections
import io
import json
import os
import pickle
import struct
import sys
import types
import zlib

# ---------------------------------------------------------------------------------------------
# Fake torch: just enough for pickle to write torch's GLOBALs.

torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")
torch._utils = torch_utils
sys.modules.setdefault("torch", torch)
sys.modules.setdefault("torch._utils", torch_utils)

# safetensors dtype -> (storage class name, element size, struct code)
DTYPES = {
    "F32": ("FloatStorage", 4, "f"),
    "F16": ("HalfStorage", 2, "e"),
    "BF16": ("BFloat16Storage", 2, None),
    "F64": ("DoubleStorage", 8, "d"),
    "I64": ("LongStorage", 8, "q"),
    "I32": ("IntStorage", 4, "i"),
    "U8": ("ByteStorage", 1, "B"),
    "BOOL": ("BoolStorage", 1, "?"),
}
for _name, _, _ in DTYPES.values():
    setattr(torch, _name, type(_name, (), {"__module__": "torch"}))


def _rebuild_tensor_v2(*args):  # never called: only pickled by reference
    raise RuntimeError("fake")


def _rebuild_parameter(*args):
    raise RuntimeError("fake")


for _f in (_rebuild_tensor_v2, _rebuild_parameter):
    _f.__module__ = "torch._utils"
    setattr(torch_utils, _f.__name__, _f)


class Storage:
    """A storage: raw little-endian bytes of `numel` elements of `dtype`; key set at save."""

    def __init__(self, dtype, data):
        self.dtype = dtype
        self.data = bytes(data)
        assert len(self.data) % DTYPES[dtype][1] == 0
        self.numel = len(self.data) // DTYPES[dtype][1]


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def __reduce_ex__(self, proto):
        return (_rebuild_tensor_v2,
                (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict()))


class Parameter(Tensor):
    def __reduce_ex__(self, proto):
        inner = Tensor(self.storage, self.offset, self.size, self.stride)
        return (_rebuild_parameter, (inner, True, collections.OrderedDict()))


def contiguous_strides(size):
    strides, acc = [], 1
    for n in reversed(size):
        strides.append(acc)
        acc *= n
    return tuple(reversed(strides))


def dense(dtype, size, data):
    return Tensor(Storage(dtype, data), 0, size, contiguous_strides(size))


def state_dict(items):
    """An OrderedDict like nn.Module.state_dict(): with _metadata per module prefix."""
    sd = collections.OrderedDict(items)
    meta = collections.OrderedDict([("", {"version": 1})])
    for name in sd:
        parts = name.split(".")[:-1]
        for i in range(1, len(parts) + 1):
            meta.setdefault(".".join(parts[:i]), {"version": 1})
    sd._metadata = meta
    return sd


# ---------------------------------------------------------------------------------------------
# torch.save


def pickle_obj(obj, protocol=2):
    """Pickles like torch.serialization._save; returns (data.pkl bytes, [(key, Storage)])."""
    storages = {}

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, Storage):
                key = storages.setdefault(id(o), (str(len(storages)), o))[0]
                return ("storage", getattr(torch, DTYPES[o.dtype][0]), key, "cpu", o.numel)
            return None

    buf = io.BytesIO()
    Pickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue(), sorted((k, s) for k, s in storages.values())


class ZipWriter:
    """Stored zip entries with 64-byte aligned data, as torch's PyTorchFileWriter (miniz) writes."""

    def __init__(self, zip64=False):
        self.out = bytearray()
        self.central = []
        self.zip64 = zip64

    def add(self, name, data, size_override=None):
        name_b = name.encode()
        offset = len(self.out)
        start = offset + 30 + len(name_b) + 4
        pad = (-start) % 64
        extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
        crc = zlib.crc32(data) & 0xFFFFFFFF
        size = len(data) if size_override is None else size_override
        self.out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, crc, size, size, len(name_b),
                                len(extra))
        self.out += name_b + extra + data
        self.central.append((name_b, crc, size, offset))

    def finish(self):
        cd_offset = len(self.out)
        for name_b, crc, size, offset in self.central:
            if self.zip64:  # sizes and offset moved to the zip64 extra field, as for > 4 GiB files
                extra = struct.pack("<HHQQQ", 1, 24, size, size, offset)
                size32, off32 = 0xFFFFFFFF, 0xFFFFFFFF
            else:
                extra, size32, off32 = b"", size, offset
            self.out += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x031E, 45 if self.zip64 else 20, 0, 0, 0,
                                    0x21, crc, size32, size32, len(name_b), len(extra), 0, 0, 0, 0o644 << 16,
                                    off32)
            self.out += name_b + extra
        cd_size = len(self.out) - cd_offset
        n = len(self.central)
        if self.zip64:
            eocd64 = len(self.out)
            self.out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, cd_size, cd_offset)
            self.out += struct.pack("<IIQI", 0x07064B50, 0, eocd64, 1)
            self.out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
        else:
            self.out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, cd_size, cd_offset, 0)
        return bytes(self.out)


def torch_save_bytes(obj, archive="pytorch_model", protocol=2, zip64=False, pkl=None, bad_sizes=None):
    data_pkl, storages = pickle_obj(obj, protocol)
    if pkl is not None:
        data_pkl = pkl
    z = ZipWriter(zip64)
    z.add(f"{archive}/data.pkl", data_pkl)
    z.add(f"{archive}/byteorder", b"little")
    for key, s in storages:
        data = s.data
        if bad_sizes and key in bad_sizes:
            data = data[:bad_sizes[key]]
        z.add(f"{archive}/data/{key}", data)
    z.add(f"{archive}/version", b"3\n")
    return z.finish()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


# ---------------------------------------------------------------------------------------------
# Cases


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    body = raw[8 + n:]
    out = []
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        out.append((b, name, e["dtype"], e["shape"], body[b:end]))
    return [(name, dt, shape, data) for _, name, dt, shape, data in sorted(out)]


def fixture_checkpoint(fixtures, model, out_dir):
    src = os.path.join(fixtures, model)
    dst = os.path.join(out_dir, model)
    os.makedirs(dst, exist_ok=True)
    items = []
    by_name = {}
    for name, dt, shape, data in read_safetensors(os.path.join(src, "model.safetensors")):
        t = dense(dt, shape, data)
        by_name[name] = t
        items.append((name, t))
    # MambaLMHeadModel ties lm_head.weight to the embedding: one storage, two names.
    if "backbone.embedding.weight" in by_name and "lm_head.weight" not in by_name:
        e = by_name["backbone.embedding.weight"]
        items.append(("lm_head.weight", Tensor(e.storage, 0, e.size, e.stride)))
    write(os.path.join(dst, "pytorch_model.bin"), torch_save_bytes(state_dict(items)))
    with open(os.path.join(src, "config.json"), "rb") as f:
        write(os.path.join(dst, "config.json"), f.read())


def f32(values):
    return struct.pack(f"<{len(values)}f", *values)


def views_state_dict():
    """Tied weights, strided/offset views and one tensor of each dtype. Storage 0 is 0..23."""
    base = Storage("F32", f32([float(i) for i in range(24)]))
    bf16 = bytes(b for v in (1.0, -2.0, 0.5) for b in struct.pack("<f", v)[2:])
    a = Tensor(base, 0, (4, 6), (6, 1))
    items = [
        ("tied.a", a),
        ("tied.c", a),  # the same object again: pickled as a memo reference (BINGET)
        ("tied.b", Tensor(base, 0, (4, 6), (6, 1))),  # same storage, same view
        ("view.transpose", Tensor(base, 0, (6, 4), (1, 6))),  # tied.a.t()
        ("view.slice", Tensor(base, 7, (2, 3), (6, 2))),  # tied.a[1:3, 1::2]
        ("view.row", Tensor(base, 12, (6,), (1,))),  # contiguous with an offset: tied.a[2]
        ("view.expand", Tensor(base, 3, (3, 2), (0, 1))),  # base[3:5].expand(3, 2)
        ("view.scalar", Tensor(base, 5, (), ())),
        ("view.empty", Tensor(base, 0, (0, 6), (6, 1))),
        ("dtype.f16", dense("F16", (2,), struct.pack("<2e", 1.5, -3.0))),
        ("dtype.bf16", dense("BF16", (3,), bf16)),
        ("dtype.f64", dense("F64", (2,), struct.pack("<2d", 0.25, 4.0))),
        ("dtype.i64", dense("I64", (3,), struct.pack("<3q", -1, 2**40, 7))),
        ("dtype.i32", dense("I32", (2,), struct.pack("<2i", -5, 9))),
        ("dtype.u8", dense("U8", (4,), bytes([0, 1, 254, 255]))),
        ("dtype.bool", dense("BOOL", (2,), bytes([1, 0]))),
    ]
    return state_dict(items)


def small_state_dict():
    return state_dict([("w", dense("F32", (2, 2), f32([1.0, 2.0, 3.0, 4.0]))),
                       ("b", dense("F32", (2,), f32([-1.0, 0.5])))])


def pkl(ops):
    """Hand-written pickle bytes: PROTO 2 + ops."""
    return b"\x80\x02" + ops


def malicious(out_dir):
    d = os.path.join(out_dir, "bad")
    os.makedirs(d, exist_ok=True)
    sd = small_state_dict()
    cases = {
        # GLOBAL os.system + REDUCE: `pickle.loads` would run the command.
        "os_system.bin": pkl(b"cos\nsystem\nq\x00X\x0a\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03."),
        "builtins_eval.bin": pkl(b"cbuiltins\neval\nX\x0f\x00\x00\x00__import__('os')\x85R."),
        "posix_system.bin": pkl(b"cposix\nsystem\nX\x02\x00\x00\x00id\x85R."),
        # Protocol 4 spelling: STACK_GLOBAL from two strings.
        "stack_global.bin": b"\x80\x04\x8c\x0asubprocess\x8c\x05Popen\x93X\x02\x00\x00\x00id\x85R.",
        # INST and OBJ build objects without GLOBAL.
        "inst.bin": pkl(b"(X\x02\x00\x00\x00idios\nsystem\n."),
        "obj.bin": pkl(b"(cos\nsystem\nX\x02\x00\x00\x00ido."),
        # A forbidden global hidden inside an otherwise valid tensor pickle.
        "nested_global.bin": pickle_obj(sd)[0].replace(b"ccollections\nOrderedDict\n", b"cbuiltins\nexec\n"),
        "memo_out_of_range.bin": pkl(b"}h\x07."),
        "stack_underflow.bin": pkl(b"s."),
        "no_stop.bin": pkl(b"}q\x00"),
    }
    for name, data in cases.items():
        write(os.path.join(d, name), torch_save_bytes(sd, pkl=data))

    good = torch_save_bytes(sd)
    write(os.path.join(d, "truncated.bin"), good[: len(good) // 2])
    # data/0 holds 12 of the 16 bytes its FloatStorage declares.
    write(os.path.join(d, "bad_entry_size.bin"), torch_save_bytes(sd, bad_sizes={"0": 12}))
    # A view far larger than its 4-element storage, and one whose numel overflows int64.
    huge = Storage("F32", f32([1.0, 2.0, 3.0, 4.0]))
    write(os.path.join(d, "absurd_shape.bin"),
          torch_save_bytes(state_dict([("w", Tensor(huge, 0, (1 << 40, 1 << 40), (1 << 40, 1)))])))
    write(os.path.join(d, "past_storage.bin"),
          torch_save_bytes(state_dict([("w", Tensor(huge, 2, (2, 2), (2, 1)))])))
    write(os.path.join(d, "negative_stride.bin"),
          torch_save_bytes(state_dict([("w", Tensor(huge, 3, (4,), (-1,)))])))
    # A bare pickle: the legacy (< 1.6) format.
    write(os.path.join(d, "legacy.bin"), pickle_obj(sd)[0])


def main():
    args = sys.argv[1:]
    fixtures = None
    if "--fixtures" in args:
        i = args.index("--fixtures")
        fixtures = args[i + 1]
        del args[i:i + 2]
    out_dir = args[0] if args else os.path.dirname(os.path.abspath(__file__))
    if fixtures is None:
        here = os.path.dirname(os.path.abspath(__file__))
        repo = os.path.normpath(os.path.join(here, "..", "..", ".."))
        fixtures = os.environ.get("MAMBACPP_FIXTURES") or os.path.join(repo, "..", "shared", "fixtures")
    os.makedirs(out_dir, exist_ok=True)

    write(os.path.join(out_dir, "views.bin"), torch_save_bytes(views_state_dict()))
    write(os.path.join(out_dir, "views_zip64.bin"), torch_save_bytes(views_state_dict(), zip64=True))
    write(os.path.join(out_dir, "views_proto4.bin"), torch_save_bytes(views_state_dict(), protocol=4))
    # A training checkpoint: the state dict under "state_dict", parameters, other values.
    ckpt = {"epoch": 3, "lr": 1e-3, "name": "run", "flags": [True, None, -7, 1 << 40],
            "state_dict": state_dict([("w", Parameter(Storage("F32", f32([1.0, 2.0, 3.0, 4.0])), 0, (2, 2),
                                                      (2, 1)))])}
    write(os.path.join(out_dir, "nested.bin"), torch_save_bytes(ckpt, archive="archive"))
    malicious(out_dir)
    for model in ("ssm-mamba1", "ssm-mamba2"):
        if os.path.exists(os.path.join(fixtures, model, "model.safetensors")):
            fixture_checkpoint(fixtures, model, out_dir)
        else:
            print(f"note: {fixtures}/{model} not found; its pytorch_model.bin is not written", file=sys.stderr)

    # Sanity: Python's zipfile reads every well-formed archive back.
    import zipfile
    for name in ("views.bin", "views_zip64.bin", "nested.bin"):
        with zipfile.ZipFile(os.path.join(out_dir, name)) as z:
            assert z.testzip() is None, name


if __name__ == "__main__":
    main()
