"""Cost per step of the dynamics solvers (momentum, Adam) against the memory floor and PyTorch.

Regression UFM (``ufm.RegressionUFM``, lambda_H = lambda_W = 1e-3, targets from ``ufm check``'s
built-in instance), (n, d) = (3, 256), M in {1e4, 1e5}, float64 and float32; solvers
``OptaxSolver(optax.sgd, learning_rate=0.05, momentum=0.9)`` and
``OptaxSolver(optax.adam, learning_rate=1e-3)`` (preconditioned, as ``ufm.solve`` runs them).

* **bandwidth**: the machine's stream bandwidth, the larger of a numpy copy (``np.copyto``, one
  thread; 2 x bytes moved) and a JAX triad ``a = a + 1.5 b`` in place inside a jitted loop
  (XLA's threads; 3 x bytes moved) on 256 MiB arrays, the minimum time of several repeats.
  Write-allocate traffic is not counted, so the bandwidth is the one a kernel can reach, not
  the bus's.
* **floor**: bytes that one step must move at least / bandwidth: ``H`` and the optimiser state
  (momentum: one buffer like the variables; Adam: two) read and written once, plus ``W``, ``b``
  read and written and ``Y`` read once (negligible beside ``H`` but counted). At M = 1e4 in
  float32 the working set (20-30 MB) fits in the 32 MiB L3 cache of this machine, so the
  "floor" there is a DRAM floor a cached run can beat.
* **ufm**: ``ufm.solve(problem, solver, rtol=0, max_steps=K)`` (``rtol = 0``: the stopping test
  is evaluated every step but never passes, so the run takes exactly ``K`` steps; checked),
  compiled beforehand; per step = ``(t(K2) - t(K1)) / (K2 - K1)``, which removes the set-up
  (initialisation, final objective, certificate) and keeps everything a step costs, the
  stopping test included. Every configuration of one (M, dtype, solver) is timed in turn
  within each of ``--repeats`` rounds (interleaved, so a burst of load elsewhere hits all
  alike); the table gives the median over the rounds and the least (from the fastest run of each
  length: the least disturbed).
* **precondition**: each solver twice, side by side: ``precondition=True`` (the default) and
  ``precondition=False`` (the objective as written, the papers' protocol). A step costs the
  same whatever the scales.
* **ufm/C**: the same with ``OptaxSolver(..., check_every=C)`` (``--check-every``, default 16):
  the stopping test and its norms after every C-th step only, the objective only where the
  optimiser reads it (momentum and Adam do not). ``K`` is a multiple of C, so the per-step time
  carries the tested step's share of 1/C.
* **passes**: transfers of ``M x d`` arrays per step, read from the compiled program (XLA's
  optimised HLO, :func:`loop_passes`): every array of that shape that an instruction of the
  loop body reads or writes counts once; noise-free. ``tested`` is a step with the stopping
  test, ``light`` one of ``check_every``'s steps without it. The floor is 4 for momentum
  (``H`` and the momentum read and written once) and 6 for Adam.
* **torch**: the same objective (eq. 1, 1/M normalisation, ``_torch_reference._objective``),
  full batch, ``torch.optim.SGD(momentum=0.9)`` / ``torch.optim.Adam``, ``zero_grad``, forward,
  ``backward``, ``step`` per step, with ``torch.set_num_threads`` equal to the number of cores
  (what XLA uses); the faster of the default (foreach) and ``fused=True`` implementations,
  minimum over repeats of the mean over a block of steps.

Run: ``python benchmarks/dynamics.py`` (``--sizes 1e4`` / ``--dtypes float32`` for a part,
``--passes-only`` for the pass counts alone).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import ufm  # noqa: E402
from ufm._cli.check import default_targets  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))

LAM = 1e-3
LR = {"momentum": 0.05, "adam": 1e-3}
STATE_COPIES = {"momentum": 1, "adam": 2}


def _min_time(fn, repeats):
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def stream_bandwidth(nbytes=256 * 2**20, repeats=7):
    """``(numpy copy, jax triad)`` bandwidths in bytes/s on arrays of ``nbytes``."""
    n = nbytes // 8
    a = np.random.default_rng(0).random(n)
    b = np.empty_like(a)
    copy = 2 * nbytes / _min_time(lambda: np.copyto(b, a), repeats)
    # The triad runs 10 times inside a jitted loop, in place: a fresh 256 MiB output per call
    # would time the kernel's page faults, not the memory.
    x, y = jnp.asarray(a), jnp.asarray(a[::-1].copy())
    reps = 10
    triad = jax.jit(
        lambda u, v: jax.lax.fori_loop(0, reps, lambda i, c: (c[0] + 1.5 * c[1], c[1]), (u, v))
    )
    triad(x, y)[0].block_until_ready()
    tri = 3 * nbytes * reps / _min_time(lambda: triad(x, y)[0], repeats)
    return copy, tri


def floor_bytes(M, n, d, itemsize, kind):
    """Bytes a step must move: variables and optimiser state read + written, ``Y`` read."""
    var = M * d + n * d + n
    return itemsize * (2 * var * (1 + STATE_COPIES[kind]) + M * n)


def make_solver(kind, check_every=1, precondition=True):
    opts = {"check_every": check_every, "precondition": precondition}
    if kind == "momentum":
        return ufm.OptaxSolver(optax.sgd, learning_rate=LR[kind], momentum=0.9, **opts)
    return ufm.OptaxSolver(optax.adam, learning_rate=LR[kind], **opts)


_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (\(.*?\)|\S+) ([\w\-]+)\((.*)$")
_NOT_TRAFFIC = {"parameter", "get-tuple-element", "tuple", "constant", "bitcast", "while"}


def loop_passes(hlo: str, shape: str) -> list[int]:
    """Transfers of ``shape``-sized arrays (e.g. ``"f64[100000,256]"``) per iteration of each
    ``while`` loop of an optimised HLO text (``jax.jit(f).lower(...).compile().as_text()``)
    whose body moves any: for every instruction of the loop body (a fusion, a dot, a custom
    call), the operands and results of that shape, counted once each (a fusion reads its
    operands and writes its result once; what happens inside a fusion stays in registers and
    caches). Sorted; a nested loop's traffic counts in its own body only."""
    computations, current = {}, None
    for line in hlo.splitlines():
        if line.startswith(("%", "ENTRY ")) and line.endswith("{"):
            current = line.removeprefix("ENTRY ").split(" ")[0].lstrip("%")
            computations[current] = []
        elif line.startswith("}"):
            current = None
        elif current is not None:
            computations[current].append(line)
    counts = []
    for body in sorted(set(re.findall(r"body=%([\w.\-]+)", hlo))):
        shapes, total = {}, 0
        for line in computations.get(body, ()):
            m = _INSTRUCTION.match(re.sub(r", metadata=\{.*", "", line))
            if m is None:
                continue
            name, result, op, rest = m.groups()
            shapes[name] = result
            if op in _NOT_TRAFFIC:
                continue
            operands = re.findall(r"%([\w.\-]+)", rest.split("), ")[0])
            total += result.count(shape) + sum(
                shapes.get(a, "").startswith(shape) for a in operands
            )
        if total:
            counts.append(total)
    return sorted(counts)


