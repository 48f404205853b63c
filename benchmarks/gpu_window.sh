#!/usr/bin/env bash
# One GPU window on the lent machine (issue 36; benchmarks/gpu_window.py says what it does):
#   here first:  python benchmarks/gpu_window.py stage --data-root ../shared/data   (on a committed tree)
#   device run:  bash benchmarks/gpu_window.sh 470     with carry [".gpuwindow"], timeout_s about 540
# The finished runs come back in $OUT/window.tar.gz, the per-job times in $OUT/jobs.csv.
set -u
BUDGET=${1:-470}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
: "${OUT:?OUT: the folder whose files come back}"
test -f .gpuwindow/CODE_VERSION || { echo "gpu_window.sh: .gpuwindow/ is not staged (gpu_window.py stage)" >&2; exit 2; }
{ nvidia-smi; python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } > "$OUT/env.txt" 2>&1
python3 benchmarks/gpu_window.py run --budget "$BUDGET" --out "$OUT" "${@:2}"
