#!/usr/bin/env bash
# On the GPU machine (PyTorch there): real torch.save checkpoints of fixtures, read by our
# restricted unpickler — the io test compares every tensor with the safetensors original bit for
# bit, and `mambacpp logits` on a folder holding only config.json + pytorch_model.bin must give the
# fixture's logits. Needs a build (scripts/gpu_check.sh build) and $OUT.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build/gpu-check}
FIX=${MAMBACPP_FIXTURES:-$ROOT/.device_fixtures}
PY=${PYTHON:-python3}
command -v /opt/torch/.venv/bin/python >/dev/null && PY=/opt/torch/.venv/bin/python
for f in ssm-mamba1 ssm-mamba2 ssm-hybrid hf-mamba2 families/nemotron-h; do
  d=/tmp/torchbin/$f
  rm -rf "$d" && mkdir -p "$d"
  cp "$FIX/$f/config.json" "$d/"
  "$PY" - "$FIX/$f/model.safetensors" "$d/pytorch_model.bin" <<'PYEOF'
import sys, torch
from safetensors.torch import load_file
sd = load_file(sys.argv[1])
if "lm_head.weight" not in sd and "backbone.embedding.weight" in sd:
    pass
torch.save(sd, sys.argv[2])
print("torch", torch.__version__, "saved", len(sd), "tensors to", sys.argv[2])
PYEOF
  "$BUILD/bin/mambacpp" logits -m "$d" --input "$FIX/$f/input_ids.npy" --output "$d/logits.npy" &&
    "$PY" -c "import numpy as np,sys; a=np.load('$d/logits.npy'); b=np.load('$FIX/$f/logits.npy'); print('$f pytorch_model.bin logits max|diff|', float(abs(a-b).max()))"
  cp "$FIX/$f/model.safetensors" "$d/model.safetensors.orig"
done
# The io test: every tensor equal to the safetensors original (it looks for model.safetensors).
d=/tmp/torchbin/io && rm -rf $d && mkdir -p $d && cp /tmp/torchbin/ssm-mamba2/pytorch_model.bin $d/ &&
  cp "$FIX/ssm-mamba2/model.safetensors" $d/ && cp "$FIX/ssm-mamba2/config.json" $d/
MAMBACPP_TORCH_BIN=$d "$BUILD/src/io/io_torch_pickle_test" --gtest_filter='*Real*' 2>&1 | tail -4
