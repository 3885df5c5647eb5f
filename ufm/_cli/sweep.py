"""``ufm sweep``: a phase diagram over (lambda_H, lambda_W), resumable, with an optional plot.

Exit status: 0 when the sweep completed (whatever the points' statuses: they are data, in the
``status`` column), 2 for bad arguments, a results file of another sweep or an unwritable path.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from . import _problems, _solver_flags
from ._cache import ENV_OFF, enable_compilation_cache

DEFAULT_LAMBDA = {"regression": 0.1, "mse": 5e-3, "ce": 5e-3, "deep": 5e-3}


def parse_values(text: str, option: str) -> np.ndarray:
    """``LO:HI:NUM`` (NUM log-spaced values from LO to HI inclusive) or a comma list."""
    text = text.strip()
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise ValueError(f"{option} {text!r}: write LO:HI:NUM, e.g. 1e-4:1e-1:30")
        try:
            lo, hi = float(parts[0]), float(parts[1])
            num = int(parts[2])
        except ValueError:
            raise ValueError(
                f"{option} {text!r}: LO and HI must be numbers and NUM an integer"
            ) from None
        if lo > hi:
            raise ValueError(
                f"{option} {text!r}: reversed range (LO = {lo:g} > HI = {hi:g}); LO:HI:NUM "
                "runs from the smaller value to the larger"
            )
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0:
            raise ValueError(
                f"{option} {text!r}: LO:HI:NUM is log-spaced, so LO and HI must be finite and > 0"
            )
        if num < 1:
            raise ValueError(f"{option} {text!r}: NUM must be >= 1, got {num}")
        if (num == 1) != (lo == hi):
            raise ValueError(
                f"{option} {text!r}: NUM = 1 needs LO = HI and LO = HI needs NUM = 1 "
                "(the values must be distinct)"
            )
        return np.geomspace(lo, hi, num)
    try:
        values = np.asarray([float(t) for t in text.split(",")], dtype=np.float64)
    except ValueError:
        raise ValueError(
            f"{option} {text!r}: give LO:HI:NUM or a comma list of numbers, e.g. 0.01,0.1"
        ) from None
    return values


def register(sub) -> None:
    """Add the ``sweep`` sub-command to the ``ufm`` parser's sub-parsers."""
    c = sub.add_parser(
        "sweep",
        help="solve a UFM over a (lambda_H, lambda_W) grid: a resumable phase diagram",
        description=(
            "Solve a UFM at every point of a grid of lambdas (x seeds) in vmapped chunks and "
            "append one CSV row per point to --out, with the closed form beside the solver's "
            "answer. Rerun the same command to resume after an interruption."
        ),
    )
    c.add_argument("--problem", choices=("regression", "mse", "ce", "deep"), default="regression")
    c.add_argument("--n", type=int, default=3, help="regression target dimension (3)")
    c.add_argument("--M", type=int, default=1000, help="regression samples (1000)")
    _problems.add_class_arguments(c, smoothing_values=True)
    c.add_argument("--d", type=int, default=None, help="feature dimension (32; K + 4 for classes)")
    c.add_argument(
        "--widths", default=None, help="deep (no bias): widths d_1,...,d_L (default d,d)"
    )
    c.add_argument("--activation", choices=("linear", "relu"), default="linear", help="deep")
    c.add_argument(
        "--labels", action="store_true", help="deep: one-hot targets of balanced classes"
    )
    c.add_argument("--no-bias", action="store_true", help="regression: no bias b")
    c.add_argument("--bias", default="free", help="classification: none | free | lambda_b")
    c.add_argument("--targets", default=None, help="regression/deep targets from a .npy file")
    for name, flag in (("lambda_H", "--lambda-H"), ("lambda_W", "--lambda-W")):
        c.add_argument(
            flag,
            dest=name,
            default=None,
            help="LO:HI:NUM (NUM log-spaced values, inclusive) or a comma list",
        )
    c.add_argument("--lambda-b", dest="lambda_b", default=None, help="classification, reg. bias")
    c.add_argument(
        "--imbalance-ratio",
        dest="imbalance_ratio",
        default=None,
        help="classification with --class-sizes of two sizes (K_A classes of n_A, K_B of a "
        "smaller n_B): sweep R = n_A / n_B (n_B = n_A / R, a whole number); a comma list or "
        "LO:HI:NUM",
    )
    c.add_argument("--seeds", type=int, default=1, help="init seeds 0..S-1 per point (1)")
    c.add_argument("--seed", type=int, default=0, help="data seed (0)")
    c.add_argument("--restarts", type=int, default=None, help="best of R random inits")
    _solver_flags.add_arguments(c, "exact | lbfgs | gd | momentum | adam")
    c.add_argument("--max-steps", type=int, default=None, dest="max_steps")
    c.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    c.add_argument("--chunk-size", type=int, default=None, dest="chunk_size")
    c.add_argument("--out", required=True, help="results CSV (appended to; resumable)")
    c.add_argument(
        "--plot",
        default=None,
        help="write the phase diagram to this PNG (with --imbalance-ratio: minority collapse, "
        "the ratio against sqrt(lambda_H lambda_W))",
    )
    c.add_argument("--quiet", action="store_true", help="no progress on stderr")
    c.add_argument(
        "--no-reduction",
        action="store_true",
        dest="no_reduction",
        help="classification with L-BFGS: solve all N feature rows, not the K class means "
        "(ufm.sweep's reduction=False; slower, same optima, nc1 measured)",
    )
    c.add_argument(
        "--no-cache",
        action="store_true",
        dest="no_cache",
        help=f"no persistent compilation cache (also {ENV_OFF}=1)",
    )
    c.set_defaults(run=run)


