"""``ufm check``: solve a UFM instance and hold it against the closed form.

Exit status: 0 when the solver agrees with the closed form within ``--tol``, 1 when it does not,
2 for bad arguments or a bad ``--targets`` file. Every option is checked before any work
(:func:`check_arguments`): a bad value is a message naming the option, never a traceback and
never a solve that runs first and fails later.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from typing import NamedTuple

import numpy as np

from .._validate import check_memory
from . import _deep, _problems, _solver_flags
from ._cache import enable_compilation_cache
from ._problems import bias_option, default_targets, load_targets
from ._programs import ProgramStore

__all__ = ["check", "check_arguments", "default_targets", "load_targets", "register"]

DEFAULTS = {"n": 3, "d": 32, "M": 1000, "lambda_H": 0.1, "lambda_W": 0.1, "seed": 0}
TOL = {"float64": 1e-6, "float32": 1e-4}


def register(sub) -> None:
    """Add the ``check`` sub-command to the ``ufm`` parser's sub-parsers."""
    c = sub.add_parser(
        "check",
        help="solve a UFM and compare it with the closed form",
        description=(
            "Solve a UFM (default: a regression instance with a random covariance and a fixed "
            "seed) and print the closed form against the numerical solution. Exits 1 on "
            "disagreement."
        ),
    )
    c.add_argument(
        "--problem",
        choices=("regression", "mse", "ce", "deep"),
        default="regression",
        help="regression (default), classification with MSE or cross-entropy loss, or the "
        "deep / extended UFM (one-hot targets; --widths, --activation, --restarts)",
    )
    c.add_argument("--all", action="store_true", help="run every problem kind and bias mode")
    _deep.add_arguments(c)
    c.add_argument(
        "--no-cache",
        action="store_true",
        dest="no_cache",
        help="do not use JAX's persistent compilation cache (also: UFM_NO_COMPILE_CACHE=1)",
    )
    c.add_argument("--n", type=int, default=DEFAULTS["n"], help="regression target dimension (3)")
    c.add_argument("--M", type=int, default=DEFAULTS["M"], help="regression samples (1000)")
    _problems.add_class_arguments(c)
    c.add_argument("--d", type=int, default=None, help="feature dimension (32; K + 4 for classes)")
    c.add_argument(
        "--lambda-H",
        type=float,
        default=None,
        dest="lambda_H",
        help="default 0.1 (regression), 5e-3 (classification)",
    )
    c.add_argument(
        "--lambda-W",
        type=float,
        default=None,
        dest="lambda_W",
        help="default 0.1 (regression), 5e-3 (classification)",
    )
    c.add_argument("--no-bias", action="store_true", help="regression model without the bias b")
    c.add_argument(
        "--bias",
        default="free",
        help="classification bias: none | free (default) | lambda_b (a number)",
    )
    _solver_flags.add_arguments(
        c, "exact (default for MSE) | lbfgs (default for CE) | gd | momentum | adam"
    )
    c.add_argument("--max-steps", type=int, default=None, dest="max_steps")
    c.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="data and init seed")
    c.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    c.add_argument("--targets", default=None, help="regression targets from a .npy file (M, n)")
    c.add_argument(
        "--tol", type=float, default=None, help="pass threshold (default 1e-6; 1e-4 in float32)"
    )
    c.set_defaults(run=check)


def _positive(args, attr: str, option: str, why: str = "") -> None:
    v = getattr(args, attr)
    if v is not None and not (math.isfinite(v) and v > 0):
        raise ValueError(f"{option} must be a finite number > 0{why}, got {v}")


def _at_least(args, attr: str, option: str, minimum: int) -> None:
    v = getattr(args, attr)
    if v is not None and v < minimum:
        raise ValueError(f"{option} must be an int >= {minimum}, got {v}")


