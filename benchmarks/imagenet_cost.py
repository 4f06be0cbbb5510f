"""ImageNet nets: params and MACs against the published figures, and folded-BN inference time.

Params and MACs from `sepconv_jax.cost.model_cost` (shapes only) at each net's default input
size, beside the papers' figures. Then CPU/GPU inference time of each net and of its
`interop.fold_batchnorm` version, side by side in the same run, batch 1:

    python -m benchmarks.imagenet_cost          # writes benchmarks/results/imagenet_cost.md
    python -m benchmarks.imagenet_cost --quick --out /tmp/imagenet_cost.md
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

if __package__ in (None, ""):  # `python benchmarks/imagenet_cost.py`: make the repo importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks import common  # noqa: E402
from sepconv_jax import cost, models  # noqa: E402
from sepconv_jax.interop import fold_batchnorm  # noqa: E402

#: Registry name → (input size, published params, published MACs, source).
PUBLISHED: dict[str, tuple[int, float | None, float | None, str]] = {
    "mobilenet_v2_imagenet": (224, 3.5e6, 300e6, "Sandler et al. 2018 (Keras docs: 3.5 M)"),
    "mobilenet_v3_small": (224, 2.5e6, 56e6, "Howard et al. 2019, Table 4"),
    "mobilenet_v3_large": (224, 5.4e6, 219e6, "Howard et al. 2019, Table 3"),
    "efficientnet_b0": (224, 5.3e6, 390e6, "Tan & Le 2019, Table 2"),
    "efficientnet_b1": (240, 7.8e6, 700e6, "Tan & Le 2019, Table 2"),
    "efficientnet_b2": (260, 9.2e6, 1.0e9, "Tan & Le 2019, Table 2"),
    "efficientnet_b3": (300, 12e6, 1.8e9, "Tan & Le 2019, Table 2"),
    "convnext_tiny": (224, 28.6e6, 4.5e9, "Liu et al. 2022, Table 1"),
}
QUICK_COST = ("mobilenet_v3_small",)
TIMED = ("mobilenet_v2_imagenet", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0")
QUICK_TIMED = ("mobilenet_v2_tiny",)


def _delta(ours: int, published: float | None) -> str:
    return "—" if published is None else f"{100 * (ours / published - 1):+.1f} %"


def cost_rows(names: Sequence[str]) -> list[list[str]]:
    rows = []
    for name in names:
        size, params, macs, source = PUBLISHED[name]
        c = cost.model_cost(models.create(name), (1, size, size, 3))
        rows.append(
            [
                name,
                f"{size}",
                f"{c.params:,}",
                f"{params / 1e6:.1f} M",
                _delta(c.params, params),
                f"{c.macs / 1e6:,.1f} M",
                f"{macs / 1e6:,.0f} M",
                _delta(c.macs, macs),
                source,
            ]
        )
        common.log(f"cost {name}")
    return rows


def fold_rows(
    names: Sequence[str], size: int, batch: int, budget_s: float = 5.0
) -> list[list[str]]:
    rows = []
    for name in names:
        model = models.create(name, implementation="auto")
        x = jax.random.normal(jax.random.key(0), (batch, size, size, 3))
        variables = jax.jit(lambda x, m=model: m.init(jax.random.key(1), x, train=False))(x)
        folded, folded_vars = fold_batchnorm(model, variables, input_shape=(1, size, size, 3))
        times = []
        for m, v in ((model, variables), (folded, folded_vars)):
            times.append(
                common.time_jax(
                    lambda x, m=m, v=v: m.apply(v, x, train=False),
                    [(x,)],
                    budget_s=budget_s,
                    min_samples=10,
                    max_samples=200,
                )
            )
        y = jax.jit(model.apply, static_argnames="train")(variables, x, train=False)
        y_f = jax.jit(folded.apply, static_argnames="train")(folded_vars, x, train=False)
        err = float(jnp.abs(y - y_f).max() / jnp.abs(y).max())
        t, tf = times
        rows.append(
            [
                name,
                f"{len(folded.norms)}",
                f"{t.median_ms:.2f} (±{t.spread_pct:.0f} %)",
                f"{tf.median_ms:.2f} (±{tf.spread_pct:.0f} %)",
                f"{t.median_ms / tf.median_ms:.2f}×",
                f"{err:.1e}",
            ]
        )
        common.log(f"fold {name}")
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one net of each table (CI)")
    parser.add_argument("--out", default=None, help="markdown path (default results/...)")
    args = parser.parse_args(argv)
    if args.out is None and not args.quick:
        args.out = str(common.RESULTS_DIR / "imagenet_cost.md")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    t0 = time.perf_counter()
    load_start = os.getloadavg()[0]
    size, batch = (32, 1) if args.quick else (224, 1)
    costs = cost_rows(QUICK_COST if args.quick else tuple(PUBLISHED))
    folds = fold_rows(QUICK_TIMED if args.quick else TIMED, size, batch)
    cost_headers = ["net", "input", "params", "published", "Δ", "MACs", "published", "Δ", "source"]
    fold_headers = [
        "net",
        "BNs folded",
        "ms unfolded",
        "ms folded",
        "speed-up",
        "max |Δ| / max |y|",
    ]
    cost_legend = (
        "Batch 1, float32, NHWC, 1000 classes, `sepconv_jax.cost.model_cost` (shapes only). "
        "Params: the `params` collection (BatchNorm running statistics are not parameters; "
        "Keras's `count_params()` counts them, e.g. 3,538,984 for MobileNetV2 1.0). MACs: every "
        "multiply-add of the convolutions and dense layers, each window tap counted (also those "
        "on zero padding, the papers' convention; `count_padding=False` gives XLA's), "
        "squeeze-excite included; BatchNorm, activations, pooling, LayerNorm and the "
        "preprocessing are not counted. Padding convention `tf` (TensorFlow SAME). Outside "
        "±1 % params: MobileNetV3-small/large (2,542,856 and 5,483,032 are also torchvision's "
        "counts of the same nets; the papers print 2.5 M and 5.4 M) and EfficientNet-B3 (the "
        "paper prints 12 M)."
    )
    fold_legend = (
        f"Inference forward, batch {batch}, {size}×{size}×3, float32, `implementation='auto'`, "
        "median of timed calls after compilation (± interquartile range over the median), "
        "`benchmarks.common.time_jax`. `folded` = `sepconv_jax.interop.fold_batchnorm` of the "
        "same net and variables: each BatchNorm after a conv is folded into that conv's kernel "
        "and bias. The last column is the largest difference of the outputs relative to the "
        "largest output (random init). A speed-up smaller than the spreads is not resolved by "
        "the run (a shared CPU: see the load average above)."
    )
    env = common.environment()
    env.append(("wall time", f"{time.perf_counter() - t0:.0f} s"))
    env.append(
        ("load average (1 min), start / end", f"{load_start:.1f} / {os.getloadavg()[0]:.1f}")
    )
    print(common.text_table(cost_headers, costs))
    print(common.text_table(fold_headers, folds))
    if args.out:
        path = common.write_markdown(
            args.out,
            title="sepconv_jax ImageNet nets: cost against published figures, folded BatchNorm",
            command=common.command_line("benchmarks.imagenet_cost"),
            env=env,
            sections=[
                (
                    "Params and MACs",
                    cost_legend + "\n\n" + common.markdown_table(cost_headers, costs),
                ),
                (
                    "Inference with BatchNorm folded",
                    fold_legend + "\n\n" + common.markdown_table(fold_headers, folds),
                ),
            ],
        )
        common.log(f"wrote {path}")


if __name__ == "__main__":
    main()
