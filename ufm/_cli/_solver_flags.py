"""``--solver``, ``--lr`` and ``--check-every``: the solver options of ``ufm check`` and
``ufm sweep``."""

from __future__ import annotations

NAMES = ("exact", "lbfgs", "gd", "momentum", "adam")
DEFAULT_LR = 0.1


def add_arguments(c, solver_help: str) -> None:
    c.add_argument("--solver", default=None, help=solver_help)
    c.add_argument(
        "--lr", type=float, default=None, help=f"learning rate for gd/momentum/adam ({DEFAULT_LR})"
    )
    c.add_argument(
        "--check-every",
        type=int,
        default=None,
        dest="check_every",
        help="gd/momentum/adam: the stopping test after every C-th step only (1; "
        "ufm.OptaxSolver's check_every)",
    )


def solver(name: str | None, lr: float | None, check_every: int | None = None):
    """The solver that ``ufm.solve`` and ``ufm.sweep`` take for these options: a name (``None``
    for the problem's default) or a :class:`ufm.OptaxSolver` with a traced learning rate."""
    if name is None or name in ("exact", "lbfgs"):
        for flag, value in (("--lr", lr), ("--check-every", check_every)):
            if value is not None:
                which = f"--solver {name}" if name else "the default solver (exact or lbfgs)"
                raise ValueError(f"{flag} applies to gd, momentum and adam, not to {which}")
        return name
    if name not in NAMES:
        raise ValueError(f"--solver must be one of {', '.join(NAMES)}; got {name!r}")
    import optax

    import ufm
    from ufm._solvers import MAX_CHECK_EVERY

    if check_every is not None and not 1 <= check_every <= MAX_CHECK_EVERY:
        raise ValueError(f"--check-every must be an int from 1 to 2**30, got {check_every}")

    factory, extra = {
        "gd": (optax.sgd, {}),
        "momentum": (optax.sgd, {"momentum": 0.9}),
        "adam": (optax.adam, {}),
    }[name]
    return ufm.OptaxSolver(
        factory,
        learning_rate=float(DEFAULT_LR if lr is None else lr),
        check_every=1 if check_every is None else check_every,
        **extra,
    )