def build_problem(args, lam: float):
    """The problem of the arguments, every lambda set to ``lam`` (the grid replaces them)."""
    kind = args.problem
    _check_class_options(args)
    _problems.resolve_classes(args)
    if kind != "regression" and args.no_bias:
        raise ValueError("--no-bias applies to regression (deep UFMs here have no bias)")
    if kind in ("mse", "ce") and args.targets is not None:
        raise ValueError("--targets applies to regression and deep; classification uses --classes")
    if args.lambda_b is not None and (
        kind not in ("mse", "ce") or _problems.bias_option(args.bias) in _MODES
    ):
        raise ValueError("--lambda-b needs --problem mse|ce with --bias set to a number")
    if kind == "regression":
        return _problems.regression(args, lam, lam)[0]
    if kind in ("mse", "ce"):
        return _problems.classification(args, kind, _problems.bias_option(args.bias), lam, lam)[0]
    d = 16 if args.d is None else args.d
    widths = (d, d) if args.widths is None else _problems.parse_widths(args.widths)
    return _problems.deep(args, widths, lam, lam, one_hot=args.labels)[0]


_MODES = ("none", "free")


def _check_class_options(args) -> None:
    if args.problem not in ("mse", "ce") and (
        args.class_sizes is not None or args.imbalance_ratio is not None
    ):
        raise ValueError("--class-sizes and --imbalance-ratio apply to --problem mse|ce")


