r"""Adding a model takes one class: a problem defined here, outside the package, through the
public API alone (``ufm.Problem`` and what ``ufm`` exports), is solved with L-BFGS and with an
optax optimiser, stacked and vmapped, restarted and swept like the built-in problems.

The problem is the regularised matrix factorisation, the UFM without its sample average::

    L(A, B) = 1/2 ||A B^T - Y||_F^2 + lam/2 (||A||_F^2 + ||B||_F^2),   A (m, r), B (n, r).

Its minimum is known in closed form (the balanced-factor lemma, docs/theory.md section 0: the
cheapest split of a singular value ``s`` of ``A B^T`` costs ``lam s``, then scalar soft
thresholding of the singular values ``y_i`` of ``Y``)::

    L* = sum_{i <= r} f(y_i) + sum_{i > r} y_i^2 / 2,   f(y) = lam y - lam^2/2 if y > lam
                                                              y^2 / 2          otherwise.

The closed form is computed below in numpy from the singular values, independently of the
objective the solvers minimise; every solve is held against it. A closed form joins
:mod:`theory` the same way, outside the package: a :class:`theory.Reference` registered for
the problem type fills the sweep's closed-form columns and :func:`theory.compare`.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import theory
import ufm

M, N, RANK = 5, 4, 2


class Factors(NamedTuple):
    """The variables: ``A (m, r)`` and ``B (n, r)``."""

    A: jax.Array
    B: jax.Array


class Factorisation(ufm.Problem):
    r"""Regularised matrix factorisation of ``Y (m, n)`` at rank ``r``::

    L(A, B) = 1/2 ||A B^T - Y||_F^2 + lam/2 (||A||_F^2 + ||B||_F^2)

    (a sum over the entries, not an average). ``targets`` and ``lam`` are leaves (``lam`` is
    swept), ``rank`` is static. Variables: :class:`Factors`.
    """

    _leaves = ("targets", "lam")
    _ndims = {"targets": 2, "lam": 0}
    _static = ("rank",)
    sweep_fields = ("lam",)

    def __init__(self, targets, lam, rank: int):
        self.targets = jnp.asarray(targets)
        self.lam = jnp.asarray(lam, self.targets.dtype)
        self.rank = int(rank)

    @property
    def dtype(self):
        return self.targets.dtype

    def default_init(self, key):
        ka, kb = jax.random.split(key)
        m, n = self.targets.shape
        return Factors(
            0.1 * jax.random.normal(ka, (m, self.rank), self.dtype),
            0.1 * jax.random.normal(kb, (n, self.rank), self.dtype),
        )

    def objective(self, params):
        A, B = params
        fit = 0.5 * jnp.sum((A @ B.T - self.targets) ** 2)
        return fit + 0.5 * self.lam * (jnp.sum(A**2) + jnp.sum(B**2))

    def trajectory_metrics(self, params):
        """``imbalance = ||A^T A - B^T B||_F / (||A||^2 + ||B||^2)``: 0 at every stationary
        point with ``lam > 0`` (the factors are balanced there)."""
        A, B = params
        size = jnp.sum(A**2) + jnp.sum(B**2)
        return {"imbalance": jnp.linalg.norm(A.T @ A - B.T @ B) / size}

    def valid(self):
        return self.lam >= 0


def closed_form(Y, lam, rank) -> float:
    """``L*`` of the module docstring, from the singular values of ``Y`` (numpy, float64)."""
    y = np.linalg.svd(np.asarray(Y, np.float64), compute_uv=False)
    head, tail = y[:rank], y[rank:]
    kept = np.where(head > lam, lam * head - lam**2 / 2, head**2 / 2)
    return float(np.sum(kept) + np.sum(tail**2) / 2)


def _targets(seed=0):
    return np.random.default_rng(seed).normal(size=(M, N))


LAMS = np.array([0.05, 0.5, 2.5])  # singular values of Y: 3.04, 2.02, 1.28, 0.49
TOL = 1e-9  # relative, float64
STEPS = 5_000  # one value: solves of one kind share a compiled program


def _rel(loss, ref):
    return abs(float(loss) - ref) / abs(ref)


def test_grid_crosses_a_threshold():
    """The grid holds both branches of the closed form: both directions kept, then one."""
    y = np.linalg.svd(_targets(), compute_uv=False)[:RANK]
    assert [int(np.sum(y > lam)) for lam in LAMS] == [2, 2, 1]


@pytest.mark.slow
@pytest.mark.parametrize(
    "solver",
    ["lbfgs", optax.sgd(0.1, momentum=0.9)],
    ids=["lbfgs", "optax-momentum"],
)
def test_solve_reaches_closed_form(solver):
    Y = _targets()
    for lam in LAMS:
        p = Factorisation(Y, lam, RANK)
        sol = ufm.solve(p, solver, key=jax.random.PRNGKey(1), max_steps=STEPS)
        assert ufm.Status(int(sol.status)) == ufm.Status.successful, lam
        assert _rel(sol.loss, closed_form(Y, lam, RANK)) < TOL, lam
        assert isinstance(sol.params, Factors)
        assert float(p.trajectory_metrics(sol.params)["imbalance"]) < 1e-6


@pytest.mark.slow
def test_stack_and_vmap():
    """A stack of problems solved under ``jax.vmap``; ``valid`` reports a traced negative
    ``lam`` as ``Status.invalid_input``."""
    Y = _targets()
    lams = [*LAMS, -0.1]
    batch = ufm.stack([Factorisation(Y, lam, RANK) for lam in lams])
    assert batch.lam.shape == (4,) and batch.targets.shape == (4, M, N)
    sols = jax.vmap(lambda p: ufm.solve(p, "lbfgs", max_steps=STEPS))(batch)
    assert sols.loss.shape == (4,)
    for i, lam in enumerate(LAMS):
        assert ufm.Status(int(sols.status[i])) == ufm.Status.successful
        assert _rel(sols.loss[i], closed_form(Y, lam, RANK)) < TOL
    assert ufm.Status(int(sols.status[3])) == ufm.Status.invalid_input


@pytest.mark.slow
def test_restarts_all_reach_the_optimum():
    """The factorisation's landscape is benign: every restart finds the global minimum."""
    Y, lam = _targets(), LAMS[1]
    sol = ufm.solve(Factorisation(Y, lam, RANK), "lbfgs", restarts=4, max_steps=STEPS)
    assert sol.restarts.losses.shape == (4,)
    ref = closed_form(Y, lam, RANK)
    assert _rel(sol.loss, ref) < TOL
    for loss, status in zip(sol.restarts.losses, sol.restarts.statuses, strict=True):
        assert ufm.Status(int(status)) == ufm.Status.successful
        assert _rel(loss, ref) < TOL


