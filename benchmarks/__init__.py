"""Benchmarks of sepconv_jax: ops, cost accounting and the training step (run as `python -m`)."""
