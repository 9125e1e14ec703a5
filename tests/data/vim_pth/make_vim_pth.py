#!/usr/bin/env python3
"""A tiny random Vim checkpoint written twice, without torch: model.safetensors and model.pth
(torch.save's zip format, through ../torch_pickle/make_pickles.py) holding the same float32 values,
the state dict under "model" beside other entries as hustvl/Vim's released .pth files keep it
({"model": ..., "optimizer": ..., "epoch": ...}). tests/vim_test.cpp loads both and requires the
same logits. Usage: make_vim_pth.py [OUT_DIR] (default: this folder).
"""
import json
import os
import random
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "torch_pickle"))
import make_pickles as mp  # noqa: E402  (installs a fake `torch` module for pickling)

CONFIG = {"model_type": "vim", "img_size": 32, "patch_size": 8, "embed_dim": 16, "depth": 2, "d_state": 4,
          "num_classes": 5, "use_middle_cls_token": True, "if_devide_out": True, "bimamba_type": "v2"}


def shapes(c):
    d, n, di = c["embed_dim"], c["d_state"], 2 * c["embed_dim"]
    r, k, p, m = (d + 15) // 16, 4, c["patch_size"], (c["img_size"] // c["patch_size"]) ** 2
    out = [("cls_token", [1, 1, d]), ("pos_embed", [1, m + 1, d]), ("patch_embed.proj.weight", [d, 3, p, p]),
           ("patch_embed.proj.bias", [d]), ("head.weight", [c["num_classes"], d]), ("head.bias", [c["num_classes"]])]
    for i in range(c["depth"]):
        q = "layers.%d." % i
        out.append((q + "mixer.in_proj.weight", [2 * di, d]))
        for s in ("", "_b"):
            out += [(q + ("mixer.A_log" if not s else "mixer.A_b_log"), [di, n]), (q + "mixer.D" + s, [di]),
                    (q + "mixer.conv1d%s.weight" % s, [di, 1, k]), (q + "mixer.conv1d%s.bias" % s, [di]),
                    (q + "mixer.x_proj%s.weight" % s, [r + 2 * n, di]), (q + "mixer.dt_proj%s.weight" % s, [di, r]),
                    (q + "mixer.dt_proj%s.bias" % s, [di])]
        out += [(q + "mixer.out_proj.weight", [d, di]), (q + "norm.weight", [d])]
    return out + [("norm_f.weight", [d])]


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else HERE
    rng = random.Random(18)
    header, blobs, off, items = {}, [], 0, []
    for name, shape in shapes(CONFIG):
        numel = 1
        for s in shape:
            numel *= s
        if "A_log" in name or "A_b_log" in name:
            vals = [0.2 + 1.5 * rng.random() for _ in range(numel)]
        elif name.endswith("norm.weight") or name.endswith("norm_f.weight") or ".D" in name:
            vals = [1 + 0.2 * rng.uniform(-1, 1) for _ in range(numel)]
        else:
            vals = [0.4 * rng.uniform(-1, 1) for _ in range(numel)]
        data = struct.pack("<%df" % numel, *vals)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
        items.append((name, mp.Parameter(mp.Storage("F32", data), 0, shape, mp.contiguous_strides(shape))))
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    mp.write(os.path.join(out_dir, "model.safetensors"), struct.pack("<Q", len(h)) + h + b"".join(blobs))
    ckpt = {"model": mp.state_dict(items), "optimizer": {"state": {}, "param_groups": [{"lr": 5e-4}]},
            "epoch": 299, "scaler": None}
    mp.write(os.path.join(out_dir, "model.pth"), mp.torch_save_bytes(ckpt, archive="checkpoint"))
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
