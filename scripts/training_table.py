#!/usr/bin/env python3
"""Issue 13's table from one GPU call: the official kernels' times (bench_official.py's
official_bench.json) beside ours (cuda_bwd_bench's markdown rows), forward and forward + backward, per
shape, with official / ours (> 1: ours faster). Usage: training_table.py OUT_DIR (or the two files)."""
import json, os, re, sys

def main():
    if len(sys.argv) == 2:
        official_path = os.path.join(sys.argv[1], "official_bench.json")
        ours_path = os.path.join(sys.argv[1], "cuda_bwd_bench.log")
    elif len(sys.argv) == 3:
        official_path, ours_path = sys.argv[1:]
    else:
        sys.exit("usage: training_table.py OUT_DIR | OFFICIAL_JSON BENCH_LOG")
    try:
        official = json.load(open(official_path))
    except (OSError, ValueError) as e:
        sys.exit(f"error: {official_path}: {e}")
    shapes = [(8, 2048), (2, 8192), (1, 32768)]
    rows = {}  # scan variant -> {shape: (fwd, fwd+bwd)}
    row = re.compile(r"^\| (?P<name>[^|]+?) \| (?P<b>\d+)×(?P<l>\d+) \| (?P<f>[\d.]+) \| (?P<bw>[\d.]+) \| (?P<fb>[\d.]+) \|")
    try:
        for line in open(ours_path, encoding="utf-8"):
            m = row.match(line)
            if m:
                rows.setdefault(m["name"], {})[(int(m["b"]), int(m["l"]))] = (float(m["f"]), float(m["fb"]))
    except OSError as e:
        sys.exit(f"error: {ours_path}: {e}")
    if not rows:
        sys.exit(f"error: {ours_path}: no benchmark rows (| scan | B×L | fwd | bwd | fwd+bwd |)")
    key = {"Mamba-2": ("mamba2_ssd_fwd_ms", "mamba2_ssd_fwdbwd_ms"), "Mamba-3 SISO": ("mamba3_siso_fwd_ms", "mamba3_siso_fwdbwd_ms")}
    print(f"GPU: {official.get('gpu', '?')}; ms, official / ours (ratio = official ÷ ours; > 1: ours faster)\n")
    print("| scan (ours: backward kernel) | " + " | ".join(f"{b} × {l}" for b, l in shapes) + " |")
    print("|---|" + "---|" * len(shapes))
    for name, by_shape in rows.items():
        kind = next((k for k in key if name.startswith(k)), None)
        if kind is None:
            continue
        for which, label in ((0, "forward"), (1, "forward + backward")):
            cells = []
            for b, l in shapes:
                o = official.get(f"prefill_b{b}_L{l}", {}).get(key[kind][which])
                ours = by_shape.get((b, l), (None, None))[which]
                if o is None or ours is None:
                    cells.append("–")
                else:
                    cells.append(f"{o:.3f} / {ours:.3f} ({o / ours:.2f}×)")
            print(f"| {name}, {label} | " + " | ".join(cells) + " |")

if __name__ == "__main__":
    main()
