"""The problems of ``ufm check`` and ``ufm sweep``, built from their options in one place:
``--problem regression|mse|ce|deep`` with ``--targets``/``--n``/``--M``, ``--classes``,
``--per-class`` or ``--class-sizes``, ``--label-smoothing``, ``--d``, ``--bias``/``--no-bias``,
``--widths``, ``--activation``.

Each builder returns ``(problem, description)``; option values are checked before (by the
sub-command) or here, with messages naming the option.
"""

from __future__ import annotations

import math

import numpy as np

from .._validate import check_finite, check_real_dtype

#: Options that select a deep UFM's model, named when theory predicts nothing for it.
DEEP_MODEL_OPTIONS = "--activation/--widths"


def default_targets(n: int, M: int, seed: int) -> np.ndarray:
    """The built-in instance: ``Y = Z A^T + mu`` with ``Z ~ N(0, I)``, ``A ~ N(0, 1/n)``
    (a random covariance ``A A^T``) and ``mu ~ N(0, 1)``, from ``numpy`` with ``seed``."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n)) / np.sqrt(n)
    mu = rng.normal(size=n)
    return rng.normal(size=(M, n)) @ A.T + mu


def load_targets(path: str) -> np.ndarray:
    """The ``--targets`` file: one real, finite 2-D array ``(M, n)`` with ``M >= 2`` saved by
    ``np.save`` (no pickles, no ``.npz`` archives). float16 is upcast to float32 (lossless)."""
    opt = f"--targets {path!r}"
    try:
        Y = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"--targets: cannot read {path!r} as a .npy file: {err}") from err
    if not isinstance(Y, np.ndarray):  # an .npz archive
        names = list(getattr(Y, "files", []))
        if hasattr(Y, "close"):
            Y.close()
        raise ValueError(
            f"{opt} is an .npz archive holding {names}; --targets takes one array saved with "
            "np.save(file, Y), shape (M, n)"
        )
    kind = check_real_dtype(Y.dtype, opt, allow_low=True)
    if kind == "low":
        Y = Y.astype(np.float32)
    if Y.ndim != 2 or Y.shape[0] < 2 or Y.shape[1] < 1:
        raise ValueError(
            f"{opt} must hold a 2-D array (M, n) with M >= 2 samples and n >= 1 (samples "
            f"first; reshape a vector to (M, 1)), got shape {Y.shape}"
        )
    check_finite(Y, opt)
    return Y


def bias_option(text: str):
    """``--bias``: ``none``, ``free`` or a number ``lambda_b >= 0``."""
    if text in ("none", "free"):
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"--bias must be none, free or a number lambda_b >= 0, got {text!r}")
    return value


def parse_widths(text: str) -> tuple[int, ...]:
    """``"8,8"`` -> ``(8, 8)``; a clear error naming ``--widths`` otherwise."""
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise ValueError(f"--widths must be a comma list of ints >= 1, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise ValueError(f"--widths must be a comma list of ints >= 1, got {text!r}")
    return widths


def targets(args) -> tuple[np.ndarray, str]:
    """``(Y, source)``: ``--targets`` or the built-in instance (``--n``, ``--M``, ``--seed``)."""
    if args.targets is not None:
        Y, source = load_targets(args.targets), f"targets from {args.targets}"
    else:
        if args.n < 1 or args.M < 2:
            raise ValueError(f"--n must be >= 1 and --M >= 2, got {args.n}, {args.M}")
        Y = default_targets(args.n, args.M, args.seed)
        source = f"built-in random instance (seed {args.seed})"
    return np.asarray(Y, dtype=args.dtype), source


def regression(args, lambda_H: float, lambda_W: float, d: int = 32):
    """The regression UFM of the options (``--no-bias``, ``--d``)."""
    import ufm

    Y, source = targets(args)
    d = d if args.d is None else args.d
    problem = ufm.RegressionUFM(Y, lambda_H, lambda_W, d, bias=not args.no_bias)
    M, n = Y.shape
    desc = (
        f"regression UFM, {source}\n  M = {M}, n = {n}, d = {d}, lambda_H = {lambda_H:g}, "
        f"lambda_W = {lambda_W:g}, bias = {not args.no_bias}, {args.dtype}"
    )
    return problem, desc


DEFAULT_CLASSES, DEFAULT_PER_CLASS = 4, 25


def add_class_arguments(c, smoothing_values: bool = False) -> None:
    """``--classes``, ``--per-class``, ``--class-sizes`` and ``--label-smoothing`` (shared by
    ``ufm check`` and ``ufm sweep``; ``smoothing_values``: ``--label-smoothing`` takes values to
    sweep, checked by the caller)."""
    c.add_argument(
        "--classes", type=int, default=None, help=f"classification: K (default {DEFAULT_CLASSES})"
    )
    c.add_argument(
        "--per-class",
        type=int,
        default=None,
        dest="per_class",
        help=f"samples per class ({DEFAULT_PER_CLASS})",
    )
    c.add_argument(
        "--class-sizes",
        default=None,
        dest="class_sizes",
        help="classification: the size of every class, e.g. 40,20,8,8 (instead of --classes "
        "and --per-class; K = the number of sizes)",
    )
    c.add_argument(
        "--label-smoothing",
        type=str if smoothing_values else float,
        default=None,
        dest="label_smoothing",
        help="--problem ce: label smoothing delta in [0, 1) (PyTorch's convention; default 0)"
        + ("; a comma list (or LO:HI:NUM) sweeps it" if smoothing_values else ""),
    )


def parse_class_sizes(text: str) -> tuple[int, ...]:
    """``"40,20,8,8"`` -> ``(40, 20, 8, 8)``: at least 2 integers, each >= 1 (no empty class);
    a clear error naming ``--class-sizes`` otherwise."""
    try:
        sizes = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise ValueError(
            f"--class-sizes must be a comma list of K >= 2 ints >= 1, e.g. 40,20,8,8; got {text!r}"
        ) from None
    if len(sizes) < 2:
        raise ValueError(f"--class-sizes needs at least 2 classes, got {text!r}")
    empty = [k for k, n in enumerate(sizes) if n < 1]
    if empty:
        raise ValueError(
            f"--class-sizes: every class needs a sample (sizes >= 1); class {empty[0]} has "
            f"size {sizes[empty[0]]} in {text!r}"
        )
    return sizes


def resolve_classes(args) -> None:
    """Set ``args.sizes`` (every class's size), ``args.classes`` and ``args.per_class`` (0 for
    unequal sizes) from ``--class-sizes`` or ``--classes``/``--per-class``; check
    ``--label-smoothing``. Conflicts are errors naming the options."""
    if args.class_sizes is not None:
        if args.per_class is not None:
            raise ValueError(
                "--class-sizes and --per-class both given: --class-sizes sets every class's "
                "size, so drop --per-class"
            )
        sizes = parse_class_sizes(args.class_sizes)
        if args.classes is not None and args.classes != len(sizes):
            raise ValueError(
                f"--classes {args.classes} does not match --class-sizes {args.class_sizes!r} "
                f"({len(sizes)} classes); drop --classes"
            )
    else:
        K = DEFAULT_CLASSES if args.classes is None else args.classes
        n = DEFAULT_PER_CLASS if args.per_class is None else args.per_class
        if K < 2 or n < 1:
            raise ValueError(f"--classes must be >= 2 and --per-class >= 1, got {K}, {n}")
        sizes = (n,) * K
    args.sizes = sizes
    args.classes = len(sizes)
    args.per_class = sizes[0] if len(set(sizes)) == 1 else 0
    delta = args.label_smoothing
    if delta is not None:
        if args.problem != "ce":
            raise ValueError(
                f"--label-smoothing applies to --problem ce (cross-entropy), got --problem "
                f"{args.problem}"
            )
        if isinstance(delta, float) and not (math.isfinite(delta) and 0 <= delta < 1):
            raise ValueError(f"--label-smoothing must be a number in [0, 1), got {delta}")


def balanced_labels(args) -> np.ndarray:
    """The labels of ``args.sizes`` (:func:`resolve_classes`): class ``k`` repeated ``n_k``
    times."""
    sizes = args.sizes
    return np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)


def describe_classes(sizes) -> str:
    """``K = 4 balanced classes of n = 25`` or ``K = 4 classes of sizes (40, 20, 8, 8)``."""
    if len(set(sizes)) == 1:
        return f"K = {len(sizes)} balanced classes of n = {sizes[0]}"
    return f"K = {len(sizes)} classes of sizes {tuple(sizes)}, N = {sum(sizes)}"


def classification(args, loss: str, bias, lambda_H: float, lambda_W: float):
    """The classification UFM of the options (``--classes``/``--per-class`` or
    ``--class-sizes``, ``--label-smoothing``, ``--d``: default ``K + 4``)."""
    import ufm

    sizes = args.sizes
    K, N = len(sizes), sum(sizes)
    labels = balanced_labels(args)
    d = K + 4 if args.d is None else args.d
    delta = args.label_smoothing if isinstance(args.label_smoothing, float) else 0.0
    problem = ufm.ClassificationUFM(
        labels, K, lambda_H, lambda_W, d, loss=loss, bias=bias, dtype=args.dtype,
        label_smoothing=delta,
    )  # fmt: skip
    if len(set(sizes)) == 1:
        kappa = K * np.sqrt(sizes[0] * lambda_W * lambda_H)
        scale = f"kappa = K sqrt(n lambda_W lambda_H) = {kappa:.4g}"
    else:
        scale = f"N^2 lambda_H lambda_W = {N**2 * lambda_H * lambda_W:.4g}"
    smooth = f", label smoothing {delta:g}" if delta else ""
    desc = (
        f"classification UFM, loss = {loss}{smooth}, bias = {bias}, {describe_classes(sizes)}"
        f"\n  d = {d}, lambda_H = {lambda_H:g}, lambda_W = {lambda_W:g}, {scale}, {args.dtype}"
    )
    return problem, desc


def deep(args, widths, lambda_H: float, lambda_W: float, one_hot: bool = True):
    """The deep UFM of the options, without bias: balanced one-hot targets (``one_hot``) or
    regression targets (``--targets`` or the built-in instance)."""
    import ufm

    if one_hot:
        problem = ufm.DeepUFM.from_labels(
            balanced_labels(args), args.classes, lambda_H, lambda_W, widths, args.activation,
            False, dtype=args.dtype,
        )  # fmt: skip
        what = describe_classes(args.sizes)
    else:
        Y, what = targets(args)
        problem = ufm.DeepUFM(Y, lambda_H, lambda_W, widths, args.activation, False)
    desc = (
        f"deep UFM, widths = {widths}, activation = {args.activation}, {what}\n"
        f"  lambda_H = {lambda_H:g}, lambda_W = {lambda_W:g} (every layer), {args.dtype}"
    )
    return problem, desc


def require_closed_form(problem, options: str) -> None:
    """Refuse (``ValueError``, exit 2), before any work, a problem for which theory predicts
    nothing, naming the ``options`` that chose it and what theory covers."""
    import theory

    ref = theory.reference(problem)
    if not ref.available:
        raise ValueError(
            f"no closed form to check against for this {type(problem).__name__} ({options}): "
            f"{ref.reason}. Theory covers {ref.scope}"
        )
