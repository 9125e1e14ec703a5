#!/usr/bin/env python3
"""Vision Mamba (Vim) reference fixtures for tests/vim_test.cpp (issue 18; docs/vision.md).

A plain PyTorch float64 implementation of hustvl/Vim's VisionMamba forward, written from the paper
and the repository's description (patch Conv2d, class token in the middle / at the head / none,
absolute position embeddings, Add -> RMSNorm/LayerNorm -> bidirectional Mamba-1 "bimamba v2" mixer
on an fp32+ residual, final Add -> norm, head on the class token or the mean), whose selective scan
is the official Mamba-1 reference `selective_scan_ref` (state-spaces/mamba,
mamba_ssm/ops/selective_scan_interface.py), taken from its source with the fp32 casts widened to
fp64. It writes tiny random checkpoints in hustvl/Vim's state-dict names, their logits on fixed
inputs, and the torchvision/PIL evaluation transform applied to a few generated PNG/JPEG images:

  OUT/inputs.npy                     float32 [2, 3, 64, 64]   the images every model gets
  OUT/models/<name>/config.json      Vim constructor arguments (+ "model_type": "vim")
  OUT/models/<name>/model.safetensors   (or model.pth: torch.save({"model": state_dict}))
  OUT/models/<name>/logits.npy       float32 [2, num_classes] from the float64 forward
  OUT/images/*.png|jpg               source images
  OUT/images/<name>.crop224.png      PIL pixels after Resize(256, bicubic) + CenterCrop(224)
  OUT/images/<name>.t32.npy          float32 [3, 32, 32]: Resize(37, bicubic), CenterCrop(32),
                                     ToTensor, Normalize(ImageNet mean/std)
  OUT/images/manifest.json, OUT/meta.json

Usage (on a machine with PyTorch; torchvision and Pillow for the image part; no network):
  python3 scripts/vim_reference.py --out tests/data/vim [--official PATH/reference/official]
  python3 scripts/vim_reference.py --out tests/data/vim --images-only   # Pillow alone, no torch
Needs nothing else: .npy and .safetensors are written by hand (no numpy / safetensors needed).
"""
import argparse
import ast
import json
import math
import os
import struct
import sys
import textwrap

try:  # the image part runs without torch (Pillow only); the models need it
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = F = None

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------------
# The official selective scan, loaded from its source without importing mamba_ssm (which needs
# triton and the CUDA extensions); its .float() casts become float64 so the whole forward is fp64.

def load_selective_scan_ref(official):
    path = os.path.join(official, "mamba_ssm", "ops", "selective_scan_interface.py")
    src = open(path).read()
    tree = ast.parse(src)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "selective_scan_ref")
    code = ast.get_source_segment(src, fn)
    code = code.replace(".float()", ".to(torch.float64)")
    try:
        from einops import rearrange, repeat
    except ImportError:  # the two patterns the real-valued, variable-B/C path uses
        def rearrange(t, pattern, **kw):
            assert pattern == "d -> d 1", pattern
            return t[:, None]

        def repeat(*a, **kw):
            raise NotImplementedError("grouped B/C is not used by Vim")
    ns = {"torch": torch, "F": F, "rearrange": rearrange, "repeat": repeat}
    exec(compile(textwrap.dedent(code), path, "exec"), ns)
    return ns["selective_scan_ref"], path


def find_official(arg):
    here = os.path.dirname(os.path.abspath(__file__))
    cands = [arg, os.environ.get("MAMBACPP_OFFICIAL"),
             os.path.join(here, "..", "shared", "reference", "official"),
             os.path.join(here, "..", "..", "shared", "reference", "official"),
             "/work/shared/reference/official"]
    for c in cands:
        if c and os.path.isfile(os.path.join(c, "mamba_ssm", "ops", "selective_scan_interface.py")):
            return c
    sys.exit("vim_reference.py: the official reference (mamba_ssm/ops/selective_scan_interface.py) "
             "was not found: pass --official DIR (the folder holding mamba_ssm/)")