def check_arguments(args) -> None:
    """Every option's value, before any work (exit 2 with a message naming the option)."""
    classification = args.all or args.problem != "regression"
    regression = args.all or args.problem == "regression"
    if args.problem == "regression" and not args.all and args.bias != "free":
        raise ValueError("--bias applies to --problem mse|ce; use --no-bias for regression")
    if args.problem != "regression" and args.no_bias:
        raise ValueError("--no-bias applies to regression; use --bias none for classification")
    if args.problem != "regression" and args.targets is not None:
        raise ValueError("--targets applies to regression; classification uses --classes")
    if args.class_sizes is not None and (args.all or args.problem not in ("mse", "ce")):
        raise ValueError("--class-sizes applies to --problem mse|ce (not --all)")
    _problems.resolve_classes(args)
    if not 0 <= args.seed < 2**32:
        raise ValueError(f"--seed must be an int in [0, 2**32), got {args.seed}")
    _positive(args, "tol", "--tol")
    why = " (the closed form and the exact solver need lambdas > 0)"
    _positive(args, "lambda_H", "--lambda-H", why)
    _positive(args, "lambda_W", "--lambda-W", why)
    _positive(args, "lr", "--lr")
    for attr, option in (("lambda_H", "--lambda-H"), ("lambda_W", "--lambda-W")):
        v = getattr(args, attr)
        with np.errstate(over="ignore", under="ignore"):
            stored = None if v is None else float(np.asarray(v, args.dtype))
        if stored in (0.0, math.inf):
            raise ValueError(f"{option} = {v:g} is not representable in {args.dtype}")
    _at_least(args, "max_steps", "--max-steps", 0)
    _at_least(args, "d", "--d", 1)
    if regression and args.targets is None:
        _at_least(args, "n", "--n", 1)
        _at_least(args, "M", "--M", 2)
        d = 32 if args.d is None else args.d
        check_memory(
            [(args.M, args.n), (args.M, d)],
            args.dtype,
            f"--M {args.M}, --n {args.n}, --d {d} are too large: the targets (M, n) and the "
            "features H (M, d)",
        )
    if classification:
        K, N = args.classes, sum(args.sizes)
        d = K + 4 if args.d is None else args.d
        given = (
            f"--class-sizes {args.class_sizes}"
            if args.class_sizes is not None
            else f"--classes {K}, --per-class {args.per_class}"
        )
        check_memory(
            [(N, d), (N, K)],
            args.dtype,
            f"{given}, --d {d} are too large: the features H (N, d) and the one-hot targets "
            f"(N, K) for N = {N}",
        )
    if not args.all and args.problem not in ("regression", "deep"):
        bias_option(args.bias)
    if args.all or args.problem == "deep":
        widths = _problems.parse_widths(args.widths)
        _at_least(args, "restarts", "--restarts", 1)
        N = sum(args.sizes)
        check_memory(
            [(args.restarts * N, widths[0])],
            args.dtype,
            f"--widths {args.widths} with --restarts {args.restarts} is too large for N = {N}",
        )
    _solver_flags.solver(args.solver, args.lr, args.check_every)


def _regression(args):
    lH = DEFAULTS["lambda_H"] if args.lambda_H is None else args.lambda_H
    lW = DEFAULTS["lambda_W"] if args.lambda_W is None else args.lambda_W
    problem, desc = _problems.regression(args, lH, lW)
    eig = ", ".join(f"{v:.4g}" for v in _sigma_eigenvalues(problem))
    note = f"  eigenvalues of Sigma: [{eig}], c = lambda_H lambda_W = {lH * lW:.4g}"
    return Run(problem, desc, note, None, "")


def _classification(args, loss, bias):
    lH = 5e-3 if args.lambda_H is None else args.lambda_H
    lW = 5e-3 if args.lambda_W is None else args.lambda_W
    problem, desc = _problems.classification(args, loss, bias, lH, lW)
    options = "--problem mse|ce"
    if args.class_sizes is not None:
        options += " with --class-sizes"
    if args.label_smoothing:
        options += " with --label-smoothing"
    return Run(problem, desc, None, None, options)


def _deep_run(args):
    problem, desc = _deep.deep_problem(args)
    return Run(problem, desc, None, args.restarts, _problems.DEEP_MODEL_OPTIONS)


class Run(NamedTuple):
    """One problem to check: its description, a note printed after the solve, the restarts
    (``None``: one start) and the options that chose its model (for a refusal)."""

    problem: object
    desc: str
    note: str | None
    restarts: int | None
    options: str


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001 - the same call in the main thread reports it
        pass


def _sigma_eigenvalues(problem) -> np.ndarray:
    """Eigenvalues of ``Sigma = Yc^T Yc / M`` (``Yc`` centred when the model has a bias),
    descending and clipped at 0, in numpy (for the printout: no JAX program to compile)."""
    Y = np.asarray(problem.targets, dtype=np.float64)
    Yc = Y - Y.mean(axis=0) if problem.bias else Y
    ev = np.linalg.eigvalsh(Yc.T @ Yc / Y.shape[0])[::-1]
    return np.maximum(ev, 0.0)


