"""``ufm check``: solve a UFM instance and hold it against the closed form.

Exit status: 0 when the solver agrees with the closed form within ``--tol``, 1 when it does not,
2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

DEFAULTS = {"n": 3, "d": 32, "M": 1000, "lambda_H": 0.1, "lambda_W": 0.1, "seed": 0}
TOL = {"float64": 1e-6, "float32": 1e-4}


def default_targets(n: int, M: int, seed: int) -> np.ndarray:
    """The built-in instance: ``Y = Z A^T + mu`` with ``Z ~ N(0, I)``, ``A ~ N(0, 1/n)``
    (a random covariance ``A A^T``) and ``mu ~ N(0, 1)``, from ``numpy`` with ``seed``."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n)) / np.sqrt(n)
    mu = rng.normal(size=n)
    return rng.normal(size=(M, n)) @ A.T + mu


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ufm", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser(
        "check",
        help="solve a regression UFM and compare it with the closed form",
        description=(
            "Solve a regression UFM (default: a built-in random instance with a fixed seed) and "
            "print the closed form against the numerical solution. Exits 1 on disagreement."
        ),
    )
    c.add_argument("--n", type=int, default=DEFAULTS["n"], help="target dimension (default 3)")
    c.add_argument("--d", type=int, default=DEFAULTS["d"], help="feature dimension (default 32)")
    c.add_argument("--M", type=int, default=DEFAULTS["M"], help="samples (default 1000)")
    c.add_argument("--lambda-H", type=float, default=DEFAULTS["lambda_H"], dest="lambda_H")
    c.add_argument("--lambda-W", type=float, default=DEFAULTS["lambda_W"], dest="lambda_W")
    c.add_argument("--no-bias", action="store_true", help="model without the bias b")
    c.add_argument(
        "--solver", default="exact", help="exact (default) | lbfgs | gd | momentum | adam"
    )
    c.add_argument("--lr", type=float, default=None, help="learning rate for gd/momentum/adam")
    c.add_argument("--max-steps", type=int, default=None, dest="max_steps")
    c.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="data and init seed")
    c.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    c.add_argument("--targets", default=None, help="use targets from a .npy file of shape (M, n)")
    c.add_argument(
        "--tol", type=float, default=None, help="pass threshold (default 1e-6; 1e-4 in float32)"
    )
    return p


def _solver(name: str, lr: float | None):
    import optax

    if name in ("exact", "lbfgs"):
        if lr is not None:
            raise ValueError(f"--lr applies to gd, momentum and adam, not to --solver {name}")
        return name
    makers = {
        "gd": lambda lr: optax.sgd(lr),
        "momentum": lambda lr: optax.sgd(lr, momentum=0.9),
        "adam": lambda lr: optax.adam(lr),
    }
    if name not in makers:
        raise ValueError(f"--solver must be one of exact, lbfgs, gd, momentum, adam; got {name!r}")
    return makers[name](0.1 if lr is None else lr)


def check(args) -> int:
    import jax

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import theory
    import ufm

    if args.targets is not None:
        try:
            Y = np.load(args.targets)
        except (OSError, ValueError) as err:
            raise ValueError(f"--targets: cannot read {args.targets!r} as .npy: {err}") from err
        source = f"targets from {args.targets}"
    else:
        for name in ("n", "M"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
        Y = default_targets(args.n, args.M, args.seed)
        source = f"built-in random instance (seed {args.seed})"
    Y = np.asarray(Y, dtype=args.dtype)
    solver = _solver(args.solver, args.lr)
    problem = ufm.RegressionUFM(Y, args.lambda_H, args.lambda_W, args.d, bias=not args.no_bias)
    tol = TOL[args.dtype] if args.tol is None else args.tol
    M, n = Y.shape
    print(
        f"ufm check: regression UFM, {source}\n"
        f"  M = {M}, n = {n}, d = {args.d}, lambda_H = {args.lambda_H:g}, "
        f"lambda_W = {args.lambda_W:g}, bias = {not args.no_bias}, {args.dtype}, "
        f"solver = {args.solver}"
    )
    t0 = time.perf_counter()
    sol = ufm.solve(problem, solver, key=jax.random.PRNGKey(args.seed), max_steps=args.max_steps)
    jax.block_until_ready(sol)
    elapsed = time.perf_counter() - t0
    cmp = theory.compare(sol, problem)
    opt = theory.regression.optimum_of(problem)
    eig = ", ".join(f"{v:.4g}" for v in np.asarray(opt.eigenvalues))
    print(f"  eigenvalues of Sigma: [{eig}], c = lambda_H lambda_W = {float(opt.c):.4g}")
    print(f"  solver: {int(sol.num_steps)} steps, {elapsed:.2f} s (including compilation)\n")
    print(cmp.table(tol))
    ok = cmp.passed(tol)
    print(
        f"\n{'PASS' if ok else 'FAIL'}: closed form and solver agree within {tol:g}"
        if ok
        else f"\nFAIL: closed form and solver disagree beyond {tol:g} "
        f"({sol.message if cmp.status != 'successful' else 'see the table'})"
    )
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return check(args)
    except (ValueError, TypeError) as err:
        parser.exit(2, f"ufm check: error: {err}\n")


if __name__ == "__main__":
    sys.exit(main())
