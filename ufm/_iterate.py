"""The one solver loop: a bounded ``lax.while_loop`` with no Python per step.

Every solver in :mod:`ufm` runs through :func:`iterate`. An iterate ``y`` (any pytree) is
advanced by an optax transformation until

* the scale-free stationarity test

      ||g||_2 max(||y||_2, ||y_0||_2) <= atol + rtol min(|f|, |f_0|)

  holds after at least one step (``successful``). The left side bounds the first-order change
  of ``f`` when every variable moves by its own size (``|g . y|``), so the test is invariant
  when the data or the lambdas are rescaled (``f`` and ``g y`` scale together): ``rtol`` is a
  relative accuracy of the objective's first-order model at every scale. ``f_0`` and ``y_0``
  are the objective and the iterate at the start, so neither a diverging run whose ``|f|``
  explodes nor an iterate that shrinks towards a stationary origin passes the test by its own
  smallness. ``atol`` (default 0, in units of ``f``) is for problems whose optimal value is 0
  (zero regularisation), where no relative test can hold,
* with ``progress_window = w`` (``ufm.solve`` sets it for problems that are not smooth, e.g. a
  deep UFM with ReLU): the objective fell by at most ``atol + rtol |f|`` over the last ``w``
  steps and the smallest ``||g||`` seen did not halve in them (``no_progress``). At a kink of
  a nonsmooth objective the gradient need not vanish at a minimiser, so the stationarity test
  may never hold there; a run converging in a smooth region shrinks ``||g||`` fast and ends
  ``successful`` instead. The windows are consecutive blocks of ``w`` steps (the first from
  step 0), tested at the first tested step after each block ends,
* ``max_steps`` steps were taken (``max_steps_reached``),
* ``f`` or ``g`` is NaN/inf (``nonfinite``), or
* the run can make no further progress while the test fails (``stalled``). With a line
  search (L-BFGS, the exact solver) that is an exactly zero update (``num_steps`` counts that
  zero step). Other optax optimisers stall only at a fixed point of the whole step: the next
  step would change neither the variables nor the optimiser state (every leaf, step counters
  included, bit for bit), so no later step could: the step map is deterministic. A zero
  update alone is no stall there: a warm-up from a learning rate of 0, a warm restart,
  ``optax.MultiSteps`` or ``optax.apply_every`` emit zero updates while their state moves on.
  So plain SGD at a learning rate of 0 stalls after one step, while Adam at 0, or a schedule
  that stays at 0, is no fixed point (its step counter moves) and ends ``max_steps_reached``.
  The test is a pass outside the loop over steps that computes the next update (not applied)
  and compares bit patterns; it runs after the first step and after a step that left ``f``
  and ``||g||`` unchanged (a step that leaves the variables unchanged always does).
  A test that finds no fixed point puts off the next by a gap that doubles each time (1, 2,
  4, ... steps), so optimisers whose zero updates are routine pay for a few tests only, and a
  fixed point, which lasts, is found by the time the steps taken have about doubled (so one
  reached in the second half of the budget may end ``max_steps_reached``).
  ``num_steps`` counts the updates applied, so it includes zero updates taken before the test
  ran. Testing every update would read the variables and the optimiser state once more on
  every step (a third of a momentum step's memory traffic at M = 10^5,
  ``benchmarks/dynamics.py``). The loop over steps stops for a due test, and at least every
  64 steps (``_CHUNK``): under ``jax.vmap`` an instance whose test is due waits, frozen, for
  the others to stop too, so the cap bounds that wait; each stop costs the whole batch one
  update pass there (a ``lax.cond`` becomes a ``select``), at most 1/64 more work.

With ``check_every = c`` (``OptaxSolver``'s setting; line searches keep 1) the loop runs blocks
of ``c - 1`` *light* steps and one tested step. A light step computes the gradient (or the
small parts it is rebuilt from) and the objective for the optimiser's ``value`` argument; the
norms the test needs are not used, so XLA drops their passes, and where the optimiser does not
read ``value`` (momentum, Adam) the objective is a loop variable that feeds nothing and is
dropped as well. Only the tested step (after every ``c``-th step, and at every record point,
fixed-point test or chunk end and at ``max_steps``) classifies the run, so a run stops at the
first tested step whose test passes (at most ``c - 1`` steps after the test first held, where
it keeps holding once it has: with momentum it need not), a divergence is reported up to
``c - 1`` steps late, and the fixed-point test compares ``f`` and ``||g||`` of two tests. The
iterates are those of ``c = 1``: light and tested steps make the same update.

With ``record_every = k`` the loop is nested: an outer ``while_loop`` runs chunks of at most
``k`` steps (the same inner ``while_loop``) and records ``record_fn(y)`` after each chunk, so
metrics cost nothing on the other steps, also under ``jax.vmap`` (a ``lax.cond`` would turn
into a ``select`` that evaluates the metrics on every step).

Memory traffic. On large problems a step is bound by reading and writing the variables and
the optimiser state (``benchmarks/dynamics.py``). The objective may therefore supply its own
exact linearisation (``fn.linearise(y) -> (f, aux, ||g||, ||y||)`` and
``fn.gradient(y, aux) -> g``, see ``_solvers._Objective``): the carry then holds the small
``aux`` instead of the gradient, the gradient is rebuilt inside the optimiser's update (XLA
fuses it there, so it is never stored), and the norms come from the passes the objective
makes anyway. Line-search solvers (``reuse_linesearch_value``) keep the generic path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
import optax.tree

from ._solution import Status

_RUNNING = -1
# The most steps the loop over steps runs between two stops for fixed-point tests (see the
# module docstring): under ``jax.vmap``, at most 1/64 more work, at most 64 steps of waiting.
_CHUNK = 64


class _Carry(NamedTuple):
    y: Any
    state: Any
    f: jax.Array  # the objective at the last tested step
    value: jax.Array  # the objective at ``y``, for optimisers that read it
    aux: Any  # the gradient, or the small parts the objective rebuilds it from
    gnorm: jax.Array
    step: jax.Array
    status: jax.Array
    probe: jax.Array  # the last step left f and ||g|| unchanged: test for a fixed point
    probe_at: jax.Array  # the earliest step for the next test (after one that found none)
    gap: jax.Array  # the wait after the next test that finds none (doubles each time)
    ref_f: jax.Array  # progress window: the objective at the window's start
    ref_g: jax.Array  # progress window: the smallest ||g|| seen up to the window's start
    min_g: jax.Array  # progress window: the smallest ||g|| seen so far
    ref_step: jax.Array  # progress window: the step at the window's start


def _classify(f, f0, gnorm, yscale, rtol, atol, zero_update=None):
    finite = jnp.isfinite(f) & jnp.isfinite(gnorm)
    converged = gnorm * yscale <= atol + rtol * jnp.minimum(jnp.abs(f), jnp.abs(f0))
    status = jnp.where(converged, Status.successful, _RUNNING)
    if zero_update is not None:
        status = jnp.where(zero_update & ~converged, Status.stalled, status)
    return jnp.where(finite, status, Status.nonfinite).astype(jnp.int32)


def _bits(x) -> jax.Array:
    """``x`` as integers with the same bit pattern (PRNG keys by their key data), so equal
    means bitwise equal: ``-0.0`` differs from ``0.0``, and a NaN equals itself."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        x = jnp.stack([x.real, x.imag])
    if jnp.issubdtype(x.dtype, jnp.floating):
        x = jax.lax.bitcast_convert_type(x, jnp.dtype(f"uint{8 * x.dtype.itemsize}"))
    return x