def ufm_runs(problem, kind, configs, lengths):
    """``{config: {K: run}}``: compiled ``ufm.solve`` runs of exactly ``K`` steps for each
    ``config = (check_every, precondition)`` and ``K`` in ``lengths[config]``."""
    zero = jnp.zeros((), problem.dtype)
    runs = {}
    for config in configs:
        solver = make_solver(kind, *config)
        runs[config] = {}
        for k in lengths[config]:
            run = jax.jit(
                lambda p, k=k, s=solver: ufm.solve(p, s, rtol=zero, atol=zero, max_steps=k)
            )
            sol = jax.block_until_ready(run(problem))  # compile
            if int(sol.num_steps) != k or int(sol.status) != ufm.Status.max_steps_reached:
                raise RuntimeError(
                    f"{kind} {config}: expected {k} steps, got {int(sol.num_steps)} "
                    f"({ufm.Status(int(sol.status)).name})"
                )
            runs[config][k] = run
    return runs


def ufm_passes(problem, kind, config):
    """:func:`loop_passes` of the compiled solve: ``(tested, light)`` step (``light`` is
    ``None`` without ``check_every``)."""
    solver = make_solver(kind, *config)
    zero = jnp.zeros((), problem.dtype)
    hlo = (
        jax.jit(lambda p: ufm.solve(p, solver, rtol=zero, atol=zero, max_steps=64))
        .lower(problem)
        .compile()
        .as_text()
    )
    M, d = problem.num_samples, problem.feature_dim
    tag = {"float64": "f64", "float32": "f32"}[str(problem.dtype)]
    counts = loop_passes(hlo, f"{tag}[{M},{d}]")
    return counts[-1], (counts[0] if len(counts) > 1 else None)