def test_record_and_init_through_the_default_hooks():
    """``check_init`` and ``precondition_scales`` come from ``ufm.Problem``'s defaults: a
    user's ``init`` is checked against ``default_init``'s structure and shapes, and the
    recorded trajectory holds the problem's own metric."""
    Y, lam = _targets(), LAMS[0]
    p = Factorisation(Y, lam, RANK)
    init = Factors(np.ones((M, RANK)), np.ones((N, RANK)) * np.arange(1, RANK + 1))
    sol = ufm.solve(p, "lbfgs", init=init, record_every=5, max_steps=STEPS)
    assert _rel(sol.loss, closed_form(Y, lam, RANK)) < TOL
    assert "imbalance" in sol.trajectory.metrics
    with pytest.raises(ValueError, match=r"init \(leaf 1\) must have shape \(4, 2\)"):
        ufm.solve(p, init=Factors(np.ones((M, RANK)), np.ones((N + 1, RANK))))
    with pytest.raises(TypeError, match="init must be a pytree like Factorisation.default_init"):
        ufm.solve(p, init=np.ones((M, RANK)))
    with pytest.raises(ValueError, match=r"init \(leaf 0\) must be finite"):
        ufm.solve(p, init=Factors(np.full((M, RANK), np.nan), np.ones((N, RANK))))