def _tree_equal(a, b) -> jax.Array:
    """Every leaf of ``a`` is bitwise equal to ``b``'s (same tree structure)."""
    eq = jax.tree_util.tree_map(lambda u, v: jnp.all(_bits(u) == _bits(v)), a, b)
    return jnp.all(jnp.array(jax.tree_util.tree_leaves(eq) or [True]))


def iterate(
    fn: Callable[[Any], jax.Array],
    optimizer: optax.GradientTransformationExtraArgs,
    y0: Any,
    *,
    max_steps: int,
    rtol: jax.Array,
    atol: jax.Array,
    reuse_linesearch_value: bool = False,
    record_every: int | None = None,
    record_fn: Callable[[Any, jax.Array], tuple] | None = None,
    check_every: int = 1,
    progress_window: int | None = None,
):
    """Minimise ``fn`` from ``y0`` with ``optimizer``.

    Args:
        fn: scalar objective of the iterate.
        optimizer: an optax transformation accepting ``value``, ``grad`` and ``value_fn``
            keyword arguments (wrap plain ones with ``optax.with_extra_args_support``).
        reuse_linesearch_value: take ``f`` and ``g`` at the new iterate from the line search's
            state (``optax.value_and_grad_from_state``) instead of recomputing them.
        record_every, record_fn: record ``record_fn(y, step)`` (a pytree of scalars) at step 0
            and after every ``record_every`` steps.
        check_every: run the stopping test (and the norms it needs) after every
            ``check_every``-th step only (see the module docstring); not with
            ``reuse_linesearch_value``.
        progress_window: also end a run that makes no progress over this many steps
            (``no_progress``, see the module docstring); ``None``: no such rule.

    Returns:
        ``(y, f, gnorm, num_steps, status, records)``; ``records`` is ``None`` without
        recording, else ``(steps, values)``: arrays of length ``max_steps // record_every + 2``
        (``values`` with ``record_fn``'s structure).
    """
    # ``linearise(y, state) -> (f, aux, ||g||, ||y||)`` and ``gradient(y, aux) -> g``. The
    # objective may supply both (``_solvers._Objective``): then ``aux`` is small and the
    # gradient is rebuilt inside the optimiser's update, where XLA fuses it, instead of being
    # stored in the carry and read back (the loop is bound by memory traffic).
    if check_every != 1 and reuse_linesearch_value:
        raise ValueError("check_every > 1 needs an optimiser without a line search")
    fast = callable(getattr(fn, "linearise", None)) and not reuse_linesearch_value
    # Line searches stall at a zero update, tested on every step; other optimisers at a fixed
    # point of the step, tested in ``probed`` (see the module docstring).
    probing = not reuse_linesearch_value
    if fast:

        def linearise(y, state):
            return fn.linearise(y)

        gradient = fn.gradient
        linearise0 = linearise
    else:
        value_and_grad = jax.value_and_grad(fn)
        if reuse_linesearch_value:
            value_and_grad_new = optax.value_and_grad_from_state(fn)
        else:

            def value_and_grad_new(y, *, state):
                return value_and_grad(y)

        def with_norms(y, f, g):
            return f, g, optax.tree.norm(g), optax.tree.norm(y)

        def linearise(y, state):
            return with_norms(y, *value_and_grad_new(y, state=state))

        def linearise0(y, state):
            return with_norms(y, *value_and_grad(y))

        def gradient(y, aux):
            return aux

    state0 = optimizer.init(y0)
    f0, aux0, gnorm0, ynorm0 = linearise0(y0, state0)
    # The stopping test is skipped at step 0 (as in optimistix): an init at a stationary point
    # that is not a minimum (e.g. W = 0, a strict saddle) must not end as "successful".
    finite0 = jnp.isfinite(f0) & jnp.isfinite(gnorm0)
    status0 = jnp.where(finite0, _RUNNING, Status.nonfinite).astype(jnp.int32)
    zero = jnp.array(0)
    carry = _Carry(
        y0,
        state0,
        f0,
        f0,
        aux0,
        gnorm0,
        zero,
        status0,
        jnp.array(False),
        zero,
        jnp.array(1),
        f0,
        gnorm0,
        gnorm0,
        zero,
    )

    def update(c: _Carry):
        g = gradient(c.y, c.aux)
        return optimizer.update(g, c.state, c.y, value=c.value, grad=g, value_fn=fn)

    def all_zero(tree) -> jax.Array:
        return jnp.all(jnp.array([jnp.all(u == 0) for u in jax.tree_util.tree_leaves(tree)]))

    def body(c: _Carry) -> _Carry:
        updates, state = update(c)
        y = optax.apply_updates(c.y, updates)
        f, aux, gnorm, ynorm = linearise(y, state)
        yscale = jnp.maximum(ynorm, ynorm0)
        if probing:
            status = _classify(f, f0, gnorm, yscale, rtol, atol)
            # After the first test always: ``f_0`` comes from a separately compiled program,
            # which may round differently. (With ``check_every > 1`` the first test's step is
            # below ``check_every``, and so may be a later one's, cut short by a record or
            # chunk end: such a test probes too, which costs one pass.)
            unchanged = (f == c.f) & (gnorm == c.gnorm) & (c.step + 1 >= c.probe_at)
            probe = unchanged | (c.step < check_every)
        else:
            status = _classify(f, f0, gnorm, yscale, rtol, atol, all_zero(updates))
            probe = jnp.array(False)
        c = c._replace(
            y=y,
            state=state,
            f=f,
            value=f,
            aux=aux,
            gnorm=gnorm,
            step=c.step + 1,
            status=status,
            probe=probe,
        )
        return c if progress_window is None else progress(c)

    def progress(c: _Carry) -> _Carry:
        # At the end of each window: no progress when the objective fell by at most
        # ``atol + rtol |f|`` and the smallest ||g|| seen did not halve (a run converging in a
        # smooth region shrinks ||g|| fast, so it reaches the stationarity test instead).
        min_g = jnp.minimum(c.min_g, c.gnorm)
        due = c.step - c.ref_step >= progress_window
        flat = c.ref_f - c.f <= atol + rtol * jnp.abs(c.f)
        settled = due & flat & (min_g > 0.5 * c.ref_g) & (c.status == _RUNNING)
        return c._replace(
            status=jnp.where(settled, Status.no_progress, c.status).astype(jnp.int32),
            ref_f=jnp.where(due, c.f, c.ref_f),
            ref_g=jnp.where(due, min_g, c.ref_g),
            min_g=min_g,
            ref_step=jnp.where(due, c.step, c.ref_step),
        )

    def light(c: _Carry) -> _Carry:
        # A step without the test: the gradient's parts and the value only. The norms are
        # dead code, and so is the value where the optimiser does not read it (XLA removes a
        # loop variable that feeds nothing else), so the step skips their passes over ``y``.
        updates, state = update(c)
        y = optax.apply_updates(c.y, updates)
        value, aux, _, _ = linearise(y, state)
        return c._replace(y=y, state=state, value=value, aux=aux, step=c.step + 1)

    def block(c: _Carry, limit) -> _Carry:
        # ``check_every - 1`` light steps, then a tested one, never past ``limit``.
        if check_every > 1:
            stop = c.step + jnp.minimum(check_every - 1, limit - 1 - c.step)  # no overflow
            c = jax.lax.while_loop(lambda c: c.step < stop, light, c)
        return body(c)

    # A chunk is a whole number of test blocks (at least ``_CHUNK`` steps).
    chunk = check_every * -(-_CHUNK // check_every)

    def running(c: _Carry, limit) -> jax.Array:
        return (c.status == _RUNNING) & (c.step < limit)

    def probed(c: _Carry) -> _Carry:
        # The next step, computed but not applied: a fixed point when it changes neither the
        # variables nor the optimiser state. One pass, on probe steps only: a ``lax.cond`` on
        # carry buffers, so a chunk of ``record_every`` steps or a run that ends without a
        # probe pays nothing; under ``vmap`` it computes both branches. Only within the
        # budget: a run that took ``max_steps`` steps ends ``max_steps_reached``. A test that
        # finds no fixed point puts off the next one by a gap that doubles each time, so
        # optimisers whose zero updates are routine (``MultiSteps``, a long warm-up from 0)
        # pay for a few tests only; a fixed point lasts, so it is found at the latest when
        # the steps taken have doubled.
        def fixed_point(c: _Carry) -> jax.Array:
            updates, state = update(c)
            y = optax.apply_updates(c.y, updates)
            return _tree_equal(y, c.y) & _tree_equal(state, c.state)

        due = c.probe & (c.status == _RUNNING) & (c.step < max_steps)
        stalled = jax.lax.cond(due, fixed_point, lambda c: jnp.array(False), c)
        status = jnp.where(stalled, Status.stalled, c.status).astype(jnp.int32)
        missed = due & ~stalled
        return c._replace(
            status=status,
            probe=jnp.array(False),
            probe_at=jnp.where(missed, c.step + c.gap, c.probe_at),
            gap=jnp.where(missed, 2 * c.gap, c.gap),
        )

    def run_until(c: _Carry, limit) -> _Carry:
        if not probing:
            return jax.lax.while_loop(lambda c: running(c, limit), body, c)

        def steps(c: _Carry) -> _Carry:
            end = c.step + jnp.minimum(limit - c.step, chunk)  # no overflow near 2^31
            c = jax.lax.while_loop(lambda c: running(c, end) & ~c.probe, lambda c: block(c, end), c)
            return probed(c)

        return jax.lax.while_loop(lambda c: running(c, limit), steps, c)

    if record_every is None:
        carry = run_until(carry, max_steps)
        records = None
    else:
        num = max_steps // record_every + 2
        first = record_fn(carry.y, carry.step)
        bufs = jax.tree_util.tree_map(
            lambda v: jnp.full((num, *jnp.shape(v)), jnp.nan, jnp.result_type(v)).at[0].set(v),
            first,
        )
        steps = jnp.full((num,), -1, jnp.int32).at[0].set(0)

        def outer_body(oc):
            c, i, steps, bufs = oc
            c = run_until(c, jnp.minimum(c.step + record_every, max_steps))
            vals = record_fn(c.y, c.step)
            bufs = jax.tree_util.tree_map(lambda b, v: b.at[i].set(v), bufs, vals)
            return c, i + 1, steps.at[i].set(c.step), bufs

        def outer_cond(oc):
            c = oc[0]
            return (c.status == _RUNNING) & (c.step < max_steps)

        carry, _, steps, bufs = jax.lax.while_loop(
            outer_cond, outer_body, (carry, jnp.array(1), steps, bufs)
        )
        records = (steps, bufs)

    status = jnp.where(carry.status == _RUNNING, Status.max_steps_reached, carry.status)
    return carry.y, carry.f, carry.gnorm, carry.step, status.astype(jnp.int32), records