def ufm_per_step(problem, runs, lengths, repeats):
    """``{config: (median, least)}`` per-step times, the configurations interleaved: each of
    ``repeats`` rounds times every configuration's two lengths in turn. ``median``: the median
    over the rounds of ``(t(K2) - t(K1)) / (K2 - K1)``; ``least``: the same difference of the
    fastest run of each length (the least disturbed runs, never below 0)."""
    samples = {config: [] for config in runs}
    for _ in range(repeats):
        for config, by_length in runs.items():
            k1, k2 = lengths[config]
            t = {k: _min_time(lambda r=by_length[k]: r(problem), 1) for k in (k1, k2)}
            samples[config].append((t[k1], t[k2]))
    out = {}
    for c, v in samples.items():
        k1, k2 = lengths[c]
        t1, t2 = np.array(v).T
        least = max(float(t2.min() - t1.min()), 0.0) / (k2 - k1)
        out[c] = (float(np.median((t2 - t1) / (k2 - k1))), least)
    return out


def torch_per_step(Y, d, kind, dtype, steps, repeats):
    import torch
    from _torch_reference import _objective

    torch.set_num_threads(os.cpu_count())
    tdt = {"float64": torch.float64, "float32": torch.float32}[dtype]
    M, n = Y.shape
    Yt = torch.as_tensor(Y, dtype=tdt)
    gen = torch.Generator().manual_seed(0)
    best = {}
    for impl in ("foreach", "fused"):
        H = (0.1 * torch.randn(M, d, generator=gen, dtype=tdt)).requires_grad_(True)
        W = (0.1 * torch.randn(n, d, generator=gen, dtype=tdt)).requires_grad_(True)
        b = torch.zeros(n, dtype=tdt, requires_grad=True)
        flag = {"foreach": True} if impl == "foreach" else {"fused": True}
        try:
            if kind == "momentum":
                opt = torch.optim.SGD([H, W, b], lr=LR[kind] / M, momentum=0.9, **flag)
            else:
                opt = torch.optim.Adam([H, W, b], lr=LR[kind], **flag)
        except (RuntimeError, TypeError):  # fused not available for this build
            continue

        def step(H=H, W=W, b=b, opt=opt):
            opt.zero_grad(set_to_none=True)
            loss = _objective(H, W, b, Yt, LAM, LAM)
            loss.backward()
            opt.step()

        for _ in range(3):
            step()
        t = np.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            t = min(t, (time.perf_counter() - t0) / steps)
        best[impl] = t
        del H, W, b, opt
    impl = min(best, key=best.get)
    return best[impl], impl


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1e4,1e5")
    p.add_argument("--dtypes", default="float64,float32")
    p.add_argument("--kinds", default="momentum,adam")
    p.add_argument("--n", type=int, default=3)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument(
        "--check-every",
        type=int,
        default=16,
        help="also time OptaxSolver(..., check_every=C): the stopping test every C steps",
    )
    p.add_argument(
        "--passes-only",
        action="store_true",
        help="print the M x d passes per step from the compiled programs, time nothing",
    )
    args = p.parse_args(argv)
    n, d = args.n, args.d
    bw_copy, bw_triad = stream_bandwidth()
    bw = max(bw_copy, bw_triad)
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} cores; "
        f"stream bandwidth: numpy copy {bw_copy / 1e9:.1f} GB/s, jax triad "
        f"{bw_triad / 1e9:.1f} GB/s; floor uses {bw / 1e9:.1f} GB/s",
        flush=True,
    )
    C = args.check_every
    configs = [(1, True), (1, False), (C, True), (C, False)]
    rows = []
    for M in (int(float(s)) for s in args.sizes.split(",")):
        k1, k2 = (10, 60) if M <= 20_000 else (3, 13)
        # Whole blocks of C steps (C - 1 light, 1 tested), so the difference keeps the test's
        # share of 1/C.
        c1, c2 = C, C * (1 + max(1, round((k2 - k1) / C)))
        lengths = {cfg: (k1, k2) if cfg[0] == 1 else (c1, c2) for cfg in configs}
        for dtype in args.dtypes.split(","):
            Y = default_targets(n, M, 0)
            problem = ufm.RegressionUFM(jnp.asarray(Y, dtype), LAM, LAM, d)
            item = jnp.dtype(dtype).itemsize
            for kind in args.kinds.split(","):
                passes = {cfg: ufm_passes(problem, kind, cfg) for cfg in configs}
                if args.passes_only:
                    times = {cfg: (float("nan"),) * 2 for cfg in configs}
                else:
                    runs = ufm_runs(problem, kind, configs, lengths)
                    times = ufm_per_step(problem, runs, lengths, args.repeats)
                    del runs
                floor = floor_bytes(M, n, d, item, kind) / bw
                if args.no_torch or args.passes_only:
                    t_torch, impl = float("nan"), "-"
                else:
                    t_torch, impl = torch_per_step(Y, d, kind, dtype, k2 - k1, args.repeats)
                for pc in (True, False):
                    every, check = times[(1, pc)], times[(C, pc)]
                    tested, _ = passes[(1, pc)]
                    c_tested, c_light = passes[(C, pc)]
                    rows.append(
                        (M, dtype, kind, pc, floor, every, check, tested, c_tested, c_light)
                        + (t_torch, impl)
                    )
                    print(
                        f"  M={M} {dtype} {kind} precondition={pc}: every step "
                        f"{every[0] * 1e3:.2f} ms (least {every[1] * 1e3:.2f}), "
                        f"check_every={C} {check[0] * 1e3:.2f} ms (least {check[1] * 1e3:.2f}), "
                        f"floor {floor * 1e3:.2f} ms, passes {tested} "
                        f"(check_every: {c_tested}/{c_light}), "
                        f"torch {t_torch * 1e3:.2f} ms ({impl})",
                        flush=True,
                    )
    print(
        f"\nms per step, median over {args.repeats} interleaved rounds (least in brackets); "
        f"ufm: the stopping test after every step (the default); ufm/{C}: "
        f"OptaxSolver(..., check_every={C}); passes: M x d transfers per step from the compiled "
        f"program (tested step; with check_every={C}: tested / light step)\n"
        f"{'M':>7} {'dtype':>8} {'solver':>9} {'precond':>7} {'floor':>7} "
        f"{'ufm':>16} {'/floor':>6} {f'ufm/{C}':>16} {'/floor':>6} {'passes':>6} "
        f"{'test/light':>10} {'torch':>8} {'torch/ufm':>9} {f'torch/ufm/{C}':>12}  torch impl"
    )
    for M, dtype, kind, pc, floor, every, check, tested, c_tested, c_light, t_torch, impl in rows:
        print(
            f"{M:>7} {dtype:>8} {kind:>9} {str(pc):>7} {floor * 1e3:>7.2f} "
            f"{every[0] * 1e3:>7.2f} ({every[1] * 1e3:>6.2f}) {every[0] / floor:>6.2f} "
            f"{check[0] * 1e3:>7.2f} ({check[1] * 1e3:>6.2f}) {check[0] / floor:>6.2f} "
            f"{tested:>6} {f'{c_tested}/{c_light}':>10} {t_torch * 1e3:>8.2f} "
            f"{t_torch / every[0]:>9.2f} {t_torch / check[0]:>12.2f}  {impl}"
        )
    if args.passes_only:
        return
    print("\nTargets: ufm/floor <= 2 and torch/ufm >= 2 (medians).")
    for M, dtype, kind, pc, floor, every, check, *_, t_torch, _ in rows:
        verdict = []
        for name, t in (("every step", every[0]), (f"check_every={C}", check[0])):
            ok = t / floor <= 2 and (np.isnan(t_torch) or t_torch / t >= 2)
            verdict.append(f"{name} {'met' if ok else 'NOT met'}")
        print(f"  M={M} {dtype} {kind} precondition={pc}: {', '.join(verdict)}")


if __name__ == "__main__":
    main()
