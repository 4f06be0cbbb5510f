#!/usr/bin/env bash
# The README's main command: set up, get CIFAR-10 as a tfds dataset, run a short training,
# print its results.
#
#   bash scripts/quickstart.sh [SOURCE] [--config.KEY=VALUE ...]
#
# Without SOURCE, CIFAR-10 is downloaded through tensorflow-datasets (network needed). SOURCE,
# the offline way: a folder or .tar(.gz) in the train|test/<class>/<image> layout, e.g. the
# offline copy ../shared/data/cifar10-jpeg.tar.gz. Environment: CONFIG (default
# train/configs/cifar10_quick.py, minutes on a CPU; use train/configs/cifar10_mobilenet_v2.py on
# a GPU), DATA_DIR (default workdirs/tfds), WORKDIR (default workdirs/quick; an interrupted run
# there is resumed, a finished one is reported as it is), PYTHON (creates .venv; default python3).
# A set-up already done (.venv with the project installed) is not redone.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
source_path=
if [[ $# -ge 1 && $1 != --* ]]; then
  source_path=$1
  shift
fi
CONFIG=${CONFIG:-train/configs/cifar10_quick.py}
DATA_DIR=${DATA_DIR:-workdirs/tfds}
WORKDIR=${WORKDIR:-workdirs/quick}

# shellcheck source=scripts/venv.sh
source scripts/venv.sh
ensure_venv train

if [[ -n $source_path ]]; then
  .venv/bin/python -m train.prepare_data --source="$source_path" --data_dir="$DATA_DIR"
else
  .venv/bin/python -m train.prepare_data --data_dir="$DATA_DIR"
fi
.venv/bin/python -m train --config="$CONFIG" --workdir="$WORKDIR" \
  --config.data_dir="$DATA_DIR" "$@"
echo "== $WORKDIR/results.json (curves: $WORKDIR/curves.png, log: $WORKDIR/metrics.jsonl)"
cat "$WORKDIR/results.json"
