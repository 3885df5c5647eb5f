"""``ufm.solve``: one entry point for every problem and solver."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ._certificate import violation
from ._classification import ClassificationUFM
from ._iterate import iterate
from ._problem import Params, RegressionUFM
from ._solution import Solution, Status, Trajectory
from ._solvers import resolve_solver
from ._validate import check_finite, check_shape, is_concrete

# Relative tolerance of the global-optimality certificate (ufm/_certificate.py).
_CERTIFICATE_RTOL = 1e-2
# Default tolerances of the gradient-norm test ||g|| <= atol + rtol min(|f|, |f_0|), by precision.
_DEFAULT_TOL = {8: (1e-10, 1e-14), 4: (1e-5, 1e-8)}


def _record_fn(problem, to_params, extra):
    def record(y, step):
        p = to_params(y)
        mets = dict(problem.trajectory_metrics(p))
        if extra is not None:
            mets.update(extra(p))
        return {"loss": problem.objective(p), "metrics": mets}

    return record


@functools.partial(jax.jit, static_argnames=("max_steps", "record_every", "record"))
def _solve_jit(problem, solver, key, init, rtol, atol, max_steps, record_every, record):
    fn, y0, to_params = solver.setup(problem, key, init)
    y, _, gnorm, steps, status, records = iterate(
        fn,
        solver.optimizer(),
        y0,
        max_steps=max_steps,
        rtol=rtol,
        atol=atol,
        reuse_linesearch_value=solver.reuse_linesearch_value,
        record_every=record_every,
        record_fn=None if record_every is None else _record_fn(problem, to_params, record),
    )
    params = to_params(y)
    loss = problem.objective(params)
    # The objective in the original variables can be non-finite where the solver's was not
    # (e.g. the exact solver's ridge recovery); never report success then.
    status = jnp.where(jnp.isfinite(loss), status, Status.nonfinite)
    # A stationary point is not enough: check global optimality where the test applies.
    viol, applicable = violation(problem, params)
    status = jnp.where(
        (status == Status.successful) & applicable & (viol > _CERTIFICATE_RTOL),
        Status.saddle,
        status,
    )
    # Values that could not be checked while tracing (e.g. a negative lambda under vmap).
    status = jnp.where(problem.valid(), status, Status.invalid_input)
    status = status.astype(jnp.int32)
    traj = None
    if records is not None:
        rec_steps, vals = records
        traj = Trajectory(rec_steps, vals["loss"], vals["metrics"])
    return Solution(params, loss, gnorm, steps, status, traj)


def _check_unbatched(problem) -> None:
    data = problem.targets if isinstance(problem, RegressionUFM) else problem.labels
    expected = 2 if isinstance(problem, RegressionUFM) else 1
    if data.ndim != expected or any(jnp.ndim(v) != 0 for v in (problem.lambda_H, problem.lambda_W)):
        raise ValueError(
            "problem is batched (stacked with ufm.stack?): solve one instance per call and batch "
            "with jax.vmap, e.g. jax.vmap(ufm.solve)(problems)"
        )


def _check_init(init, problem) -> Params | None:
    if init is None:
        return None
    if not isinstance(init, Params):
        if isinstance(init, tuple | list) and len(init) == 3:
            init = Params(*init)
        else:
            raise TypeError(f"init must be a ufm.Params(H, W, b) or None, got {type(init)}")
    M, n, d = problem.num_samples, problem.target_dim, problem.feature_dim
    dt = problem.dtype
    init = Params(*(jnp.asarray(x, dt) for x in init))
    check_shape(init.H, (M, d), "init.H", f"(M, d) = ({M}, {d})")
    check_shape(init.W, (n, d), "init.W", f"(n, d) = ({n}, {d})")
    check_shape(init.b, (n,), "init.b", f"(n,) = ({n},)")
    for name, x in zip(("init.H", "init.W", "init.b"), init, strict=True):
        check_finite(x, name)
    return init


def solve(
    problem: RegressionUFM | ClassificationUFM,
    solver=None,
    *,
    key: jax.Array | None = None,
    init: Params | None = None,
    max_steps: int | None = None,
    rtol=None,
    atol=None,
    record_every: int | None = None,
    record=None,
    throw: bool = False,
) -> Solution:
    """Minimise a UFM objective.

    Args:
        problem: :class:`ufm.RegressionUFM` or :class:`ufm.ClassificationUFM` (batch with
            :func:`ufm.stack` and ``jax.vmap`` over this function).
        solver: ``None`` (the exact solver for MSE problems with lambdas > 0, else L-BFGS),
            ``"exact"``, ``"lbfgs"``, any
            ``optax.GradientTransformation`` (wrapped in :class:`ufm.OptaxSolver`, feature block
            preconditioned) or a solver object (:class:`ufm.Exact`, :class:`ufm.LBFGS`,
            :class:`ufm.OptaxSolver`).
        key: PRNG key for the random initialisation (default ``jax.random.PRNGKey(0)``).
        init: starting ``Params(H, W, b)``; default ``H, W ~ N(0, 0.1^2)``, ``b = 0`` (the exact
            solver uses only ``init.W``).
        max_steps: step budget (default: the solver's ``default_max_steps``).
        rtol, atol: the stopping test ``||g||_2 <= atol + rtol min(|f|, |f_0|)`` on the solver's
            gradient (``f_0``: objective at the start); defaults ``(1e-10, 1e-14)`` in float64
            and ``(1e-5, 1e-8)`` in float32.
        record_every: record the step, the loss and the problem's collapse metrics (NRC1-3
            for regression, NC1-4 for classification) inside the jitted loop every this many
            steps (``Solution.trajectory``).
        record: optional ``fn(params) -> dict[str, scalar]`` of extra quantities to record
            with them (e.g. an error against a known optimum); static, compared by identity.
        throw: raise ``RuntimeError`` with the status message unless the solve succeeded
            (concrete, unbatched calls only).

    Returns:
        A :class:`ufm.Solution`. Statuses are values, never exceptions (unless ``throw``), so a
        vmapped sweep reports one status per instance.

    The function is jitted with ``max_steps`` and ``record_every`` static (and the solver's
    static settings): new lambdas, targets of the same shape, keys, tolerances or an
    :class:`ufm.OptaxSolver` factory's hyperparameters never recompile. A successful solve is
    also checked for global optimality where the certificate of ``ufm/_certificate.py`` applies
    (``d >= n`` or ``rank W < d``; status ``saddle`` otherwise).
    """
    if not isinstance(problem, RegressionUFM | ClassificationUFM):
        raise TypeError(
            f"problem must be a ufm problem (RegressionUFM, ClassificationUFM), got {type(problem)}"
        )
    _check_unbatched(problem)
    solver = resolve_solver(solver, problem)
    solver.check(problem)
    init = _check_init(init, problem)
    if max_steps is None:
        max_steps = solver.default_max_steps
    if isinstance(max_steps, bool) or not isinstance(max_steps, int | np.integer) or max_steps < 0:
        raise ValueError(f"max_steps must be an int >= 0, got {max_steps!r}")
    if record_every is not None and (
        isinstance(record_every, bool)
        or not isinstance(record_every, int | np.integer)
        or record_every < 1
    ):
        raise ValueError(f"record_every must be None or an int >= 1, got {record_every!r}")
    if record is not None and (record_every is None or not callable(record)):
        raise ValueError(
            f"record must be a callable params -> dict and needs record_every, got {record!r}"
        )
    dt = problem.dtype
    d_rtol, d_atol = _DEFAULT_TOL.get(jnp.dtype(dt).itemsize, _DEFAULT_TOL[4])
    tols = []
    for name, v, default in (("rtol", rtol, d_rtol), ("atol", atol, d_atol)):
        v = jnp.asarray(default if v is None else v, dt)
        if v.ndim != 0:
            raise ValueError(f"{name} must be a scalar, got shape {v.shape}")
        if is_concrete(v) and not float(v) >= 0:
            raise ValueError(f"{name} must be >= 0, got {float(v)}")
        tols.append(v)
    if key is None:
        key = jax.random.PRNGKey(0)
    sol = _solve_jit(
        problem, solver, key, init, tols[0], tols[1], int(max_steps), record_every, record
    )
    if throw and is_concrete(sol.status):
        if np.ndim(sol.status) != 0:
            raise ValueError("throw=True needs a single (unbatched) solve")
        if int(sol.status) != Status.successful:
            raise RuntimeError(f"ufm.solve: {Status(int(sol.status)).name}: {sol.message}")
    return sol
