#!/usr/bin/env bash
# GPU readiness (issue 9): extract and embed examples/s on the first GPU in fp32 and TF32, then
# each precision's agreement with fp32 and its speed. Prints everything; run on a GPU machine:
#     bench/gpu.sh [PYTHON]        (default: .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
"$python" - <<'PY'
import tensorflow as tf
gpus = tf.config.list_physical_devices("GPU")
if not gpus:
    raise SystemExit("bench/gpu.sh: TensorFlow sees no GPU here (pip install 'tensorflow[and-cuda]'?)")
print("GPU:", tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name))
PY
for precision in fp32 tf32; do
    echo "== extract, $precision"
    "$python" bench/extract.py --device gpu --precision "$precision" --clips 400 --batch-size 512 --decode-threads 8
    echo "== embed (240 x 10 s, 44.1 kHz), $precision"
    "$python" bench/embed.py --device gpu --precision "$precision" --files 240 --batch-size 512 --decode-threads 8
done
echo "== agreement with fp32 and speed of each precision"
"$python" bench/precision.py --device /GPU:0 --batch-size 512
