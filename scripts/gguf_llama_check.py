#!/usr/bin/env python3
"""mambacpp vs llama.cpp on the GGUFs `mambacpp quantize` writes (docs/quantization.md).

For every mamba / mamba2 fixture and weight type: quantize, run llama.cpp's `llgen` (the kit's
../shared/reference/llamacpp, built with `cmake --build B --target llgen`) and mambacpp on the same file
and the same 16 prompt ids; print the largest logit difference over the prompt and how many of the 16
greedy tokens agree. No NumPy needed.
Usage: scripts/gguf_llama_check.py MAMBACPP LLGEN FIXTURES [TMPDIR]
FIXTURES_LIST / TYPES (space-separated, environment) pick other fixtures (the hybrids:
"families/bamba families/granite-4-h families/jamba families/falcon-h1 families/nemotron-h") or types.
"""
import struct, subprocess, sys, os, math
B = sys.argv[1]; LL = sys.argv[2]; F = sys.argv[3]; T = sys.argv[4] if len(sys.argv) > 4 else "/tmp"
def read_npy(path):
    d = open(path, "rb").read(); hl = struct.unpack("<H", d[8:10])[0]; hdr = d[10:10+hl].decode()
    body = d[10+hl:]
    shape = tuple(int(x) for x in hdr.split("'shape': (")[1].split(")")[0].split(",") if x.strip())
    code = "q" if "<i8" in hdr else "f"
    n = 1
    for s in shape: n *= s
    return shape, struct.unpack("<%d%s" % (n, code), body[:n * (8 if code == "q" else 4)])
def write_npy_i64(path, vals, shape):
    hdr = "{'descr': '<i8', 'fortran_order': False, 'shape': (%s), }" % (", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else ""))
    pad = 64 - (10 + len(hdr) + 1) % 64
    hdr = hdr + " " * pad + "\n"
    open(path, "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + struct.pack("<%dq" % len(vals), *vals))
rows = []
DEFAULT = "ssm-mamba1 hf-mamba1 families/falcon-mamba ssm-mamba2 hf-mamba2 families/mamba2-grouped"
for fx in os.environ.get("FIXTURES_LIST", DEFAULT).split():
    n = os.path.basename(fx)
    shape, ids = read_npy(f"{F}/{fx}/input_ids.npy")
    prompt = list(ids[:16])
    write_npy_i64(f"{T}/{n}.prompt.npy", prompt, (1, len(prompt)))
    for t in os.environ.get("TYPES", "f32 bf16 q8_0 q4_0 q4_k").split():
        g = f"{T}/{n}.{t}.gguf"
        subprocess.run([B, "quantize", "-m", f"{F}/{fx}", "--type", t, "-o", g, "-t", "2"], check=True, capture_output=True)
        ll = subprocess.run([LL, g, "2", ",".join(map(str, prompt)), "16", f"{T}/{n}.{t}.ll.f32"], capture_output=True, text=True)
        if ll.returncode != 0:
            rows.append((n, t, "llama.cpp FAILED: " + (ll.stderr.strip().splitlines() or ["?"])[-1][:150]))
            continue
        ll_tokens = ll.stdout.split()
        mc = subprocess.run([B, "generate", "-m", g, "--prompt-ids", ",".join(map(str, prompt)), "-n", "16", "--temp", "0", "--print-ids", "--ignore-eos", "-t", "2"], capture_output=True, text=True)
        mc_tokens = mc.stdout.splitlines()[0].replace(",", " ").split()
        subprocess.run([B, "logits", "-m", g, "-i", f"{T}/{n}.prompt.npy", "-o", f"{T}/{n}.{t}.mc.npy", "-t", "2"], check=True, capture_output=True)
        _, mcl = read_npy(f"{T}/{n}.{t}.mc.npy")
        lld = open(f"{T}/{n}.{t}.ll.f32", "rb").read(); lll = struct.unpack("<%df" % (len(lld) // 4), lld)
        V = len(lll) // len(prompt); Vm = len(mcl) // len(prompt)
        mx = max(abs(mcl[p * Vm + v] - lll[p * V + v]) for p in range(len(prompt)) for v in range(min(V, Vm)))
        same = sum(1 for a, b in zip(ll_tokens, mc_tokens) if a == b)
        rows.append((n, t, f"max|dlogit| {mx:.2e}  greedy {same}/16 equal  (vocab llama.cpp {V}, ours {Vm})  ll={' '.join(ll_tokens[:6])}.. mc={' '.join(mc_tokens[:6])}.."))
for r in rows: print("%-16s %-5s %s" % r)