# ---------------------------------------------------------------------------------------------
# Writers (no numpy / safetensors needed).

def write_npy_values(path, values, shape, descr="<f4"):
    """A NumPy .npy (version 1.0) of `values` (flat, row-major) with the given shape."""
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (
        descr, "(%s)" % (", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "")))
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * pad + "\n"
    fmt = {"<f4": "f", "<f8": "d", "<i8": "q"}[descr]
    data = struct.pack("<%d%s" % (len(values), fmt), *values)
    with open(path + ".tmp", "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + data)
    os.replace(path + ".tmp", path)


def write_npy(path, t):
    t = t.detach().to("cpu").contiguous()
    descr = {torch.float32: "<f4", torch.float64: "<f8", torch.int64: "<i8"}[t.dtype]
    write_npy_values(path, t.flatten().tolist(), tuple(t.shape), descr)


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().to("cpu", torch.float32).contiguous()
        b = struct.pack("<%df" % t.numel(), *t.flatten().tolist())
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    os.replace(path + ".tmp", path)


def write_json(path, obj):
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)


# ---------------------------------------------------------------------------------------------
# Vim, float64.

def derived(cfg):
    c = dict(cfg)
    c.setdefault("stride", c["patch_size"])
    c["d_inner"] = int(c.get("expand", 2) * c["embed_dim"])
    c["dt_rank"] = math.ceil(c["embed_dim"] / 16)
    c["grid"] = (c["img_size"] - c["patch_size"]) // c["stride"] + 1
    c["num_patches"] = c["grid"] ** 2
    c["num_tokens"] = 1 if c.get("if_cls_token", True) else 0
    return c


def random_state_dict(cfg, g):
    c = derived(cfg)
    d, di, n, r, k = c["embed_dim"], c["d_inner"], c["d_state"], c["dt_rank"], c.get("d_conv", 4)
    P, C = c["patch_size"], c.get("channels", 3)

    def U(*shape, fan_in):
        b = 1.0 / math.sqrt(fan_in)
        return (torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1) * b

    def N(*shape, std):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * std

    sd = {}
    if c["num_tokens"]:
        sd["cls_token"] = N(1, 1, d, std=0.5)
    sd["pos_embed"] = N(1, c["num_patches"] + c["num_tokens"], d, std=0.5)
    sd["patch_embed.proj.weight"] = U(d, C, P, P, fan_in=C * P * P)
    sd["patch_embed.proj.bias"] = U(d, fan_in=C * P * P)
    sd["head.weight"] = U(c["num_classes"], d, fan_in=d)
    sd["head.bias"] = U(c["num_classes"], fan_in=d)
    rms = c.get("rms_norm", True)
    for i in range(c["depth"]):
        p = "layers.%d." % i
        sd[p + "mixer.in_proj.weight"] = U(2 * di, d, fan_in=d)
        for s in ["", "_b"] if c.get("bimamba_type", "v2") == "v2" else [""]:
            a_name = "mixer.A_log" if s == "" else "mixer.A_b_log"
            sd[p + a_name] = torch.log(torch.arange(1, n + 1, dtype=torch.float64)).repeat(di, 1) + N(di, n, std=0.1)
            sd[p + "mixer.D" + s] = 1 + N(di, std=0.2)
            sd[p + "mixer.conv1d%s.weight" % s] = U(di, 1, k, fan_in=k)
            sd[p + "mixer.conv1d%s.bias" % s] = U(di, fan_in=k)
            sd[p + "mixer.x_proj%s.weight" % s] = U(r + 2 * n, di, fan_in=di)
            sd[p + "mixer.dt_proj%s.weight" % s] = U(di, r, fan_in=r)
            dt = torch.exp(torch.rand(di, generator=g, dtype=torch.float64) * (math.log(0.1) - math.log(1e-3))
                           + math.log(1e-3))
            sd[p + "mixer.dt_proj%s.bias" % s] = dt + torch.log(-torch.expm1(-dt))
        sd[p + "mixer.out_proj.weight"] = U(d, di, fan_in=di)
        sd[p + "norm.weight"] = 1 + N(d, std=0.1)
        if not rms:
            sd[p + "norm.bias"] = N(d, std=0.1)
    sd["norm_f.weight"] = 1 + N(d, std=0.1)
    if not rms:
        sd["norm_f.bias"] = N(d, std=0.1)
    # The checkpoint stores float32; the reference computes in float64 from exactly those values.
    return {k: v.to(torch.float32) for k, v in sd.items()}


def norm(x, sd, name, cfg):
    w = sd[name + ".weight"]
    if cfg.get("rms_norm", True):  # mamba_ssm's RMSNorm: x / sqrt(mean(x^2) + eps) * w
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + cfg.get("norm_epsilon", 1e-5)) * w
    return F.layer_norm(x, (x.shape[-1],), w, sd[name + ".bias"], cfg.get("norm_epsilon", 1e-5))


def mamba_direction(xz, sd, p, s, c, scan):
    """Mamba-1 without in/out projections on xz (B, 2·d_inner, L), as mamba_inner_fn_no_out_proj."""
    di, n, r, L = c["d_inner"], c["d_state"], c["dt_rank"], xz.shape[-1]
    x, z = xz.chunk(2, dim=1)
    w = sd[p + "conv1d%s.weight" % s]
    x = F.silu(F.conv1d(x, w, sd.get(p + "conv1d%s.bias" % s), padding=w.shape[-1] - 1, groups=di)[..., :L])
    x_dbl = x.transpose(1, 2) @ sd[p + "x_proj%s.weight" % s].t()  # (B, L, r + 2n)
    dt, B, C = torch.split(x_dbl, [r, n, n], dim=-1)
    delta = (dt @ sd[p + "dt_proj%s.weight" % s].t()).transpose(1, 2)  # (B, d_inner, L)
    A = -torch.exp(sd[p + ("A_log" if s == "" else "A_b_log")])
    return scan(x, delta, A, B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous(), sd[p + "D" + s],
                z=z, delta_bias=sd[p + "dt_proj%s.bias" % s], delta_softplus=True)


def mixer(h, sd, p, c, scan):
    xz = (h @ sd[p + "in_proj.weight"].t()).transpose(1, 2)  # (B, 2·d_inner, L)
    out = mamba_direction(xz, sd, p, "", c, scan)
    if c.get("bimamba_type", "v2") == "v2":
        out_b = mamba_direction(xz.flip([-1]), sd, p, "_b", c, scan)  # the reversed sequence
        out = out + out_b.flip([-1])
        if c.get("if_devide_out", True):
            out = out / 2
    return out.transpose(1, 2) @ sd[p + "out_proj.weight"].t()


def vim_forward(cfg, sd32, images, scan):
    c = derived(cfg)
    sd = {k: v.to(torch.float64) for k, v in sd32.items()}
    x = F.conv2d(images.to(torch.float64), sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"],
                 stride=c["stride"])
    x = x.flatten(2).transpose(1, 2)  # (B, M, D)
    B, M, _ = x.shape
    pos = None
    if c["num_tokens"]:
        cls = sd["cls_token"].expand(B, -1, -1)
        pos = M // 2 if c.get("use_middle_cls_token", True) else 0
        x = torch.cat((x[:, :pos], cls, x[:, pos:]), dim=1)
    if c.get("if_abs_pos_embed", True):
        x = x + sd["pos_embed"]
    residual, hidden = None, x
    for i in range(c["depth"]):
        p = "layers.%d." % i
        residual = hidden if residual is None else residual + hidden  # drop_path is identity in eval
        hidden = mixer(norm(residual, sd, p + "norm", c), sd, p + "mixer.", c, scan)
    out = norm(residual + hidden, sd, "norm_f", c)
    if pos is not None:
        feat = out[:, pos]
    elif c.get("final_pool_type", "mean") == "mean":
        feat = out.mean(dim=1)
    else:
        feat = out[:, -1]
    return feat @ sd["head.weight"].t() + sd["head.bias"]


MODELS = {
    # Vim's released layout (middle class token, bimamba v2, averaged directions), scaled down.
    "mid_cls_v2": dict(img_size=64, patch_size=16, embed_dim=32, depth=2, d_state=16, num_classes=10,
                       if_devide_out=True, use_middle_cls_token=True, final_pool_type="mean",
                       id2label={str(i): "class_%d" % i for i in range(10)}),
    # Overlapping patches (stride 8: Vim's "+" fine-tuning layout), head class token, summed directions.
    "stride8_head_cls_sum": dict(img_size=64, patch_size=16, stride=8, embed_dim=24, depth=2, d_state=8,
                                 num_classes=7, if_devide_out=False, use_middle_cls_token=False),
    # No class token: mean pooling, LayerNorm; stored as a torch.save .pth under "model".
    "mean_pool_layernorm_pth": dict(img_size=64, patch_size=16, embed_dim=24, depth=3, d_state=8,
                                    num_classes=6, if_cls_token=False, final_pool_type="mean", rms_norm=False),
}


# ---------------------------------------------------------------------------------------------
# Images: generated (no data set needed), the evaluation transform run by torchvision on PIL.

def make_images(out_dir, rng):
    from PIL import Image
    specs = [("smooth_up", 150, 100, "png", "RGB"),   # shorter side 100 -> 256: upscaling
             ("photo_down", 320, 280, "jpg", "RGB"),  # 280 -> 256: antialiased downscaling
             ("rgba_tall", 120, 170, "png", "RGBA"),  # alpha dropped by convert("RGB")
             ("odd_wide", 401, 263, "jpg", "L")]      # grayscale JPEG, odd sizes (crop rounding)
    files = []
    for name, w, h, ext, mode in specs:
        nch = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
        data = bytearray()
        for y in range(h):
            for x in range(w):
                for k in range(nch):
                    v = (127 + 60 * math.sin(x / (7 + 5 * k) + y / (11 + 3 * k) + k)
                         + 40 * math.cos((x - w / 2) * (y - h / 3) / (900 + 300 * k)) + rng.gauss(0, 1))
                    data.append(max(0, min(255, int(round(v)))))
        im = Image.frombytes(mode, (w, h), bytes(data))
        fname = "%s.%s" % (name, ext)
        if ext == "jpg":
            im.save(os.path.join(out_dir, fname), quality=90)
        else:
            im.save(os.path.join(out_dir, fname))
        files.append((name, fname))
    return files


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def normalized_values(im):
    """ToTensor + Normalize as float32 values [3, h, w] (flat): torchvision's when it and torch are
    there, else the same float32 arithmetic in Python (each step rounded to float32: a float64
    subtraction or division of float32 operands rounds to the correctly rounded float32 result)."""
    try:
        from torchvision.transforms import functional as TF
        t = TF.to_tensor(im)
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
        std = torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None]
        return ((t - mean) / std).flatten().tolist(), "torchvision ToTensor + Normalize arithmetic"
    except Exception:  # no torch / torchvision / numpy
        w, h = im.size
        px = im.tobytes()
        out = []
        for c in range(3):
            m, s = f32(IMAGENET_MEAN[c]), f32(IMAGENET_STD[c])
            for i in range(w * h):
                v = f32(px[3 * i + c] / 255.0)
                out.append(f32(f32(v - m) / s))
        return out, "ToTensor + Normalize in float32 by hand"


