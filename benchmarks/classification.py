"""Classification UFM benchmark: ufm's solvers against the published direct-UFM protocol.

K = 4 classes, n = 100 samples per class, d = 64, lambda_H = lambda_W = 5e-4, free bias, float64,
for the MSE and the cross-entropy UFM. Rows:

* ``exact`` (MSE): ridge elimination of H and b, L-BFGS over W (``ufm.Exact``).
* ``lbfgs``: L-BFGS on all variables with the blocks preconditioned (``ufm.LBFGS()``), and the
  same without preconditioning (``precondition=False``) to show what the scaling buys.
* ``torch-ref``: the published protocol (PyTorch, full-batch SGD, momentum 0.9, lr 0.1,
  30,000 steps, N(0, 0.1^2) init, NC metrics every step; ``_torch_classification.py``).

ufm rows are timed on a second call (compilation excluded); errors are relative ``W W^T``
errors against ``theory.classification``'s closed form. Run:
``pip install -e ".[bench]" && python benchmarks/classification.py [--steps 30000]``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

import ufm  # noqa: E402
from theory import classification as tc  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).parent))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30_000, help="reference SGD steps")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)
    K, n, d, lam = 4, 100, 64, 5e-4
    labels = tc.balanced_labels(K, n)
    rows, summary = [], {}
    for loss in ("mse", "ce"):
        p = ufm.ClassificationUFM(labels, K, lam, lam, d, loss=loss, bias="free")
        opt = tc.optimum_of(p)
        solvers = {
            "lbfgs (precond.)": ufm.LBFGS(),
            "lbfgs (no precond.)": ufm.LBFGS(precondition=False),
        }
        if loss == "mse":
            solvers = {"exact": ufm.Exact(), **solvers}
        for name, solver in solvers.items():
            ufm.solve(p, solver, rtol=1e300, max_steps=50_000)  # compile (same static args)
            t0 = time.perf_counter()
            sol = jax.block_until_ready(ufm.solve(p, solver, max_steps=50_000))
            t = time.perf_counter() - t0
            W = sol.params.W
            err = float(jnp.linalg.norm(W @ W.T - opt.WWT) / jnp.linalg.norm(opt.WWT))
            st = ufm.Status(int(sol.status)).name
            rows.append((loss, name, int(sol.num_steps), t, err, st))
            summary.setdefault(loss, {})[name] = (t, err)
        if not args.no_torch:
            from _torch_classification import run_reference

            ref = run_reference(
                labels, K, lam, lam, d, loss=loss, target_WWT=opt.WWT, steps=args.steps
            )
            rows.append(
                (
                    loss,
                    "torch-ref (SGD m=0.9, lr=0.1)",
                    ref["steps"],
                    ref["time_total"],
                    ref["final_rel_err"],
                    f"train-only {ref['time_train']:.1f} s",
                )
            )
            summary[loss]["ref"] = ref
    w = max(len(r[1]) for r in rows)
    print(
        f"K={K}, n={n}, d={d}, lambda_H=lambda_W={lam:g}, free bias, float64, "
        f"jax {jax.__version__} on {jax.devices()[0].platform}\n"
    )
    print(f"{'loss':<5} {'solver':<{w}} {'steps':>7} {'time [s]':>9} {'rel WWT err':>11}  note")
    for loss, name, steps, t, err, note in rows:
        print(f"{loss:<5} {name:<{w}} {steps:>7} {t:>9.4f} {err:>11.2e}  {note}")
    print("\nTarget: >= 100x less time than the reference to a relative W W^T error of 1e-8")
    for loss, s in summary.items():
        if "ref" not in s:
            continue
        ref = s["ref"]
        ok = [v for k, v in s.items() if k != "ref" and v[1] <= 1e-8]
        if not ok:
            print(f"  {loss}: no ufm solver reached 1e-8")
            continue
        t_ours = min(v[0] for v in ok)
        hit = ref["reached"].get(1e-8)
        if hit is not None:
            ratio, what = hit[1] / t_ours, f"reference reached 1e-8 after {hit[1]:.2f} s"
        else:
            ratio = ref["time_total"] / t_ours
            what = (
                f"reference never reached 1e-8 in {ref['steps']} steps "
                f"({ref['time_total']:.1f} s, final error {ref['final_rel_err']:.2e})"
            )
        verdict = "met" if ratio >= 100 else "NOT met"
        print(f"  {loss}: ufm to 1e-8 in {t_ours:.4f} s; {what}: >= {ratio:.0f}x ({verdict})")


if __name__ == "__main__":
    main()
