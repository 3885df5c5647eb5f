"""``ufm check --problem deep``: a deep / extended UFM on balanced one-hot targets."""

from __future__ import annotations

import numpy as np

DEFAULT_WIDTHS = "8,8"


def parse_widths(text: str) -> tuple[int, ...]:
    """``"8,8"`` -> ``(8, 8)``; a clear error naming ``--widths`` otherwise."""
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise ValueError(f"--widths must be a comma list of ints >= 1, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise ValueError(f"--widths must be a comma list of ints >= 1, got {text!r}")
    return widths


def add_arguments(c) -> None:
    c.add_argument(
        "--widths",
        default=DEFAULT_WIDTHS,
        help=f"deep: layer widths d_1,...,d_L (default {DEFAULT_WIDTHS}: the extended UFM)",
    )
    c.add_argument(
        "--activation", choices=("relu", "linear"), default="relu", help="deep: activation"
    )
    c.add_argument("--restarts", type=int, default=8, help="deep: random restarts (default 8)")


def deep_problem(args, ufm):
    """The deep UFM of ``args`` (balanced one-hot targets; lambdas as for classification)."""
    widths = parse_widths(args.widths)
    if args.restarts < 1:
        raise ValueError(f"--restarts must be >= 1, got {args.restarts}")
    K, n = args.classes, args.per_class
    lH = 5e-3 if args.lambda_H is None else args.lambda_H
    lW = 5e-3 if args.lambda_W is None else args.lambda_W
    labels = np.repeat(np.arange(K), n)
    problem = ufm.DeepUFM.from_labels(
        labels, K, lH, lW, widths, activation=args.activation, dtype=args.dtype
    )
    desc = (
        f"deep UFM, widths = {widths}, activation = {args.activation}, K = {K} balanced classes "
        f"of n = {n}\n  lambda_H = {lH:g}, lambda_W = {lW:g} (every layer), "
        f"best of {args.restarts} restarts, {args.dtype}"
    )
    return problem, desc