def eval_transform(im, resize, crop):
    """torchvision Resize(resize, BICUBIC) + CenterCrop(crop) on a PIL image (timm / Vim eval)."""
    try:
        from torchvision import transforms as T
        r = T.Resize(resize, interpolation=T.InterpolationMode.BICUBIC)(im)
        return T.CenterCrop(crop)(r), "torchvision"
    except Exception:  # the same calls torchvision makes on PIL images
        from PIL import Image
        w, h = im.size
        short, long = min(w, h), max(w, h)
        nl = int(resize * long / short)
        size = (resize, nl) if w <= h else (nl, resize)
        r = im.resize(size, Image.BICUBIC)
        left, top = int(round((r.size[0] - crop) / 2.0)), int(round((r.size[1] - crop) / 2.0))
        return r.crop((left, top, left + crop, top + crop)), "PIL (torchvision absent)"


def images_part(out, seed):
    try:
        from PIL import Image
    except ImportError:
        print("vim_reference.py: Pillow not installed: no image fixtures (the preprocessing test will skip)")
        return
    import random
    d = os.path.join(out, "images")
    os.makedirs(d, exist_ok=True)
    items, how = [], set()
    for name, fname in make_images(d, random.Random(seed)):
        im = Image.open(os.path.join(d, fname)).convert("RGB")  # torchvision ImageFolder's loader
        crop224, h1 = eval_transform(im, 256, 224)
        crop224.save(os.path.join(d, name + ".crop224.png"))
        small, h2 = eval_transform(im, 37, 32)
        values, h3 = normalized_values(small)
        write_npy_values(os.path.join(d, name + ".t32.npy"), values, (3, 32, 32))
        items.append({"file": fname, "crop224": name + ".crop224.png", "tensor": name + ".t32.npy",
                      "resize": 37, "crop": 32})
        how |= {h1, h2, h3}
    import PIL
    write_json(os.path.join(d, "manifest.json"), {"images": items, "pillow": PIL.__version__,
                                                  "transform": sorted(how)})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/data/vim")
    ap.add_argument("--official", default=None, help="folder holding mamba_ssm/ (the official reference)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images-only", action="store_true", help="only the preprocessing part (Pillow, no torch)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    images_part(args.out, args.seed)
    if args.images_only:
        return
    if torch is None:
        sys.exit("vim_reference.py: PyTorch is needed for the model fixtures (--images-only makes the rest)")
    scan, scan_path = load_selective_scan_ref(find_official(args.official))
    torch.backends.cuda.matmul.allow_tf32 = False
    g = torch.Generator().manual_seed(args.seed)
    os.makedirs(os.path.join(args.out, "models"), exist_ok=True)
    inputs = torch.randn(2, 3, 64, 64, generator=g).to(torch.float32)
    write_npy(os.path.join(args.out, "inputs.npy"), inputs)
    for name, cfg in MODELS.items():
        d = os.path.join(args.out, "models", name)
        os.makedirs(d, exist_ok=True)
        sd = random_state_dict(cfg, g)
        logits = vim_forward(cfg, sd, inputs, scan)
        write_npy(os.path.join(d, "logits.npy"), logits.to(torch.float32))
        write_json(os.path.join(d, "config.json"), dict(model_type="vim", **cfg))
        if name.endswith("_pth"):
            torch.save({"model": {k: v.clone() for k, v in sd.items()}, "epoch": 0}, os.path.join(d, "model.pth"))
        else:
            write_safetensors(os.path.join(d, "model.safetensors"), sd)
        print("%-26s logits %s  |max| %.4f" % (name, tuple(logits.shape), logits.abs().max().item()))
    write_json(os.path.join(args.out, "meta.json"), {
        "made_by": "scripts/vim_reference.py", "torch": torch.__version__, "selective_scan_ref": scan_path,
        "precision": "float64 forward (official selective_scan_ref with its fp32 casts widened); "
                     "weights and inputs stored as float32, logits rounded to float32"})
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(args.out) for f in fs)
    print("wrote %s: %.0f KiB" % (args.out, total / 1024))


if __name__ == "__main__":
    main()
