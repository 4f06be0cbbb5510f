"""Training configs (ml_collections files passed to `python -m train --config=...`)."""