def run(args) -> int:
    import jax

    _check_class_options(args)
    grid = {}
    for name, flag in (("lambda_H", "--lambda-H"), ("lambda_W", "--lambda-W")):
        if getattr(args, name) is not None:
            grid[name] = parse_values(getattr(args, name), flag)
    if args.lambda_b is not None:
        grid["lambda_b"] = parse_values(args.lambda_b, "--lambda-b")
    if args.label_smoothing is not None:
        grid["label_smoothing"] = _smoothing(args.label_smoothing)
    if args.imbalance_ratio is not None:
        grid["imbalance_ratio"] = parse_values(args.imbalance_ratio, "--imbalance-ratio")
        _check_ratios(grid["imbalance_ratio"], args.class_sizes)
    if not grid.keys() - {"imbalance_ratio"}:
        raise ValueError(
            "give at least one of --lambda-H, --lambda-W, --label-smoothing (LO:HI:NUM or a list)"
        )
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError("--plot needs matplotlib: pip install 'ufm[plot]'") from None
        if "imbalance_ratio" in grid:
            if "lambda_H" not in grid and "lambda_W" not in grid:
                raise ValueError("--plot with --imbalance-ratio needs --lambda-H or --lambda-W")
            sizes = _problems.parse_class_sizes(args.class_sizes)
            if sizes.count(min(sizes)) < 2:
                raise ValueError(
                    "--plot with --imbalance-ratio needs at least two minority classes in "
                    f"--class-sizes (the diagram shows their cosine), got {args.class_sizes!r}"
                )
        elif "lambda_H" not in grid or "lambda_W" not in grid:
            raise ValueError("--plot needs both --lambda-H and --lambda-W")
    enable_compilation_cache(args.no_cache)
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import ufm

    problem = build_problem(args, DEFAULT_LAMBDA[args.problem])
    solver = _solver_flags.solver(args.solver, args.lr, args.check_every)
    table = ufm.sweep(
        problem,
        grid,
        seeds=args.seeds,
        solver=solver,
        chunk_size=args.chunk_size,
        out=args.out,
        progress=not args.quiet,
        restarts=args.restarts,
        max_steps=args.max_steps,
        reduction=False if args.no_reduction else None,
    )
    _summary(table, args.out)
    if args.plot is not None:
        from ufm import plot

        if "imbalance_ratio" in grid:
            plot.minority_collapse_diagram(table, args.plot)
        else:
            plot.phase_diagram(table, args.plot)
        print(f"phase diagram: {args.plot}")
    return 0


def _smoothing(text: str) -> np.ndarray:
    """``--label-smoothing``'s values: a comma list (or ``LO:HI:NUM``) in ``[0, 1)``."""
    values = parse_values(text, "--label-smoothing")
    bad = values[~(np.isfinite(values) & (values >= 0) & (values < 1))]
    if bad.size:
        raise ValueError(f"--label-smoothing values must be in [0, 1), got {bad.tolist()}")
    return values


def _check_ratios(values: np.ndarray, class_sizes) -> None:
    """``--imbalance-ratio`` needs ``--class-sizes`` of two sizes, and ratios ``>= 1`` that give
    a whole minority size (the sweep's own check, with the option's name)."""
    if class_sizes is None:
        raise ValueError(
            "--imbalance-ratio needs --class-sizes with two sizes (K_A classes of n_A, K_B "
            "classes of a smaller n_B), e.g. --class-sizes 100,100,10,10"
        )
    sizes = _problems.parse_class_sizes(class_sizes)
    if len(set(sizes)) != 2:
        raise ValueError(
            f"--imbalance-ratio needs --class-sizes with exactly two distinct sizes (a "
            f"two-level step), got {class_sizes!r}"
        )
    n_A = max(sizes)
    for r in values:
        n_B = n_A / r if r >= 1 else 0.0
        if round(n_B) < 1 or abs(n_B - round(n_B)) > 1e-9 * max(n_B, 1):
            raise ValueError(
                f"--imbalance-ratio {r:g}: R must be >= 1 with n_B = n_A / R a whole number "
                f"(n_A = {n_A}, the larger size of --class-sizes)"
            )


def _summary(table, out) -> None:
    status = table["status"]
    names, counts = np.unique(status, return_counts=True)
    parts = ", ".join(f"{c} {n}" for n, c in zip(names, counts, strict=True))
    print(f"ufm sweep: {len(table)} points in {out}: {parts}")
    gap = np.abs(table["loss_gap"])
    if np.any(np.isfinite(gap)):
        agree = table["rank"] == table["rank_theory"]
        known = table["rank_theory"] >= 0
        print(
            f"  closed form: max |loss gap| = {np.nanmax(gap):.2e}; collapse rank agrees at "
            f"{int(np.sum(agree & known))} of {int(np.sum(known))} points"
        )
    why = table.meta.get("nan_columns", {}).get("loss_theory")
    if why:
        print(f"  closed form: none ({why})")
    for name, reason in table.meta.get("nan_columns", {}).items():
        if name not in ("loss_theory", "loss_gap", "rank_theory") and not why:
            print(f"  {name}: NaN, {reason}")
    sys.stdout.flush()
