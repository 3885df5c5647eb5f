"""Argument checks shared by problems, solvers, metrics, theory and the command line.

Errors come in two tiers (as in optimistix): types, shapes, ranks and option names are checked
while tracing and raise ``TypeError``/``ValueError`` at once, naming the argument; checks of
*values* (NaN, negative lambdas, label ranges) need concrete arrays and are skipped for traced
ones, e.g. inside ``jax.vmap``, where a bad value shows up as a non-successful ``status``.

Nothing is silently reinterpreted:

* real data is float32 or float64 (integers and bools are converted to the default float);
  complex input is a ``TypeError`` (its imaginary part would be dropped), as are float16,
  bfloat16 and other low-precision floats when they would set the problem's dtype (the solvers
  work in float32 or float64), strings, ``None``, object and masked arrays;
* labels are checked on the caller's original array before any conversion, so a label beyond
  the int32 range cannot wrap into a valid class under JAX's default 32-bit mode;
* a lambda that the conversion to the problem's dtype would turn into 0 or inf is refused;
* bools are not numbers here (``bias=True`` is not ``lambda_b = 1``);
* a problem whose variables cannot fit in memory is refused before any work
  (:func:`check_memory`).
"""

from __future__ import annotations

import functools
import math
import operator
import os

import jax
import jax.numpy as jnp
import numpy as np

#: The floating dtypes the solvers compute in.
SUPPORTED_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def is_concrete(x) -> bool:
    """Whether ``x`` holds values we can inspect (not a tracer)."""
    return not isinstance(x, jax.core.Tracer)


# ---------------------------------------------------------------------------------------------
# dtypes and real arrays
# ---------------------------------------------------------------------------------------------


def _kind(dt) -> str:
    """``"float"`` (float32/64), ``"low"`` (other floats), ``"int"``, ``"bool"``, ``"complex"``
    or ``"other"`` (strings, objects, PRNG keys, ...)."""
    if jax.dtypes.issubdtype(dt, jax.dtypes.prng_key):
        return "other"
    if jnp.issubdtype(dt, jnp.complexfloating):
        return "complex"
    if jnp.issubdtype(dt, jnp.floating):
        return "float" if np.dtype(dt) in SUPPORTED_FLOATS else "low"
    if jnp.issubdtype(dt, jnp.integer):
        return "int"
    if jnp.issubdtype(dt, jnp.bool_):
        return "bool"
    return "other"


def check_real_dtype(dt, name: str, *, allow_bool: bool = True, allow_low: bool = False) -> str:
    """Raise a ``TypeError`` naming ``name`` unless ``dt`` is a real numeric dtype; return its
    kind (``"float"``, ``"low"``, ``"int"`` or ``"bool"``).

    ``allow_low``: accept float16/bfloat16 (when the caller converts them to float32/64 itself).
    """
    kind = _kind(dt)
    if kind == "complex":
        raise TypeError(
            f"{name} must be real, got complex dtype {dt}: its imaginary part would be "
            "dropped; pass the real part (x.real) explicitly if that is what you mean"
        )
    if kind == "other":
        raise TypeError(f"{name} must hold real numbers, got dtype {dt}")
    if kind == "bool" and not allow_bool:
        raise TypeError(f"{name} must be a real number, not a bool")
    if kind == "low" and not allow_low:
        raise TypeError(
            f"{name} has dtype {dt}; ufm computes in float32 or float64 (convert with "
            ".astype(np.float32) or .astype(np.float64))"
        )
    return kind


def float_dtype(dtype, name: str = "dtype") -> np.dtype:
    """``dtype`` as a numpy dtype, float32 or float64 (``None``: JAX's default float)."""
    if dtype is None:
        return np.dtype(jnp.result_type(float))
    try:
        dt = np.dtype(jnp.dtype(dtype))
    except TypeError as err:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from err
    if dt not in SUPPORTED_FLOATS:
        raise TypeError(f"{name} must be float32 or float64, got {dt}")
    return dt


