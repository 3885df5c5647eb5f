"""``ufm check --problem deep``: a deep / extended UFM on balanced one-hot targets."""

from __future__ import annotations

from ._problems import deep, parse_widths

__all__ = ["DEFAULT_WIDTHS", "add_arguments", "deep_problem", "parse_widths"]

DEFAULT_WIDTHS = "8,8"


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


def deep_problem(args):
    """The deep UFM of ``args`` (balanced one-hot targets; lambdas as for classification)."""
    widths = parse_widths(args.widths)
    if args.restarts < 1:
        raise ValueError(f"--restarts must be >= 1, got {args.restarts}")
    lH = 5e-3 if args.lambda_H is None else args.lambda_H
    lW = 5e-3 if args.lambda_W is None else args.lambda_W
    problem, desc = deep(args, widths, lH, lW, one_hot=True)
    return problem, f"{desc}, best of {args.restarts} restarts"
