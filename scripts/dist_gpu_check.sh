#!/usr/bin/env bash
# The data-parallel runs still to be made on a multi-GPU host (docs/distributed.md): with a CUDA
# build's `mambacpp` (BIN),
#   1. curve:   200 steps on 1 GPU vs --gpus 2, 4, 8 (and --zero1) at the same global batch:
#               every step's loss equal to 1e-5 (fp32), read from the CSV logs;
#   2. resume:  10 steps on 4 GPUs (--zero1) with a checkpoint, resumed to 20 on 2 GPUs and on 1,
#               equal to the uninterrupted 1-GPU curve;
#   3. scaling: training tokens/s of a 1.3B-class Mamba-2 (d_model 2048, 48 layers) at 1, 2, 4, 8
#               GPUs with a fixed per-GPU batch, and the efficiency tok/s(N) / (N · tok/s(1)).
#   scripts/dist_gpu_check.sh BIN [curve resume scaling]     (OUT: where logs and the table go)
set -uo pipefail
BIN=$(realpath "$1"); shift
STEPS=${*:-curve resume scaling}
OUT=${OUT:-dist_check_out}
mkdir -p "$OUT"
NGPU=$(nvidia-smi -L | wc -l)
echo "gpus: $NGPU" | tee "$OUT/summary.txt"
TINY="--task group --group-order 5 --min-length 8 --max-length 64 --layer Mamba2 --d-model 64 --headdim 32
      --d-state 32 --batch 16 --lr 3e-3 --schedule constant --clip 0.5 --weight-decay 0.1 --eval-batches 1
      --device cuda"
# Largest |loss difference| between two CSV logs over their common steps.
maxdiff() { paste -d, <(cut -d, -f3 "$1" | tail -n +2) <(cut -d, -f3 "$2" | tail -n +2) |
            awk -F, '{d=$1-$2; if (d<0) d=-d; if (d>m) m=d} END {printf "%.2e", m}'; }
if [[ $STEPS == *curve* ]]; then
  $BIN train $TINY --steps 200 --log "$OUT/g1.csv" 2>"$OUT/g1.err" >/dev/null
  for n in 2 4 8; do
    [ "$n" -le "$NGPU" ] || continue
    for z in "" --zero1; do
      $BIN train $TINY --steps 200 --gpus $n $z --log "$OUT/g$n$z.csv" 2>"$OUT/g$n$z.err" >/dev/null
      echo "curve: $n GPUs $z: rc $?, max |loss - 1 GPU| = $(maxdiff "$OUT/g1.csv" "$OUT/g$n$z.csv")" |
        tee -a "$OUT/summary.txt"
    done
  done
fi
if [[ $STEPS == *resume* && $NGPU -ge 4 ]]; then
  rm -rf "$OUT/ck" "$OUT/ck1"
  $BIN train $TINY --steps 20 --log "$OUT/r1.csv" 2>/dev/null >/dev/null
  $BIN train $TINY --steps 10 --gpus 4 --zero1 --checkpoint-dir "$OUT/ck" --log "$OUT/r4.csv" 2>/dev/null >/dev/null
  cp -r "$OUT/ck" "$OUT/ck1" && cp "$OUT/r4.csv" "$OUT/r4b.csv"
  $BIN train --resume "$OUT/ck" --steps 20 --gpus 2 --device cuda --log "$OUT/r4.csv" 2>/dev/null >/dev/null
  $BIN train --resume "$OUT/ck1" --steps 20 --device cuda --log "$OUT/r4b.csv" 2>/dev/null >/dev/null
  echo "resume: 4 -> 2 GPUs max |loss - 1 GPU| = $(maxdiff "$OUT/r1.csv" "$OUT/r4.csv"); 4 -> 1 GPU = $(maxdiff "$OUT/r1.csv" "$OUT/r4b.csv")" |
    tee -a "$OUT/summary.txt"
fi
if [[ $STEPS == *scaling* ]]; then
  head -c 50000000 /dev/urandom | base64 >"$OUT/text.txt"  # byte-level text: throughput only
  BIG="--task text --text $OUT/text.txt --length 2048 --layer Mamba2 --d-model 2048 --n-layer 48 --headdim 64
       --d-state 128 --steps 12 --eval-batches 1 --device cuda --dtype bf16 --zero1"
  base=""
  for n in 1 2 4 8; do
    [ "$n" -le "$NGPU" ] || continue
    tps=$($BIN train $BIG --batch $((8 * n)) --gpus $n 2>"$OUT/s$n.err" | sed -n 's/^throughput: \([0-9]*\) tokens.*/\1/p')
    [ -n "$base" ] || base=$tps
    echo "scaling: $n GPUs: $tps tokens/s, efficiency $(awk -v t="$tps" -v b="$base" -v n=$n 'BEGIN {printf "%.1f%%", 100*t/(n*b)}')" |
      tee -a "$OUT/summary.txt"
  done
fi