def _array_view(x, name: str):
    """``x`` as a JAX or numpy array without any dtype conversion (a TypeError naming ``name``
    for what is not an array of numbers)."""
    if isinstance(x, jax.Array):  # includes tracers
        return x
    if x is None or isinstance(x, str | bytes):
        raise TypeError(f"{name} must be a real number or array of real numbers, got {x!r}")
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a masked array: its masked entries would be used as they are; fill or "
            "drop them first (np.ma.filled / compressed)"
        )
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{name} must be a rectangular array of real numbers, got {type(x).__name__} ({err})"
        ) from err


def float_array(x, name: str, dtype=None, *, allow_bool: bool = True) -> jax.Array:
    """``x`` as a real floating JAX array, float32 or float64.

    ``dtype=None``: float input keeps its dtype (float16/bfloat16 is a ``TypeError``: it would
    set the problem's precision), integers and bools become JAX's default float. With a
    ``dtype``, real input is converted to it (float16 is upcast). Complex, strings, ``None``,
    objects and masked arrays raise ``TypeError`` naming ``name``; so do bools when
    ``allow_bool=False`` (for numbers such as lambdas).
    """
    arr = _array_view(x, name)
    target = None if dtype is None else float_dtype(dtype)
    kind = check_real_dtype(arr.dtype, name, allow_bool=allow_bool, allow_low=target is not None)
    if isinstance(x, float) and target is None:  # keep a Python float weakly typed
        return jnp.asarray(x)
    if target is None:
        target = arr.dtype if kind == "float" else np.dtype(jnp.result_type(float))
    if isinstance(arr, np.ndarray) and target == jax.dtypes.canonicalize_dtype(target):
        # A host array is converted on the host and placed on the device: no program is
        # compiled (jnp.asarray stages a conversion, whose first lowering costs 0.07 s).
        return jax.device_put(np.asarray(arr, dtype=target))
    return jnp.asarray(arr, dtype=target)


def check_finite(x: jax.Array, name: str) -> None:
    """Raise if a concrete array holds NaN or inf."""
    if is_concrete(x) and not bool(np.all(np.isfinite(np.asarray(x)))):
        raise ValueError(f"{name} must be finite; it contains NaN or inf")


def check_nonnegative_scalar(x: jax.Array, name: str) -> None:
    """Raise unless ``x`` is a scalar and, when concrete, finite and >= 0."""
    if jnp.ndim(x) != 0:
        raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(x)}")
    if is_concrete(x):
        v = float(x)
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v}")


def check_lambda(x, name: str, dtype=None) -> jax.Array:
    """A regularisation strength: a real scalar (not a bool, not a string), finite and >= 0
    when concrete, converted to ``dtype``; refused when the conversion would turn a nonzero
    value into 0 or a finite one into inf (e.g. ``1e-60`` in float32)."""
    with np.errstate(over="ignore", under="ignore"):  # reported below, with the name
        out = float_array(x, name, dtype, allow_bool=False)
    if out.ndim == 0 and is_concrete(x) and is_concrete(out):
        v, stored = float(np.asarray(x)), float(out)
        if math.isfinite(v) and v != 0 and (stored == 0 or not math.isfinite(stored)):
            raise ValueError(
                f"{name} = {v:g} is not representable in {out.dtype} (it would become "
                f"{stored:g}); use float64 (jax_enable_x64) or rescale the problem"
            )
    check_nonnegative_scalar(out, name)
    return out


def check_label_smoothing(x, dtype=None, name: str = "label_smoothing") -> jax.Array:
    """A label-smoothing strength ``delta``: a real scalar (not a bool, not a string) converted
    to ``dtype``; when concrete, finite and in ``[0, 1)`` (also after the conversion, so that
    ``1 - 1e-9`` is not rounded to 1 in float32). Traced values pass unchecked (the problem's
    ``valid()`` reports them)."""
    out = float_array(x, name, dtype, allow_bool=False)
    if out.ndim != 0:
        raise ValueError(f"{name} must be a scalar in [0, 1), got shape {out.shape}")
    if is_concrete(x) and is_concrete(out):
        v, stored = float(np.asarray(x)), float(out)
        if not (math.isfinite(v) and 0 <= v < 1):
            raise ValueError(f"{name} must be a finite number in [0, 1), got {v}")
        if stored >= 1:
            raise ValueError(
                f"{name} = {v!r} becomes {stored:g} in {out.dtype}; it must be < 1 (use "
                "float64 or a smaller value)"
            )
    return out


