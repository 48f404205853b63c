#!/usr/bin/env bash
# The GPU checks of issues 3, 6 and 7 in one go (one short session on a lent GPU machine):
#   1. benchmarks/step_speed.py: per-step times, eager vs CUDA graph, 1 and 10 seeds, graph-vs-eager check
#   2. real MNIST, 3 epochs, float64 (issue 3): BP and DDTP-linear on the CUDA-graph path
#   3. per-epoch wall times (benchmarks/epoch_times.py): 10 seeds together vs one, the CNN methods
#      (synthetic CIFAR-10-sized data when CIFAR-10 is absent), alignment epochs and damping searches
#      (for benchmarks/estimate_gpu.py)
# SKIP_MNIST3=1 leaves out step 2; BUDGET (s) caps the whole script.
# Usage: bash benchmarks/gpu_checks.sh OUT_DIR [DATA_ROOT]    (python: $PYTHON, default python3)
set -u
OUT=${1:?output folder}; DATA=${2:-data}
PY=${PYTHON:-python3}
mkdir -p "$OUT/work"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
W="$OUT/work"
{ nvidia-smi; $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } > "$OUT/env.txt" 2>&1
t0=$(date +%s)
BUDGET=${BUDGET:-520}  # seconds for all stages together; each stage gets min(its limit, what is left)
stamp() { echo "== $(( $(date +%s) - t0 )) s: $*"; }
lim() { local left=$(( BUDGET - ($(date +%s) - t0) )); (( left < 5 )) && left=5; (( $1 < left )) && echo "$1" || echo "$left"; }

stamp step_speed
timeout $(lim 300) $PY benchmarks/step_speed.py --device cuda --csv "$OUT/step_speed.csv" > "$OUT/step_speed.log" 2>&1
echo "step_speed rc=$?" >> "$OUT/step_speed.log"

E="$PY benchmarks/epoch_times.py --device cuda --data-root $DATA"
if [ -z "${SKIP_MNIST3:-}" ]; then
  stamp "issue 3: real MNIST 3 epochs float64 (graph)"
  for m in bp ddtp-linear; do
    timeout $(lim 90) $PY -m tp train --method $m --dataset mnist --epochs 3 --set double_precision=true \
      --device cuda --data-root "$DATA" --no-progress --out "$W/runs/mnist-$m" > "$W/mnist-$m.log" 2>&1
    echo "rc=$?" >> "$W/mnist-$m.log"
  done
fi
stamp "epoch times: 10 seeds vs 1 (real MNIST)"
timeout $(lim 40) $E --cells ddtp-linear:mnist,bp:mnist --seeds 1-10 --epochs 2 --set epochs_fb=1 --fast graph --csv "$W/block10.csv" > "$W/block10.log" 2>&1
timeout $(lim 30) $E --cells ddtp-linear:mnist,bp:mnist --seeds 1 --epochs 2 --set epochs_fb=1 --fast graph --csv "$W/single-graph.csv" > "$W/single-graph.log" 2>&1
stamp "CNN epochs (issue 6)"
timeout $(lim 80) $E --cells bp:cifar10-cnn,ddtp-linear:cifar10-cnn,ddtp-control:cifar10-cnn,dfa:cifar10-cnn --source synthetic --epochs 2 --set epochs_fb=0 --fast graph --csv "$W/cnn-graph.csv" > "$W/cnn-graph.log" 2>&1
stamp "alignment epochs and damping searches (DDTP-linear; the estimate's overheads)"
timeout $(lim 30) $E --cells ddtp-linear:mnist:alignment --epochs 1 --set epochs_fb=0 --fast graph --csv "$W/align-mnist.csv" > "$W/align-mnist.log" 2>&1
timeout $(lim 40) $E --cells ddtp-linear:cifar10:alignment,ddtp-linear:cifar10-cnn:alignment --source synthetic --epochs 1 --set epochs_fb=0 --fast graph --csv "$W/align-cifar.csv" > "$W/align-cifar.log" 2>&1
timeout $(lim 40) $E --cells ddtp-linear:mnist:alignment --epochs 3 --set gn_damping_hpsearch=true --fast graph --csv "$W/damping-mnist.csv" > "$W/damping-mnist.log" 2>&1
timeout $(lim 60) $E --cells ddtp-linear:cifar10:alignment,ddtp-linear:cifar10-cnn:alignment --source synthetic --epochs 3 --set gn_damping_hpsearch=true --fast graph --csv "$W/damping-cifar.csv" > "$W/damping-cifar.log" 2>&1
stamp done
$PY - "$W" "$OUT/epochs.csv" <<'PY'
import csv, sys
from pathlib import Path
rows = []
for f in sorted(Path(sys.argv[1]).glob("*.csv")):
    for r in csv.DictReader(open(f)):
        rows.append({"file": f.stem, **r})
if rows:
    with open(sys.argv[2], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
PY
find "$W" -name checkpoint.pt -delete
tar -czf "$OUT/work.tar.gz" -C "$OUT" work && rm -rf "$W"