@pytest.mark.slow
def test_sweep_over_its_hyperparameter():
    Y = _targets()
    table = ufm.sweep(
        Factorisation(Y, 1.0, RANK), {"lam": LAMS}, seeds=2, solver="lbfgs", progress=False
    )
    cols = table.columns
    assert len(cols["lam"]) == 2 * len(LAMS)
    assert list(cols["status"]) == ["successful"] * (2 * len(LAMS))
    for lam, loss in zip(cols["lam"], cols["loss"], strict=True):
        assert _rel(loss, closed_form(Y, lam, RANK)) < TOL
    assert np.all(np.asarray(cols["imbalance"]) < 1e-6)
    # theory has no closed form for this problem: the closed-form columns say so (NaN).
    assert np.all(np.isnan(cols["loss_theory"]))


@dataclasses.dataclass(frozen=True)
class FactorisationReference(theory.Reference):
    """The closed form of the module docstring in JAX (traced: one per sweep point)."""

    scope = "the regularised matrix factorisation, any lam >= 0"

    def optimum(self, problem):
        """``(L*, rank*)`` from the singular values of ``Y``."""
        y = jnp.linalg.svd(problem.targets, compute_uv=False)
        head, tail = y[: problem.rank], y[problem.rank :]
        kept = head > problem.lam
        lam = problem.lam
        loss = jnp.sum(jnp.where(kept, lam * head - lam**2 / 2, head**2 / 2))
        return loss + jnp.sum(tail**2) / 2, jnp.sum(kept).astype(jnp.int32)

    def solution_rank(self, problem, params):
        s = jnp.linalg.svd(params.A @ params.B.T, compute_uv=False)
        return jnp.sum(s > 1e-6 * jnp.linalg.norm(problem.targets, 2)).astype(jnp.int32)

    def columns(self, problem, params, loss):
        loss_theory, rank = self.optimum(problem)
        nan = jnp.full((), jnp.nan, problem.dtype)
        return {
            "loss_theory": loss_theory,
            "loss_gap": (loss - loss_theory) / jnp.abs(loss_theory),
            "err_gram_W": nan,
            "err_gram_H": nan,
            "rank_theory": rank,
            "rank": self.solution_rank(problem, params),
        }

    def compare(self, problem, solution):
        loss_theory, rank = self.optimum(problem)
        return theory.Comparison(
            errors={"loss": float((solution.loss - loss_theory) / abs(loss_theory))},
            metrics={},
            rank_theory=int(rank),
            rank_solution=int(self.solution_rank(problem, solution.params)),
            status=ufm.Status(int(solution.status)).name,
            loss_theory=float(loss_theory),
            loss_solution=float(solution.loss),
        )


class KnownFactorisation(Factorisation):
    """The same problem, with its closed form registered in :mod:`theory`."""


theory.reference.register(KnownFactorisation)(lambda problem: FactorisationReference())


@pytest.mark.slow
def test_a_registered_closed_form_serves_the_sweep_and_compare():
    """With a reference registered, the sweep's closed-form columns and ``theory.compare``
    report the closed form (held against the independent numpy one)."""
    Y = _targets()
    p = KnownFactorisation(Y, 1.0, RANK)
    table = ufm.sweep(p, {"lam": LAMS}, solver="lbfgs", progress=False)
    cols = table.columns
    for lam, ref in zip(cols["lam"], cols["loss_theory"], strict=True):
        assert abs(ref - closed_form(Y, lam, RANK)) <= 1e-12 * abs(ref)
    assert np.all(np.abs(cols["loss_gap"]) < TOL)
    assert list(cols["rank_theory"]) == list(cols["rank"]) == [2, 2, 1]
    p = KnownFactorisation(Y, LAMS[-1], RANK)
    comparison = theory.compare(ufm.solve(p, "lbfgs", max_steps=STEPS), p)
    assert comparison.passed(TOL) and comparison.rank_theory == 1
