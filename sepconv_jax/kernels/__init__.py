"""Pallas GPU kernels for depthwise and fused depthwise-separable convs, and their routing."""

from __future__ import annotations


def route_depthwise(x, kernel, strides, padding, dilation, precision, implementation):
    """Returns the kernel's result where `implementation` selects it, else `None` (use XLA)."""
    if implementation == "pallas":
        raise ValueError("implementation='pallas' is not available in this build")
    return None


def route_separable(x, dw, pw, strides, padding, dilation, precision, implementation):
    """Returns the fused kernel's result where `implementation` selects it, else `None`."""
    if implementation == "pallas":
        raise ValueError("implementation='pallas' is not available in this build")
    return None
