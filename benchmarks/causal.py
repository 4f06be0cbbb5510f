"""Causal 1-D depthwise conv benchmark: prefill throughput and per-token decode latency.

`sepconv_jax.causal_depthwise_conv1d` (default `implementation="auto"`) against stock Flax
(`nn.Conv(feature_group_count=C, padding="CAUSAL")`; for decode re-run on the last W tokens per
step), a plain `jnp.roll` + sum decode, and PyTorch where installed (`F.conv1d` over the
left-padded sequence; for decode the reference update of the `causal-conv1d` package: concat the
state and the token, `F.conv1d` with `groups=C`, keep the last W-1 steps). Beside the decode step:
a jitted copy of the state, timed the same way (the floor of any step that carries a state).

Prefill is one call on `(N, T, C)` float32 with bias; the floor is one read of x and one write of
y at the copy bandwidth measured in the run. Decode is timed two ways: one jitted call per token
from Python feeding back the state (what a serving loop pays, dispatch included), and per token
of a `lax.scan` over up to 256 tokens in one program (device work only); beside the times, XLA's
`bytes accessed` of the decode step over the copy's (load-independent). XLA:CPU runs grouped
convolutions slowly (jax-ml/jax#23713): the Flax prefill runs only on rows of at most
`--flax-max-tokens` N·T·C elements (the first row by default).

    python -m benchmarks.causal                    # writes benchmarks/results/causal_<backend>.md
    python -m benchmarks.causal --quick --out /tmp/causal.md
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import sepconv_jax as sj
from benchmarks import common

#: (N, C, W, T_prefill): the shapes of Mamba-style short convs and a Conformer-sized window.
ROWS = ((1, 1024, 4, 4096), (8, 2048, 4, 4096), (32, 4096, 4, 1024), (8, 1024, 31, 4096))
QUICK_ROWS = ((2, 32, 5, 64),)
SCAN_TOKENS = 256

Step = Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


# ---------------------------------------------------------------------------------------------
# JAX decode steps: step(params, state, token (N, C)) -> (y (N, C), new state)


def _sepconv_step(params, state, token):
    y, state = sj.causal_depthwise_conv1d(
        token[:, None], params["kernel"], params["bias"], state=state, return_state=True
    )
    return y[:, 0], state


def _copy_step(params, state, token):
    del params
    return jnp.copy(token), jnp.copy(state)


def _roll_step(params, window, token):
    """`window` holds the last W tokens `(N, W, C)`: roll, write the token, weighted sum."""
    window = jnp.roll(window, -1, axis=1).at[:, -1].set(token)
    y = jnp.sum(window * params["kernel"][:, 0][None], axis=1) + params["bias"][None]
    return y, window


def _flax_conv(width: int, channels: int) -> nn.Conv:
    return nn.Conv(
        channels, (width,), feature_group_count=channels, padding="CAUSAL", use_bias=True
    )


def _flax_step(width: int, channels: int) -> Step:
    conv = _flax_conv(width, channels)

    def step(params, window, token):
        window = jnp.concatenate([window[:, 1:], token[:, None]], axis=1)
        y = conv.apply({"params": params}, window)[:, -1]
        return y, window

    return step


def _decode_contenders(width: int, channels: int) -> dict[str, tuple[Step, int]]:
    """name -> (step, length of its state along time)."""
    return {
        "sepconv_jax": (_sepconv_step, width - 1),
        "state copy": (_copy_step, width - 1),
        "jnp.roll+sum": (_roll_step, width),
        "Flax nn.Conv": (_flax_step(width, channels), width),
    }


def time_loop(call: Callable[[int], Any], max_steps: int, budget_s: float) -> float:
    """Median seconds per step of 5 loops of `call(i)` (returns what to wait for), each loop
    `max_steps` long or shorter so that the 5 fit in about `budget_s`."""

    def loop(steps: int) -> float:
        start = time.perf_counter()
        out = None
        for i in range(steps):
            out = call(i)
        jax.block_until_ready(out)
        return (time.perf_counter() - start) / steps

    per = loop(3)  # warm, and an estimate of the step's time
    steps = int(min(max_steps, max(3, budget_s / 5 / max(per, 1e-9))))
    return float(np.median([loop(steps) for _ in range(5)]))


def time_dispatched(
    step: Step, params, state, tokens: list[jax.Array], max_steps: int, budget_s: float
) -> float:
    """Seconds per token of jitted calls from Python, each feeding the state on."""
    fn = jax.jit(step)
    carry = [state]

    def call(i: int):
        y, carry[0] = fn(params, carry[0], tokens[i % len(tokens)])
        return y, carry[0]

    jax.block_until_ready(call(0))  # compile
    return time_loop(call, max_steps, budget_s)


def xla_bytes(step: Step, params, state, token: jax.Array) -> float:
    """XLA's `bytes accessed` of the compiled step (its cost analysis; no timing)."""
    analysis = jax.jit(step).lower(params, state, token).compile().cost_analysis()
    if isinstance(analysis, list):  # older JAX: one dict per device
        analysis = analysis[0]
    return float(analysis.get("bytes accessed", float("nan")))


