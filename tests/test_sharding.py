"""Sharding on 4 virtual CPU devices (a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``), and a sweep killed for real.

The subprocess (1) solves one problem with its sample axis sharded (``ufm.shard_samples``;
the parent solves it unsharded), and (2) runs the sweep of tests/test_sweep.py sharded across
the 4 devices, writing to a results file, until the parent kills it with SIGKILL in the middle
of a chunk's write. A second subprocess then resumes the sweep unsharded, on one device: the
file must end with every point once, and the table must equal an uninterrupted unsharded run,
bit for bit. Both subprocesses compile as a user's program does (without the suite's XLA
flags, tests/conftest.py), so the rows of the two device counts can be compared exactly.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import ufm
from ufm._cli.check import default_targets

LAMS = np.geomspace(1e-3, 1.0, 4)
GRID = {"lambda_H": LAMS, "lambda_W": LAMS}

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    from ufm._cli._cache import enable_compilation_cache
    cache = enable_compilation_cache()  # XDG_CACHE_HOME points into the test's tmp_path
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import ufm
    from ufm._sweep import files as _sweep_io
    from ufm._cli.check import default_targets

    out_dir = sys.argv[1]
    assert len(jax.devices()) == 4, jax.devices()
    p = ufm.RegressionUFM(default_targets(3, 40, 0), 0.1, 0.1, 5)
    big = ufm.shard_samples(p)
    sol = ufm.solve(big, "exact")
    spec = big.targets.sharding.spec
    np.savez(
        os.path.join(out_dir, "solve.npz"),
        **{k: np.asarray(getattr(sol.params, k)) for k in "HWb"},
        loss=float(sol.loss), status=int(sol.status), steps=int(sol.num_steps),
        shards=len(sol.params.H.sharding.device_set),
        H_shard_rows=np.array([sh.data.shape[0] for sh in sol.params.H.addressable_shards]),
    )
    with open(os.path.join(out_dir, "info.json"), "w") as f:
        json.dump({"targets_spec": list(spec), "cache": cache}, f)

    calls = []
    real_append = _sweep_io.ResultsFile.append

    def append(self, columns):
        calls.append(1)
        if len(calls) < 2:
            return real_append(self, columns)
        text = _sweep_io.format_rows(self.schema, columns)
        self._f.write(text[: len(text) // 2])  # half of the second chunk, then wait to be killed
        self._f.flush()
        os.fsync(self._f.fileno())
        print("TORN", flush=True)
        time.sleep(120)

    _sweep_io.ResultsFile.append = append
    lams = np.geomspace(1e-3, 1.0, 4)
    ufm.sweep(p, {"lambda_H": lams, "lambda_W": lams}, seeds=2, chunk_size=8,
              out=os.path.join(out_dir, "r.csv"))
    print("NOT KILLED", flush=True)
    """
)

RESUME = textwrap.dedent(
    """
    import os, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import ufm
    from ufm._cli.check import default_targets

    out_dir = sys.argv[1]
    assert len(jax.devices()) == 1, jax.devices()
    p = ufm.RegressionUFM(default_targets(3, 40, 0), 0.1, 0.1, 5)
    lams = np.geomspace(1e-3, 1.0, 4)
    grid = {"lambda_H": lams, "lambda_W": lams}
    resumed = ufm.sweep(p, grid, seeds=2, chunk_size=8, out=os.path.join(out_dir, "r.csv"))
    fresh = ufm.sweep(p, grid, seeds=2, chunk_size=8)
    for name, table in (("resumed", resumed), ("fresh", fresh)):
        np.savez(os.path.join(out_dir, name + ".npz"), **{k: table[k] for k in table.names})
    """
)


@pytest.mark.slow
def test_sharded_solve_and_sweep_killed_mid_write_then_resumed(tmp_path):
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"  # and not the suite's flags
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    for k in ("UFM_NO_COMPILE_CACHE", "UFM_CACHE_DIR", "JAX_COMPILATION_CACHE_DIR"):
        env.pop(k, None)
    err_path = tmp_path / "stderr.txt"
    with (
        open(err_path, "w") as err,
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        ) as proc,
    ):
        t0 = time.time()
        line = proc.stdout.readline()
        if line.strip() != "TORN":
            proc.kill()
            proc.communicate()
            raise AssertionError(f"subprocess said {line!r}:\n{err_path.read_text()[-3000:]}")
        proc.send_signal(signal.SIGKILL)  # kill -9 in the middle of a chunk's write
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert time.time() - t0 < 300

    # (1) One problem, sample axis sharded: the same solution to rounding.
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["targets_spec"] == ["samples"]
    assert info["cache"] and os.listdir(info["cache"])  # the persistent compilation cache
    z = np.load(tmp_path / "solve.npz")
    assert int(z["shards"]) == 4  # H came out split across the 4 devices along the samples
    assert z["H_shard_rows"].tolist() == [10, 10, 10, 10]
    p = ufm.RegressionUFM(default_targets(3, 40, 0), 0.1, 0.1, 5)
    one = ufm.solve(p, "exact")  # unsharded, same key
    assert int(z["status"]) == int(one.status) == 0 and int(z["steps"]) == int(one.num_steps)
    np.testing.assert_allclose(z["loss"], float(one.loss), rtol=1e-13)
    for k in "HWb":
        np.testing.assert_allclose(z[k], np.asarray(getattr(one.params, k)), atol=1e-11)

    # (2) The killed sharded sweep: 8 rows of the first chunk, then a torn second chunk.
    out = tmp_path / "r.csv"
    text = out.read_text()
    assert not text.endswith("\n")  # a torn last line
    torn_rows = text.split("\n")[3:-1]
    assert 8 <= len(torn_rows) < 16
    env.pop("XLA_FLAGS")  # one device, compiled as a user's program is
    done = subprocess.run(
        [sys.executable, "-c", RESUME, str(tmp_path)], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    resumed, fresh = (np.load(tmp_path / f"{name}.npz") for name in ("resumed", "fresh"))
    rows = out.read_text().split("\n")[3:-1]
    assert out.read_text().endswith("\n") and len(rows) == 32 and len(set(rows)) == 32
    assert rows[: len(torn_rows)] == torn_rows  # complete rows are never rewritten
    assert sorted(resumed.files) == sorted(fresh.files) and "loss" in fresh.files
    for k in fresh.files:
        # Rows computed on 4 devices (sharded) equal those computed on one.
        np.testing.assert_array_equal(resumed[k], fresh[k], err_msg=k)
