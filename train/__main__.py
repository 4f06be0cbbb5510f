"""`python -m train`: the trainer's command line (`train/main.py`)."""

from absl import flags

from train import main

__doc__ = main.USAGE  # what absl's --help prints above the flags
flags.adopt_module_key_flags(main)
main.run()