def time_scanned(step: Step, params, state, tokens: jax.Array, budget_s: float) -> float:
    """Median seconds per token of a `lax.scan` of `step` over `tokens` `(S, N, C)`."""

    def run(params, state, tokens):
        def body(s, tok):
            y, s = step(params, s, tok)
            return s, y

        return lax.scan(body, state, tokens)

    t = common.time_jax(run, [(params, state, tokens)], budget_s=budget_s, min_samples=3)
    return t.median_ms * 1e-3 / tokens.shape[0]


def decode_errors(params, x: jax.Array, width: int) -> dict[str, float]:
    """Largest |difference| of each JAX step's outputs over `x` from the full causal conv."""
    n, t, c = x.shape
    full = sj.causal_depthwise_conv1d(x, params["kernel"], params["bias"])
    errors = {}
    for name, (step, length) in _decode_contenders(width, c).items():
        if name == "state copy":
            continue
        _, ys = lax.scan(
            lambda s, tok, step=step: step(params, s, tok)[::-1],
            jnp.zeros((n, length, c)),
            jnp.swapaxes(x, 0, 1),
        )
        errors[name] = float(jnp.max(jnp.abs(jnp.swapaxes(ys, 0, 1) - full)))
    return errors


# ---------------------------------------------------------------------------------------------
# PyTorch


def torch_prefill(torch, x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, budget_s: float):
    """Seconds per call of `F.conv1d(F.pad(x, (W-1, 0)), groups=C)` on `(N, C, T)`."""
    functional = torch.nn.functional
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1)))
    wt = torch.from_numpy(np.ascontiguousarray(kernel.transpose(2, 1, 0)))
    bt = torch.from_numpy(bias.copy())
    width, c = kernel.shape[0], x.shape[-1]

    def fn(a):
        with torch.no_grad():
            return functional.conv1d(functional.pad(a, (width - 1, 0)), wt, bt, groups=c)

    return common.time_torch(fn, [(xt,)], budget_s=budget_s).median_ms * 1e-3


def torch_decode(
    torch, kernel: np.ndarray, bias: np.ndarray, n: int, max_steps: int, budget_s: float
) -> float:
    """Seconds per token of causal-conv1d's reference update, eager, state `(N, C, W-1)`."""
    functional = torch.nn.functional
    width, c = kernel.shape[0], kernel.shape[-1]
    wt = torch.from_numpy(np.ascontiguousarray(kernel.transpose(2, 1, 0)))
    bt = torch.from_numpy(bias.copy())
    tokens = [torch.randn(n, c, 1) for _ in range(4)]
    carry = [torch.zeros(n, c, width - 1)]

    def call(i: int):
        with torch.no_grad():
            window = torch.cat([carry[0], tokens[i % len(tokens)]], dim=-1)
            functional.conv1d(window, wt, bt, groups=c)
            carry[0] = window[..., 1:].contiguous()
        return None  # eager on the CPU: done on return

    return time_loop(call, max_steps, budget_s)


