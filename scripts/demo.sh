#!/usr/bin/env bash
# The main job's demonstration (`scripts/run.sh` with no arguments), a few minutes on 2 cores:
# train a small byte-level Mamba-3 on the book of Genesis (data/kjv_genesis.txt), plot its loss,
# generate from it, continue a saved state in a second process, then benchmark. Every stage
# prints one line saying what it shows, then the command it runs. Files go to out/demo/.
# Environment: MAMBACPP (the binary; default build/release/bin/mambacpp), DEMO_OUT (the output
# folder), DEMO_STEPS (training steps; default 300).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${MAMBACPP:-build/release/bin/mambacpp}
out=${DEMO_OUT:-out/demo}
steps=${DEMO_STEPS:-300}
text=data/kjv_genesis.txt
rm -rf "$out"
mkdir -p "$out"
start=$SECONDS

stage() { printf '\n== [%s/6] %s\n' "$1" "$2"; }
show() { printf '$ mambacpp%s\n' "$(printf ' %q' "$@")" >&2; }
run() {
  show "$@"
  "$bin" "$@"
}

stage 1 "training: a byte-level Mamba-3 learns English spelling and verse structure from Genesis ($(($(wc -c <"$text") / 1024)) KiB); loss starts at ln 256 = 5.55 nats/byte (chance)"
run train --task text --text "$text" --layer Mamba3 --d-model 128 --n-layer 2 --d-state 16 --headdim 64 \
  --length 128 --batch 8 --steps "$steps" --lr 3e-3 --schedule cosine --warmup 20 --min-lr 3e-4 \
  --eval-batches 4 --seed 1 --checkpoint-dir "$out/model" --log "$out/train.csv" --plot "$out/loss.png"

stage 2 "the checkpoint: architecture, parameters and the byte tokenizer recorded in its config.json (so generate and chat need no --tokenizer)"
run info --model "$out/model"

first=$(awk -F, 'NR == 2 {printf "%.2f", $3}' "$out/train.csv")
last=$(awk -F, 'NR > 1 {v = $3} END {printf "%.2f", v}' "$out/train.csv")
stage 3 "the loss curve, drawn from the training log to $out/loss.png: loss $first at step 1 -> $last at step $steps (nats per byte)"
ls -l "$out/loss.png"

stage 4 "generation: the trained model continues a prompt, sampled and streamed byte by byte as it is decoded"
run generate --model "$out/model" --prompt "And God said unto Noah, " -n 320 --temp 0.7 --seed 7

stage 5 "state files: 120 bytes then saved; a second process loads the state and writes 120 more; one process writing 240 gives the same text (greedy)"
prompt="In the beginning"
show generate --model "$out/model" --prompt "$prompt" -n 120 --temp 0 --save-state "$out/state.bin"
"$bin" generate --model "$out/model" --prompt "$prompt" -n 120 --temp 0 --save-state "$out/state.bin" \
  >"$out/part1.txt" 2>"$out/part1.log"
show generate --model "$out/model" --load-state "$out/state.bin" -n 120 --temp 0
"$bin" generate --model "$out/model" --load-state "$out/state.bin" -n 120 --temp 0 \
  >"$out/part2.txt" 2>"$out/part2.log"
show generate --model "$out/model" --prompt "$prompt" -n 240 --temp 0
"$bin" generate --model "$out/model" --prompt "$prompt" -n 240 --temp 0 >"$out/whole.txt" 2>"$out/whole.log"
# generate ends its text with one newline; the two parts joined without it must equal the whole.
{ head -c -1 "$out/part1.txt"; head -c -1 "$out/part2.txt"; } >"$out/joined.txt"
head -c -1 "$out/whole.txt" >"$out/whole_text.txt"
printf 'prompt:    %s\n' "$prompt"
printf 'process 1: %s   [state saved at %s]\n' "$(head -c -1 "$out/part1.txt" | tr '\n' ' ')" \
  "$(grep -o 'position [0-9]*' "$out/part1.log")"
printf 'process 2: %s   [continued from the file]\n' "$(head -c -1 "$out/part2.txt" | tr '\n' ' ')"
if cmp -s "$out/joined.txt" "$out/whole_text.txt"; then
  echo "identical: process 1 + process 2 = one process, all $(wc -c <"$out/whole_text.txt") bytes"
else
  echo "DIFFERENT: process 1 + process 2 != one process (see $out/joined.txt, $out/whole_text.txt)" >&2
  exit 1
fi

stage 6 "throughput on random weights (d_model 384, 4 layers, vocab 50277): prefill and decode tokens/s of each layer kind at 1 and 2 threads, median and range of 5 runs"
run bench --d-model 384 --n-layer 4 --seq-len 256 --decode-tokens 16 --threads 1 2 --repeat 5

printf '\ndemo done in %d s: %s holds the checkpoint (model/), train.csv, loss.png and state.bin.\n' \
  $((SECONDS - start)) "$out"
echo "next: scripts/run.sh chat --model $out/model  |  scripts/run.sh bench (the full benchmark: d_model 768, 24 layers, 2048 tokens; several minutes)"
