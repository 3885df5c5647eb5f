"""``ufm.solve``: one entry point for every problem and solver."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ._iterate import iterate
from ._linalg import full_precision
from ._solution import Restarts, Solution, Status, Trajectory
from ._solvers import resolve_solver
from ._validate import check_int, check_key, check_tolerance, is_concrete
from .problems._base import Problem

# Relative tolerance of the global-optimality certificate (ufm/_certificate.py).
_CERTIFICATE_RTOL = 1e-2
# Default (rtol, atol) of the scale-free stationarity test of ``ufm/_iterate.py``, by precision.
_DEFAULT_TOL = {8: (1e-10, 0.0), 4: (1e-5, 0.0)}
# Steps per window of the no-progress rule (``ufm/_iterate.py``) for problems that are not
# smooth (``problem.smooth`` is False); smooth problems run without it.
PROGRESS_WINDOW = 50


def _record_fn(problem, to_params, extra):
    def record(y, step):
        p = to_params(y)
        mets = dict(problem.trajectory_metrics(p))
        if extra is not None:
            mets.update(extra(p))
        return {"loss": problem.objective(p), "metrics": mets}

    return record


def _solve_one(problem, solver, key, init, rtol, atol, max_steps, record_every, record):
    fn, y0, to_params = solver.setup(problem, key, init)
    y, _, gnorm, steps, status, records = iterate(
        fn,
        solver.optimizer(),
        y0,
        max_steps=max_steps,
        rtol=rtol,
        atol=atol,
        reuse_linesearch_value=solver.reuse_linesearch_value,
        check_every=solver.check_every,
        record_every=record_every,
        record_fn=None if record_every is None else _record_fn(problem, to_params, record),
        progress_window=None if problem.smooth else PROGRESS_WINDOW,
    )
    traj = None
    if records is not None:
        rec_steps, vals = records
        traj = Trajectory(rec_steps, vals["loss"], vals["metrics"])
    return _finalize(problem, to_params(y), gnorm, steps, status, traj)


def _finalize(problem, params, gnorm, steps, status, traj=None) -> Solution:
    """The loss in the problem's variables and the final status (certificate, validity)."""
    loss = problem.objective(params)
    # The objective in the original variables can be non-finite where the solver's was not
    # (e.g. the exact solver's ridge recovery); never report success then.
    status = jnp.where(jnp.isfinite(loss), status, Status.nonfinite)
    # A stationary point is not enough: check global optimality where the problem has a test.
    viol, applicable = problem.certificate(params)
    status = jnp.where(
        (status == Status.successful) & applicable & (viol > _CERTIFICATE_RTOL),
        Status.saddle,
        status,
    )
    # Values that could not be checked while tracing (e.g. a negative lambda under vmap).
    status = jnp.where(problem.valid(), status, Status.invalid_input)
    return Solution(params, loss, gnorm, steps, status.astype(jnp.int32), traj)


# Staged solvers (the exact solver): the loop runs on a small summary of the data and is
# compiled on its own, so a new number of samples recompiles only the cheap set-up and recovery.
_prepare_jit = jax.jit(lambda solver, problem, key, init: solver.prepare(problem, key, init))


@functools.partial(jax.jit, static_argnames=("max_steps",))
def _loop_jit(solver, summary, y0, rtol, atol, max_steps):
    y, _, gnorm, steps, status, _ = iterate(
        functools.partial(solver.reduced_objective, summary=summary),
        solver.optimizer(),
        y0,
        max_steps=max_steps,
        rtol=rtol,
        atol=atol,
        reuse_linesearch_value=solver.reuse_linesearch_value,
    )
    return y, gnorm, steps, status


@jax.jit
def _finish_jit(solver, problem, summary, y, gnorm, steps, status):
    return _finalize(problem, solver.recover(problem, summary, y), gnorm, steps, status)


@functools.partial(jax.jit, static_argnames=("max_steps", "record_every", "record", "restarts"))
def _solve_jit(problem, solver, key, init, rtol, atol, max_steps, record_every, record, restarts):
    args = (rtol, atol, max_steps, record_every, record)
    if restarts is None:
        return _solve_one(problem, solver, key, init, *args)
    keys = jax.random.split(key, restarts)
    sols = jax.vmap(lambda k: _solve_one(problem, solver, k, None, *args))(keys)
    # The best finite loss; a non-finite or invalid run never wins over a finite one.
    ranked = jnp.where(
        jnp.isfinite(sols.loss) & (sols.status != Status.invalid_input), sols.loss, jnp.inf
    )
    best = jnp.argmin(ranked)
    pick = jax.tree_util.tree_map(lambda x: x[best], sols)
    spread = Restarts(sols.loss, sols.status, sols.num_steps, best.astype(jnp.int32))
    return pick._replace(restarts=spread)