def positive_scalar(x, name: str, dtype, purpose: str) -> jax.Array:
    """A real scalar (not a bool or string) as a ``dtype`` array, > 0 and finite when concrete
    (a traced value passes): for formulas that divide by it. ``purpose`` completes the message
    (``"{name} must be > 0 for {purpose}, and finite"``)."""
    v = float_array(x, name, dtype, allow_bool=False)
    if v.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {v.shape}")
    if is_concrete(v) and not (np.isfinite(float(v)) and float(v) > 0):
        raise ValueError(f"{name} must be > 0 for {purpose}, and finite; got {float(v)}")
    return v


def check_tolerance(x, name: str, dtype) -> jax.Array:
    """A stopping tolerance: a real scalar in ``dtype``, finite and >= 0 when concrete (inf
    would declare any point converged). Traced values pass unchecked."""
    out = float_array(x, name, dtype, allow_bool=False)
    if out.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {out.shape}")
    if is_concrete(out):
        v = float(out)
        if not (np.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be >= 0 and finite, got {v}")
    return out


def positive_number(x, name: str) -> float:
    """A concrete real number (Python or numpy; not a bool or string), finite and > 0, as a
    ``float`` (step sizes, scales: static settings, not swept values)."""
    if isinstance(x, bool | np.bool_) or not isinstance(x, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a real number > 0, got {x!r} of type {type(x).__name__}")
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {x!r}")
    return float(x)


def check_shape(x, shape: tuple, name: str, what: str) -> None:
    """Raise unless ``x.shape`` equals ``shape`` (entries ``None`` match anything)."""
    s = jnp.shape(x)
    if len(s) != len(shape) or any(e is not None and e != a for e, a in zip(shape, s, strict=True)):
        raise ValueError(f"{name} must have shape {what}, got {s}")


def check_int(x, name: str, minimum: int | None = None) -> int:
    """Return ``x`` as a Python int (numpy integers and concrete 0-d integer arrays accepted,
    bools rejected); raise unless ``x >= minimum``."""
    what = f"an int >= {minimum}" if minimum is not None else "an int"
    if isinstance(x, bool | np.bool_):
        raise TypeError(f"{name} must be {what}, got the bool {x!r}")
    try:
        value = operator.index(x)
    except jax.errors.TracerIntegerConversionError as err:
        raise TypeError(
            f"{name} must be a concrete int (it fixes a shape), got a traced value"
        ) from err
    except TypeError as err:
        raise TypeError(f"{name} must be {what}, got {x!r} of type {type(x).__name__}") from err
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be {what}, got {value}")
    return value


# ---------------------------------------------------------------------------------------------
# labels and options
# ---------------------------------------------------------------------------------------------


def check_label_values(labels, num_classes: int, name: str = "labels") -> None:
    """Raise if concrete integer ``labels`` leave ``[0, num_classes)`` or leave a class empty.

    Works on the array as given (no conversion: check before any cast to int32)."""
    if not is_concrete(labels):
        return
    lab = np.asarray(labels)
    K, N = num_classes, lab.size
    if N and (lab.min() < 0 or lab.max() >= K):
        raise ValueError(
            f"{name} must lie in [0, num_classes) = [0, {K}), got values in "
            f"[{lab.min()}, {lab.max()}]"
        )
    if K > max(N, 1 << 20):  # do not allocate K counters to say that N labels cannot cover K
        raise ValueError(
            f"every class needs at least one sample: num_classes = {K} exceeds the number of "
            f"samples N = {N} in {name}"
        )
    empty = np.flatnonzero(np.bincount(lab.ravel().astype(np.int64), minlength=K) == 0)
    if empty.size:
        listed = empty[:20].tolist()
        more = f" (and {empty.size - 20} more)" if empty.size > 20 else ""
        raise ValueError(
            f"every class needs at least one sample: classes {listed}{more} of "
            f"num_classes = {K} have none in {name}"
        )


def labels_array(labels, num_classes: int, name: str = "labels", *, num_samples=None):
    """Validated class labels as a JAX ``int32`` array of shape ``(N,)``.

    Checked on the caller's original array, before any conversion: integer dtype (strings,
    ``None``, floats, bools and complex numbers are a ``TypeError`` naming ``name``), rank 1
    (and ``N = num_samples`` when given), and, when concrete, values in ``[0, num_classes)``
    with no empty class (:func:`check_label_values`). Traced labels pass the value checks
    (``problem.valid()`` reports them as a status).
    """
    K = check_int(num_classes, "num_classes", minimum=1)
    arr = _array_view(labels, name)
    if _kind(arr.dtype) != "int":
        raise TypeError(
            f"{name} must be integers (class indices in [0, num_classes) = [0, {K})), got "
            f"dtype {arr.dtype}"
        )
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D integer array of shape (N,), got shape {arr.shape}")
    if num_samples is not None and arr.shape != (num_samples,):
        raise ValueError(f"{name} must have shape (N,) = ({num_samples},), got {arr.shape}")
    check_label_values(arr, K, name)
    if isinstance(arr, np.ndarray):
        arr = arr.astype(np.int32)  # values checked above: no wrap-around
    return jnp.asarray(arr).astype(jnp.int32)


BIAS_MESSAGE = "bias must be 'none', 'free' or a number lambda_b >= 0"
#: The bias modes of the problems: no ``b``, an unregularised ``b``, ``lambda_b/2 ||b||^2``.
BIAS_MODES = ("none", "free", "reg")


def bias_option(
    bias, dtype=None, name: str = "bias", *, regularised: bool = True, owner: str = ""
) -> tuple[str, jax.Array]:
    """The bias setting shared by every problem and :mod:`theory`: ``"none"`` (no bias),
    ``"free"`` (an unregularised bias) or a number ``lambda_b >= 0`` (the penalty
    ``lambda_b/2 ||b||^2``); ``True``/``False`` (Python or numpy bools) are aliases of
    ``"free"``/``"none"``. Returns ``(mode, lambda_b)`` with ``mode`` in :data:`BIAS_MODES`
    and ``lambda_b`` a scalar in ``dtype`` (0 unless ``"reg"``).

    ``regularised=False`` (a problem without a regularised bias, named ``owner``): a number is
    a ``ValueError``. ``None`` and other types are a ``TypeError``, other strings a
    ``ValueError``; a number goes through :func:`check_lambda`.
    """
    if regularised:
        msg = BIAS_MESSAGE.replace("bias", name, 1)
    else:
        msg = f"{name} must be 'none' or 'free'"
    msg += " (True/False: aliases of 'free'/'none')"
    if isinstance(bias, bool | np.bool_):
        return ("free" if bias else "none"), jnp.zeros((), float_dtype(dtype))
    if bias is None:
        raise TypeError(f"{msg}, got None")
    if isinstance(bias, str):
        if bias not in ("none", "free"):
            raise ValueError(f"{msg}, got {bias!r}")
        return bias, jnp.zeros((), float_dtype(dtype))
    if not regularised:
        error = ValueError if isinstance(bias, int | float | np.number) else TypeError
        raise error(
            f"{msg}, got {bias!r}: {owner or 'this problem'} has no regularised bias (a number "
            "lambda_b is ufm.ClassificationUFM's)"
        )
    return "reg", check_lambda(bias, f"{name} (lambda_b)", float_dtype(dtype))


def check_key(key, name: str = "key") -> jax.Array:
    """A single PRNG key: ``jax.random.key(seed)`` (typed, shape ``()``) or
    ``jax.random.PRNGKey(seed)`` (raw ``uint32`` key data). A ``TypeError`` naming ``name``
    for an int seed, floats and other arrays; a ``ValueError`` for a batch of keys."""
    if isinstance(key, jax.Array | np.ndarray):
        dt, shape = key.dtype, key.shape
        if jax.dtypes.issubdtype(dt, jax.dtypes.prng_key):
            if shape != ():
                raise ValueError(
                    f"{name} must be a single PRNG key, got a batch of shape {shape}: solve one "
                    "instance per key and batch with jax.vmap"
                )
            return key
        raw = _raw_key_shape()
        if np.dtype(dt) == np.uint32 and shape[-len(raw) :] == raw:
            if shape != raw:
                raise ValueError(
                    f"{name} must be a single PRNG key of shape {raw}, got a batch of shape "
                    f"{shape}: solve one instance per key and batch with jax.vmap"
                )
            return jnp.asarray(key)
        got = f"an array of dtype {dt} and shape {shape}"
    else:
        got = f"{key!r} of type {type(key).__name__}"
    raise TypeError(
        f"{name} must be a PRNG key from jax.random.key(seed) or jax.random.PRNGKey(seed), "
        f"got {got}"
    )


@functools.cache
def _raw_key_shape() -> tuple[int, ...]:
    return tuple(jax.eval_shape(lambda: jax.random.PRNGKey(0)).shape)


# ---------------------------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------------------------


def _host_memory() -> int | None:
    """Bytes of host memory available: ``MemAvailable`` of ``/proc/meminfo`` (else
    ``os.sysconf``), capped by a cgroup v2 limit when one is set."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit != "max":
            with open("/sys/fs/cgroup/memory.current") as f:
                avail = min(avail, int(limit) - int(f.read().strip()))
    except (OSError, ValueError):
        pass
    return avail


def available_memory() -> tuple[int | None, str]:
    """``(bytes, where)``: on a GPU/TPU backend the free memory of the local devices together
    (``bytes_limit - bytes_in_use`` of each device's ``memory_stats()``, when they report them;
    summed, since a problem may be sharded over them), else the host's available memory;
    ``bytes = None`` when unknown (the check is then skipped)."""
    backend = jax.default_backend()
    if backend != "cpu":
        total, devices = 0, jax.local_devices()
        for dev in devices:
            try:
                stats = dev.memory_stats() or {}
            except Exception:  # noqa: BLE001 - a backend without memory statistics
                stats = {}
            if "bytes_limit" not in stats:
                break
            total += stats["bytes_limit"] - stats.get("bytes_in_use", 0)
        else:
            return total, f"{backend} memory ({len(devices)} device(s))"
    return _host_memory(), "host memory (MemAvailable)"


def check_memory(shapes_or_num_elements, dtype, what: str, *, copies: int = 1) -> None:
    """Refuse, before any work, arrays that cannot fit in the memory available.

    ``shapes_or_num_elements``: a number of elements, or a sequence of shapes whose sizes add
    up; ``copies`` multiplies it. ``what`` names the argument and the arrays, e.g.
    ``"feature_dim = 10**12: the variables H (N, d) = (6, 10**12), W and b"``. Raises
    ``ValueError`` saying how many GB are needed and how many are available.

    The rule the problems use (documented in each constructor): refuse when the variables
    alone (one copy of ``H``, ``W``, ``b``) exceed the available memory. It is a necessary
    condition, not a sufficient one: a solver holds several copies (L-BFGS about
    ``2 memory_size + 4``, gradient methods 3-4, the exact solver about 2), so a problem that
    passes may still run out of memory in the solve, but a hopeless size fails at once instead
    of blocking for minutes.
    """
    if isinstance(shapes_or_num_elements, int | np.integer):
        count = int(shapes_or_num_elements)
    else:
        count = sum(math.prod(int(s) for s in shape) for shape in shapes_or_num_elements)
    need = count * np.dtype(dtype).itemsize * copies
    avail, where = available_memory()
    if avail is not None and need > avail:
        times = f" ({copies} copies)" if copies != 1 else ""
        raise ValueError(
            f"{what}: needs {need / 1e9:.3g} GB in {np.dtype(dtype)}{times}, more than the "
            f"{max(avail, 0) / 1e9:.3g} GB of {where} available"
        )