# ---------------------------------------------------------------------------------------------
# Driver


def measure_row(
    row: tuple[int, int, int, int],
    *,
    steps: int,
    scan_tokens: int,
    budget_s: float,
    flax_prefill: bool,
    bandwidth: float,
) -> dict[str, Any]:
    """All contenders on one `(N, C, W, T)`; times in seconds, `None` where not run."""
    n, c, width, t = row
    keys = jax.random.split(jax.random.key(sum(row)), 4)
    x = jax.random.normal(keys[0], (n, t, c), jnp.float32)
    params = {
        "kernel": jax.random.normal(keys[1], (width, 1, c), jnp.float32) / width,
        "bias": jax.random.normal(keys[2], (c,), jnp.float32),
    }
    out: dict[str, Any] = {"row": row, "prefill": {}, "decode": {}, "scan": {}, "bytes": {}}
    floor_bytes = 2 * n * t * c * 4
    out["floor_s"] = floor_bytes / bandwidth

    def ours(p, a):
        return sj.causal_depthwise_conv1d(a, p["kernel"], p["bias"])

    common.log(f"{row}: prefill")
    out["prefill"]["sepconv_jax"] = (
        common.time_jax(ours, [(params, x)], budget_s=budget_s).median_ms * 1e-3
    )
    if flax_prefill:
        conv = _flax_conv(width, c)
        out["prefill"]["Flax nn.Conv"] = (
            common.time_jax(
                lambda p, a: conv.apply({"params": p}, a), [(params, x)], budget_s=budget_s
            ).median_ms
            * 1e-3
        )
    torch = common.torch_or_none()
    x_np = np.asarray(x)
    k_np, b_np = np.asarray(params["kernel"]), np.asarray(params["bias"])
    if torch is not None:
        out["prefill"]["PyTorch"] = torch_prefill(torch, x_np, k_np, b_np, budget_s)
    del x

    common.log(f"{row}: decode")
    toks = jax.random.normal(keys[3], (scan_tokens, n, c), jnp.float32)
    tokens = [toks[i] for i in range(4)]
    for name, (step, length) in _decode_contenders(width, c).items():
        state = jnp.zeros((n, length, c), jnp.float32)
        per = time_dispatched(step, params, state, tokens, steps, budget_s)
        out["decode"][name] = per
        # A scan about budget_s / 3 long (slow contenders scan fewer tokens), at least 8 tokens.
        length_s = int(min(scan_tokens, max(8, budget_s / 3 / per)))
        out["scan"][name] = time_scanned(step, params, state, toks[:length_s], budget_s)
        out["bytes"][name] = xla_bytes(step, params, state, tokens[0])
    if torch is not None:
        out["decode"]["PyTorch"] = torch_decode(torch, k_np, b_np, n, steps, budget_s)
    check = jax.random.normal(keys[3], (n, 2 * width + 3, c), jnp.float32)
    out["errors"] = decode_errors(params, check, width)
    return out


PREFILL = ("sepconv_jax", "Flax nn.Conv", "PyTorch")
DECODE = ("sepconv_jax", "state copy", "jnp.roll+sum", "Flax nn.Conv", "PyTorch")


def _us(seconds: float | None) -> str:
    return common.fmt(None if seconds is None else seconds * 1e6)


