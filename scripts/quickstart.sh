#!/usr/bin/env bash
# The README's main command: set up, turn a local CIFAR-10 image archive into a tfds dataset,
# run a short training, print its results.
#
#   bash scripts/quickstart.sh SOURCE [--config.KEY=VALUE ...]
#
# SOURCE: a folder or .tar(.gz) in the train|test/<class>/<image> layout, e.g. the offline copy
# ../shared/data/cifar10-jpeg.tar.gz. Environment: CONFIG (default train/configs/cifar10_quick.py,
# minutes on a CPU; use train/configs/cifar10_mobilenet_v2.py on a GPU), DATA_DIR (default
# workdirs/tfds), WORKDIR (default workdirs/quick; an existing run there is resumed).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 1 || $1 == --* ]]; then
  echo "usage: bash scripts/quickstart.sh SOURCE [--config.KEY=VALUE ...]" >&2
  echo "  SOURCE: a folder or tar of train|test/<class>/<image>, e.g." \
    "../shared/data/cifar10-jpeg.tar.gz" >&2
  exit 2
fi
source_path=$1
shift
CONFIG=${CONFIG:-train/configs/cifar10_quick.py}
DATA_DIR=${DATA_DIR:-workdirs/tfds}
WORKDIR=${WORKDIR:-workdirs/quick}

[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[train]"

.venv/bin/python -m train.prepare_data --source="$source_path" --data_dir="$DATA_DIR"
.venv/bin/python -m train --config="$CONFIG" --workdir="$WORKDIR" \
  --config.data_dir="$DATA_DIR" "$@"
echo "== $WORKDIR/results.json (curves: $WORKDIR/curves.png, log: $WORKDIR/metrics.jsonl)"
cat "$WORKDIR/results.json"
