#!/usr/bin/env bash
# Trains MobileNetV2-CIFAR and its full-conv twin with the same recipe, one after the other,
# and prints both results.json files. Usage (from the repo root, in an environment with `.[train]`):
#   bash scripts/train_pair.sh DATA_DIR OUT_DIR [EPOCHS] [extra --config.KEY=VALUE ...]
# DATA_DIR holds the tfds cifar10 dataset (python -m train.prepare_data writes it).
set -euo pipefail
cd "$(dirname "$0")/.."
data_dir=$1 out=$2 epochs=${3:-15}
shift $(($# < 3 ? $# : 3))
PYTHON=${PYTHON:-python}
for conv in separable full; do
  config=train/configs/cifar10_mobilenet_v2.py
  [[ $conv == full ]] && config=train/configs/cifar10_mobilenet_v2_full.py
  echo "== $conv: $PYTHON -m train --config=$config --workdir=$out/mobilenet_v2_$conv" \
    "--config.data_dir=$data_dir --config.num_epochs=$epochs $*"
  "$PYTHON" -m train --config="$config" --workdir="$out/mobilenet_v2_$conv" \
    --config.data_dir="$data_dir" --config.num_epochs="$epochs" --config.progress_bar=False "$@"
  cat "$out/mobilenet_v2_$conv/results.json"
done
