#!/usr/bin/env bash
# Prints one sha256 per output of BIN over every fixture checkpoint (../shared/fixtures or
# $MAMBACPP_FIXTURES): `logits` as one whole-sequence pass, `logits --prefill 2` (the rest as
# one-token steps) and a greedy `generate` of 8 tokens from fixed ids. Two binaries agree
# bit for bit when their outputs agree line for line (refactoring checks: before/after hashes).
#   scripts/logits_hashes.sh BIN [--device cuda] [--dtype bf16] > hashes.txt
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BIN [--device cpu|cuda] [--dtype f32|bf16]" >&2; exit 1; }
BIN=$(realpath "$1"); shift
EXTRA=("$@")
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FIX=${MAMBACPP_FIXTURES:-$ROOT/../shared/fixtures}
[ -d "$FIX" ] || { echo "no fixtures at $FIX (set MAMBACPP_FIXTURES)" >&2; exit 1; }
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT

for cfg in "$FIX"/*/config.json "$FIX"/families/*/config.json; do
  dir=$(dirname "$cfg"); name=${dir#"$FIX"/}
  [ -f "$dir/input_ids.npy" ] || continue
  "$BIN" logits -m "$dir" -i "$dir/input_ids.npy" -o "$TMP/l.npy" "${EXTRA[@]}" >/dev/null 2>"$TMP/err" ||
    { echo "FAILED logits $name: $(tail -1 "$TMP/err")"; continue; }
  echo "$(sha256sum < "$TMP/l.npy" | cut -c1-64)  $name logits"
  "$BIN" logits -m "$dir" -i "$dir/input_ids.npy" -o "$TMP/s.npy" --prefill 2 "${EXTRA[@]}" >/dev/null 2>"$TMP/err" ||
    { echo "FAILED logits --prefill 2 $name: $(tail -1 "$TMP/err")"; continue; }
  echo "$(sha256sum < "$TMP/s.npy" | cut -c1-64)  $name logits --prefill 2"
  "$BIN" generate -m "$dir" --prompt-ids 1,2,3,4 -n 8 --temp 0 --print-ids --tokenizer byte "${EXTRA[@]}" \
    >"$TMP/g.txt" 2>"$TMP/err" || { echo "FAILED generate $name: $(tail -1 "$TMP/err")"; continue; }
  echo "$(sha256sum < "$TMP/g.txt" | cut -c1-64)  $name generate $(tr '\n' ' ' < "$TMP/g.txt" | cut -c1-60)"
done