def tables(results: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    headers = [
        "N×C, W, T",
        "prefill Mtok/s: " + " / ".join(PREFILL),
        "prefill ms (floor)",
        "decode µs/token, a call per token: " + " / ".join(DECODE),
        "decode µs/token in a scan: " + " / ".join(DECODE[:4]),
        "sepconv/copy: time, XLA bytes",
        "decode max abs err",
    ]
    rows = []
    for r in results:
        n, c, width, t = r["row"]
        pre = r["prefill"]
        rate = [common.fmt(n * t / pre[k] / 1e6) if pre.get(k) else "—" for k in PREFILL]
        ratio = r["decode"]["sepconv_jax"] / r["decode"]["state copy"]
        bytes_ratio = r["bytes"]["sepconv_jax"] / r["bytes"]["state copy"]
        rows.append(
            [
                f"{n}×{c}, {width}, {t}",
                " / ".join(rate),
                f"{common.fmt(pre['sepconv_jax'] * 1e3)} ({common.fmt(r['floor_s'] * 1e3)})",
                " / ".join(_us(r["decode"].get(k)) for k in DECODE),
                " / ".join(_us(r["scan"].get(k)) for k in DECODE[:4]),
                f"{ratio:.2f}, {bytes_ratio:.2f}",
                f"{max(r['errors'].values()):.1e}",
            ]
        )
    return headers, rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one tiny row, few samples (CI)")
    parser.add_argument("--out", default=None, help="markdown file to write")
    parser.add_argument("--steps", type=int, default=200, help="decode calls per timed loop")
    parser.add_argument(
        "--flax-max-tokens",
        type=int,
        default=4096 * 1024,
        help="run the Flax prefill only on rows with N*T*C at most this",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch.set_num_threads for the PyTorch contender (default: PyTorch's own choice)",
    )
    args = parser.parse_args(argv)
    torch = common.torch_or_none()
    if torch is not None and args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    rows = QUICK_ROWS if args.quick else ROWS
    steps = 8 if args.quick else args.steps
    scan_tokens = 8 if args.quick else SCAN_TOKENS
    budget_s = 0.02 if args.quick else 1.0
    out_path = args.out or (
        None if args.quick else common.RESULTS_DIR / f"causal_{jax.default_backend()}.md"
    )
    start = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    bandwidth = common.copy_bandwidth(None if not args.quick else 4 * 2**20)
    results = [
        measure_row(
            row,
            steps=steps,
            scan_tokens=scan_tokens,
            budget_s=budget_s,
            flax_prefill=row[0] * row[1] * row[3] <= args.flax_max_tokens,
            bandwidth=bandwidth,
        )
        for row in rows
    ]
    headers, body = tables(results)
    print(common.text_table(headers, body))
    if out_path is not None:
        env = common.environment() + [
            ("copy bandwidth (measured)", f"{bandwidth / 1e9:.1f} GB/s"),
            ("load average at start (1 min)", f"{load:.1f}"),
            ("torch threads", "—" if torch is None else str(torch.get_num_threads())),
            ("wall time", f"{time.perf_counter() - start:.0f} s"),
        ]
        note = (
            "float32 with bias. Prefill: one call on (N, T, C), tokens per second; floor: one "
            "read of x and one write of y at the measured copy bandwidth. Decode: a jitted step "
            "per token called from Python, feeding the state back (dispatch included), and per "
            f"token of a lax.scan over up to {scan_tokens} tokens (fewer for slow contenders). "
            "'state copy' is a jitted copy of the state, timed the same way; 'sepconv/copy' is "
            "the ratio of the per-call times and of XLA's 'bytes accessed' of the two compiled "
            "steps (cost analysis: no timing, unaffected by the machine's load). "
            "Flax nn.Conv(feature_group_count=C, padding='CAUSAL') prefill runs only on rows "
            f"with N·T·C ≤ {args.flax_max_tokens:,} ('—' elsewhere: XLA:CPU's grouped conv is "
            "slow); its decode re-runs the conv on the last W tokens. PyTorch: F.conv1d over "
            "the left-padded (N, C, T) input; its decode is causal-conv1d's reference update "
            "(eager). Last column: the largest absolute difference of the JAX decode steps "
            "from the full call over 2W+3 tokens."
        )
        common.write_markdown(
            out_path,
            title="Causal depthwise conv 1-D: prefill and decode",
            command=common.command_line("benchmarks.causal"),
            env=env,
            sections=[("Results", note + "\n\n" + common.markdown_table(headers, body))],
        )
        common.log(f"wrote {out_path}")


if __name__ == "__main__":
    main()