@full_precision
def solve(
    problem: Problem,
    solver=None,
    *,
    key: jax.Array | None = None,
    init=None,
    max_steps: int | None = None,
    rtol=None,
    atol=None,
    record_every: int | None = None,
    record=None,
    restarts: int | None = None,
    throw: bool = False,
) -> Solution:
    """Minimise a UFM objective.

    Args:
        problem: a ufm problem (:class:`ufm.RegressionUFM`, :class:`ufm.ClassificationUFM`,
            :class:`ufm.DeepUFM`); batch with :func:`ufm.stack` and ``jax.vmap`` over this
            function.
        solver: ``None`` (the exact solver where the problem supports it and its lambdas are
            > 0, else L-BFGS), ``"exact"``, ``"lbfgs"``, any ``optax.GradientTransformation``
            (wrapped in :class:`ufm.OptaxSolver`, preconditioned) or a solver object
            (:class:`ufm.Exact`, :class:`ufm.LBFGS`, :class:`ufm.OptaxSolver`).
        key: PRNG key for the random initialisation (default ``jax.random.PRNGKey(0)``).
        init: the starting variables (``ufm.Params(H, W, b)`` or ``ufm.DeepParams(H, Ws, b)``);
            default: the problem's ``default_init(key)`` (the exact solver uses only ``W``).
        max_steps: step budget (default: the solver's ``default_max_steps``).
        rtol: the relative tolerance of the scale-free stopping test
            ``||g|| max(||y||, ||y_0||) <= atol + rtol min(|f|, |f_0|)`` on the solver's
            variables ``y`` and gradient ``g`` (``ufm/_iterate.py``); default ``1e-10`` in
            float64 and ``1e-5`` in float32.
        atol: the absolute tolerance of that test, in units of the objective (default 0; give
            one for problems whose optimal value is 0, e.g. zero regularisation).
        record_every: record the step, the loss and the problem's collapse metrics (NRC1-3
            for regression, NC1-4 for classification, layer-wise for deep problems) inside the
            jitted loop every this many steps (``Solution.trajectory``).
        record: optional ``fn(params) -> dict[str, scalar]`` of extra quantities to record
            with them (e.g. an error against a known optimum); static, compared by identity.
        restarts: solve this many random initialisations (keys split from ``key``) in one
            compiled, vmapped call and return the one with the lowest finite loss;
            ``Solution.restarts`` holds every restart's loss and status. Needs ``init=None``.
        throw: raise ``RuntimeError`` with the status message unless the solve succeeded
            (concrete, unbatched calls only).

    Returns:
        A :class:`ufm.Solution`. Statuses are values, never exceptions (unless ``throw``), so a
        vmapped sweep reports one status per instance.

    The function is jitted with ``max_steps``, ``record_every`` and ``restarts`` static (and
    the solver's static settings): new lambdas, targets of the same shape, keys, tolerances or
    an :class:`ufm.OptaxSolver` factory's hyperparameters never recompile. A successful solve
    is also checked for global optimality where the problem has a certificate (the one-layer
    UFMs, ``ufm/_certificate.py``; status ``saddle`` when it fails).
    """
    if not isinstance(problem, Problem):
        raise TypeError(
            "problem must be a ufm problem (RegressionUFM, ClassificationUFM, DeepUFM), got "
            f"{type(problem).__name__}"
        )
    problem.check_unbatched()
    solver = resolve_solver(solver, problem)
    solver.check(problem)
    if init is not None:
        init = problem.check_init(init)
    max_steps = check_int(
        solver.default_max_steps if max_steps is None else max_steps, "max_steps", minimum=0
    )
    if record_every is not None:
        record_every = check_int(record_every, "record_every", minimum=1)
    if record is not None and (record_every is None or not callable(record)):
        raise ValueError(
            f"record must be a callable params -> dict and needs record_every, got {record!r}"
        )
    if restarts is not None:
        restarts = check_int(restarts, "restarts", minimum=1)
        if init is not None:
            raise ValueError("restarts needs init=None: each restart draws its own random init")
    dt = problem.dtype
    d_rtol, d_atol = _DEFAULT_TOL.get(jnp.dtype(dt).itemsize, _DEFAULT_TOL[4])
    tols = [
        check_tolerance(default if v is None else v, name, dt)
        for name, v, default in (("rtol", rtol, d_rtol), ("atol", atol, d_atol))
    ]
    key = jax.random.PRNGKey(0) if key is None else check_key(key)
    if getattr(solver, "staged", False) and record_every is None and restarts is None:
        summary, y0 = _prepare_jit(solver, problem, key, init)
        loop = _loop_jit(solver, summary, y0, *tols, max_steps)
        sol = _finish_jit(solver, problem, summary, *loop)
    else:
        sol = _solve_jit(
            problem, solver, key, init, *tols, max_steps, record_every, record, restarts
        )
    if throw and is_concrete(sol.status):
        if np.ndim(sol.status) != 0:
            raise ValueError("throw=True needs a single (unbatched) solve")
        if int(sol.status) != Status.successful:
            raise RuntimeError(f"ufm.solve: {Status(int(sol.status)).name}: {sol.message}")
    return sol
