#!/usr/bin/env bash
# A GPU check with no build on the device: two CUDA binaries built here (the `ci` preset compiles
# sm_90a) are carried with the fixtures and the runtime libraries (.device_runtime/*.deb), and the
# device only runs them, so a short device call covers
#   1. golden: HEAD's logits on the GPU (f32 and bf16, whole sequence and one-token steps after a
#      2-token prefill) against every fixture's reference logits;
#   2. hashes: scripts/logits_hashes.sh of BASE and HEAD on the GPU (f32, bf16): bit identity;
#   3. bench: `mambacpp bench --device cuda` of BASE and HEAD alternated (f32, bf16).
#   scripts/gpu_prebuilt.sh BASE_BIN HEAD_BIN [golden hashes bench]   (BIN or BIN.xz)
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=$(realpath "$1") HEAD=$(realpath "$2"); shift 2
unpack() {  # an .xz binary (carried compressed: 20 MB -> 5 MB) is unpacked into /tmp
  case $1 in
    *.xz) local to=/tmp/$(basename "$1" .xz)_$2
          [ -x "$to" ] || { xz -dc "$1" >"$to.part" && chmod +x "$to.part" && mv "$to.part" "$to"; }
          echo "$to" ;;
    *) echo "$1" ;;
  esac
}
BASE=$(unpack "$BASE" base) HEAD=$(unpack "$HEAD" head)
STEPS=${*:-golden hashes bench}
OUT=${OUT:-$ROOT/gpu_check_out}
mkdir -p "$OUT"
export MAMBACPP_FIXTURES=${MAMBACPP_FIXTURES:-$ROOT/.device_fixtures}
t0=$SECONDS
if ! ldd "$HEAD" | grep -q "not found"; then :; else
  prefix=/tmp/mambacpp-rt
  if [ ! -f $prefix.done ]; then
    rm -rf $prefix && mkdir -p $prefix
    for f in "$ROOT"/.device_runtime/*.deb; do dpkg -x "$f" $prefix; done
    touch $prefix.done
  fi
  lib=$prefix/usr/lib/x86_64-linux-gnu
  export LD_LIBRARY_PATH=$lib/openblas-pthread:$lib/openblas-openmp:$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
ldd "$HEAD" | grep "not found"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

if [[ $STEPS == *golden* ]]; then
  for dt in f32 bf16; do
    for cfg in "$MAMBACPP_FIXTURES"/*/config.json "$MAMBACPP_FIXTURES"/families/*/config.json; do
      d=$(dirname "$cfg"); n=${d#"$MAMBACPP_FIXTURES"/}; [ -f "$d/logits.npy" ] || continue
      o="$OUT/golden_${n//\//_}_$dt"
      "$HEAD" logits -m "$d" -i "$d/input_ids.npy" -o "$o.npy" --device cuda --dtype $dt >/dev/null 2>"$o.err" || echo "FAILED $n $dt: $(tail -1 "$o.err")"
      "$HEAD" logits -m "$d" -i "$d/input_ids.npy" -o "${o}_steps.npy" --prefill 2 --device cuda --dtype $dt >/dev/null 2>>"$o.err" || echo "FAILED steps $n $dt: $(tail -1 "$o.err")"
    done
  done
  python3 - "$MAMBACPP_FIXTURES" "$OUT" <<'EOF' | tee "$OUT/golden.txt"
import array, ast, glob, os, sys
fix, out = sys.argv[1], sys.argv[2]

def load(path):  # .npy of float32 (no NumPy needed): (shape, flat values)
    with open(path, "rb") as f:
        data = f.read()
    hlen = int.from_bytes(data[8:10], "little") if data[6] == 1 else int.from_bytes(data[8:12], "little")
    start = 10 + hlen if data[6] == 1 else 12 + hlen
    head = ast.literal_eval(data[start - hlen:start].decode("latin1"))
    assert head["descr"] == "<f4" and not head["fortran_order"], head
    vals = array.array("f"); vals.frombytes(data[start:])
    return head["shape"], vals

def maxdiff(a, b):  # a, b: (shape, values); compares the common last-axis width
    (sa, va), (sb, vb) = a, b
    wa, wb = sa[-1], sb[-1]; w = min(wa, wb); rows = len(va) // wa
    assert rows == len(vb) // wb, (sa, sb)
    return max(abs(va[r * wa + c] - vb[r * wb + c]) for r in range(rows) for c in range(w))

print(f"{'fixture':28s} {'dtype':5s} {'max|gpu-ref|':>13s} {'max|steps-fwd|':>15s} {'ref max':>8s}")
for dt in ("f32", "bf16"):
    for cfg in sorted(glob.glob(f"{fix}/*/config.json") + glob.glob(f"{fix}/families/*/config.json")):
        d = os.path.dirname(cfg); n = os.path.relpath(d, fix)
        if not os.path.exists(f"{d}/logits.npy"): continue
        o = f"{out}/golden_{n.replace('/', '_')}_{dt}"
        try:
            ref, g, s = load(f"{d}/logits.npy"), load(f"{o}.npy"), load(f"{o}_steps.npy")
            print(f"{n:28s} {dt:5s} {maxdiff(g, ref):13.3e} {maxdiff(s, g):15.3e} {max(map(abs, ref[1])):8.3f}")
        except Exception as ex:
            print(f"{n:28s} {dt:5s} ERROR {type(ex).__name__} {ex}")
EOF
fi

if [[ $STEPS == *hashes* ]]; then
  t=$SECONDS
  for dt in f32 bf16; do
    "$ROOT/scripts/logits_hashes.sh" "$BASE" --device cuda --dtype $dt >"$OUT/hashes_base_$dt.txt" 2>&1 &
    "$ROOT/scripts/logits_hashes.sh" "$HEAD" --device cuda --dtype $dt >"$OUT/hashes_head_$dt.txt" 2>&1 &
  done
  wait
  for dt in f32 bf16; do
    echo "hashes cuda $dt: $(wc -l <"$OUT/hashes_head_$dt.txt") lines, $(diff "$OUT/hashes_base_$dt.txt" "$OUT/hashes_head_$dt.txt" | grep -c '^>') differ, $(grep -c FAILED "$OUT/hashes_head_$dt.txt") failed ($((SECONDS - t)) s)"
    diff "$OUT/hashes_base_$dt.txt" "$OUT/hashes_head_$dt.txt" | head -8
  done
fi

if [[ $STEPS == *bench* ]]; then
  for dt in bf16 f32; do
    for who in base head; do
      b=$BASE; [ $who = head ] && b=$HEAD
      "$b" bench --device cuda --dtype $dt --seq-len 2048 --decode-tokens 64 >"$OUT/bench_${who}_$dt.log" 2>&1
    done
    echo "--- bench cuda $dt (rows: base, head)"
    paste -d'\n' "$OUT/bench_base_$dt.log" "$OUT/bench_head_$dt.log" | grep -E "^\|" | head -30
  done
fi
echo "total $((SECONDS - t0)) s"