@functools.cache
def _solve_program():
    """``ufm.solve`` as one jitted program of ``(problem, seed)`` (the solver's options static),
    for :class:`ProgramStore`."""
    import jax

    import ufm

    def solve(problem, seed, solver, lr, check_every, max_steps, restarts):
        key = jax.random.PRNGKey(seed)
        tx = _solver_flags.solver(solver, lr, check_every)
        return ufm.solve(problem, tx, key=key, max_steps=max_steps, restarts=restarts)

    return jax.jit(solve, static_argnums=(2, 3, 4, 5, 6))


def _prepare_comparison(store, problem) -> None:
    """Compile (or load) the comparison's program ahead, in a thread."""
    from theory._compare import plan_ahead

    p = plan_ahead(problem)
    if p is not None:
        store.compiled("compare", p.program, p.args, p.static, quick=True)


def _compare(store, sol, problem):
    """``theory.compare(sol, problem)``, its program run by ``store``."""
    import jax

    import theory
    from theory._compare import plan

    p = plan(problem, sol.params)
    if p is None:
        return theory.compare(sol, problem)
    numbers = store.run("compare", p.program, p.args, p.static, quick=True)
    return p.finish(jax.device_get(numbers), sol)


def _run(run: Run, args, store) -> int:
    import jax

    from ufm._solvers import resolve_solver

    problem, desc, restarts = run.problem, run.desc, run.restarts

    solver = _solver_flags.solver(args.solver, args.lr, args.check_every)
    # ufm.solve's own checks of the solver against the problem, here: inside the compiled
    # program below the lambdas are traced and those checks cannot see them.
    resolve_solver(solver, problem).check(problem)
    tol = TOL[args.dtype] if args.tol is None else args.tol
    name = args.solver or ("exact" if problem.exact_data() is not None else "lbfgs")
    print(f"ufm check: {desc}, solver = {name}")
    # The comparison's program is compiled (or loaded) in a second thread while the solver's
    # is (2 cores: most of one compilation hidden), started once the solver's program is
    # traced. Any failure there is left to the comparison below to report.
    # Not a daemon: an interpreter that shut down while it compiles would abort.
    warm = threading.Thread(target=_quietly, args=(_prepare_comparison, store, problem))
    t0 = time.perf_counter()
    # One program (solve with the options static), loaded from disk when warm; the exact
    # solver passes over the data a few times only: compiled quickly (_programs.QUICK).
    static = (args.solver, args.lr, args.check_every, args.max_steps, restarts)
    inputs = (problem, np.uint32(args.seed))
    quick = name == "exact"
    sol = store.run("solve", _solve_program(), inputs, static, quick=quick, lowered=warm.start)
    jax.block_until_ready(sol)
    elapsed = time.perf_counter() - t0
    warm.join()
    cmp = _compare(store, sol, problem)
    if run.note:
        print(run.note)
    print(
        f"  solver: {int(sol.num_steps)} steps, {elapsed:.2f} s (including compiling or loading it)"
    )
    if restarts is not None:
        rate = float(sol.restarts.stationary_rate)
        print(f"  restarts: {rate:.0%} ended successful (stationary); best loss kept")
    print()
    print(cmp.table(tol))
    ok = cmp.passed(tol)
    print(
        f"\nPASS: theory and solver agree within {tol:g}\n"
        if ok
        else f"\nFAIL: theory and solver disagree beyond {tol:g} "
        f"({sol.message if cmp.status != 'successful' else 'see the table'})\n"
    )
    return 0 if ok else 1


def check(args) -> int:
    import jax

    check_arguments(args)
    cache = enable_compilation_cache(off=args.no_cache)
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    store = ProgramStore(cache)  # first: its set-up thread overlaps the imports below
    if args.all:
        runs = [_regression(args)]
        for loss in ("mse", "ce"):
            for bias in ("none", "free", 1.0):
                runs.append(_classification(args, loss, bias))
        runs.append(_deep_run(args))
    elif args.problem == "regression":
        runs = [_regression(args)]
    elif args.problem == "deep":
        runs = [_deep_run(args)]
    else:
        runs = [_classification(args, args.problem, bias_option(args.bias))]
    for run in runs:  # before any work: a problem theory predicts nothing for is refused
        _problems.require_closed_form(run.problem, run.options)
    codes = [_run(run, args, store) for run in runs]
    if len(codes) > 1:
        print(f"ufm check --all: {codes.count(0)} of {len(codes)} problem kinds pass")
    return max(codes)
