"""``ufm metrics``: layer-wise collapse metrics of saved features, in memory and streaming."""

import json
import shutil
import subprocess

import jax
import numpy as np
import pytest

import ufm.metrics as um
from ufm._cli import main
from ufm._cli.metrics import DEEP_NRC_NAMES

# The CLI jits the full-array functions; jitting the same functions here shares the compiled
# programs (compiling them op by op would dominate the test time).
deep_nrc = jax.jit(um.deep_nrc)
deep_nc = jax.jit(um.deep_nc, static_argnames=("num_classes",))

N, n, K = 40, 3, 4
DIMS = (7, 5, 6)  # three layers; only the last weight is a head (n rows, or K rows)


def regression_arrays(seed=0):
    rng = np.random.default_rng(seed)
    Y = rng.normal(size=(N, n)) @ rng.normal(size=(n, n)) + 2.0
    Hs = [rng.normal(size=(N, p)) + rng.normal(size=p) for p in DIMS]
    Hs[2] = np.hstack([Y, 0.01 * rng.normal(size=(N, 3))])  # a nearly collapsed last layer
    Ws = [rng.normal(size=(o, p)) for o, p in zip((*DIMS[1:], n), DIMS, strict=True)]
    return Hs, Ws, Y


def classification_arrays(seed=1):
    rng = np.random.default_rng(seed)
    y = np.arange(N) % K
    Hs = [rng.normal(size=(N, p)) + 3 * rng.normal(size=(K, p))[y] for p in DIMS]
    Ws = [rng.normal(size=(o, p)) for o, p in zip((*DIMS[1:], K), DIMS, strict=True)]
    bs = [rng.normal(size=o) for o in (*DIMS[1:], K)]
    return Hs, Ws, bs, y


def layered(Hs, Ws, bs=None):
    out = {f"H_{i}": h for i, h in enumerate(Hs)} | {f"W_{i}": w for i, w in enumerate(Ws)}
    return out | ({} if bs is None else {f"b_{i}": b for i, b in enumerate(bs)})


def run_json(capsys, *args):
    assert main(["metrics", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def per_layer(doc, key):
    """A per-layer metric by its library key (``deep_nrc``'s ``nrc1`` prints as deep_nrc1)."""
    key = DEEP_NRC_NAMES.get(key, key) if doc["task"] == "regression" else key
    return np.array(
        [np.nan if r["metrics"][key] is None else r["metrics"][key] for r in doc["layers"]]
    )


def test_regression_in_memory_and_streaming_agree_with_the_functions(tmp_path, capsys):
    Hs, Ws, Y = regression_arrays()
    f = tmp_path / "reg.npz"
    np.savez(f, **layered(Hs, Ws) | {"H_0": np.asfortranarray(Hs[0])}, Y=Y)  # memmapped F order
    folder = tmp_path / "reg"
    folder.mkdir()
    for k, v in (layered(Hs, Ws) | {"Y": Y}).items():
        np.save(folder / f"{k}.npy", v if k != "H_1" else np.asfortranarray(v))
    full = run_json(capsys, f)
    ref = deep_nrc(Hs, Ws, Y)
    assert full["task"] == "regression" and full["feature_dims"] == list(DIMS)
    assert full["first_collapsed"] == int(ref["first_collapsed"]) == 2
    for key, value in ref.items():
        if np.ndim(value):
            np.testing.assert_allclose(per_layer(full, key), value, rtol=1e-12, err_msg=key)
    head = um.accumulate(um.NRCAccumulator(Ws[2]), [(Hs[2], Y)])  # the last layer is the head
    for key, value in head.items():
        np.testing.assert_allclose(full["head"][key], value, rtol=1e-10, err_msg=key)
    for source, B in ((f, 7), (folder, 1), (folder, 1000)):
        streamed = run_json(capsys, source, "--streaming", "--batch-size", B)
        assert streamed["first_collapsed"] == 2
        for key in ref:
            if np.ndim(ref[key]):
                np.testing.assert_allclose(
                    per_layer(streamed, key), per_layer(full, key), rtol=1e-10, atol=1e-10
                )
        for key, value in full["head"].items():
            np.testing.assert_allclose(streamed["head"][key], value, rtol=1e-10, atol=1e-10)
    assert main(["metrics", str(f)]) == 0
    out = capsys.readouterr().out
    assert "deep neural regression collapse" in out and "layer 2" in out
    assert "first collapsed layer (deep_nrc1 < 1e-2): layer 2" in out
    # every printed name means one definition: the per-layer deep NRC (Rangamani & Unal) and
    # the head's NRC of Andriopoulos et al. never share a name
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    for name in ("nrc1", "nrc2", "nrc3", "gamma", "deep_nrc1", "deep_nrc4"):
        assert names.count(name) == 1, (name, out)
    assert set(full["head"]) == {"nrc1", "nrc2", "nrc3", "gamma"}
    layer_names = set(full["layers"][0]["metrics"])
    assert {"deep_nrc1", "deep_nrc2", "deep_nrc3", "deep_nrc4"} <= layer_names
    assert not layer_names & set(full["head"])


def test_classification_with_a_head_and_hidden_layers(tmp_path, capsys):
    Hs, Ws, bs, y = classification_arrays()
    f = tmp_path / "cls.npz"
    np.savez(f, **layered(Hs, Ws, bs), labels=y, num_classes=np.int32(K))
    full = run_json(capsys, f)
    ref = deep_nc(Hs, y, K, Ws, bs)
    assert full["task"] == "classification" and full["num_classes"] == K
    for key, value in ref.items():
        np.testing.assert_allclose(per_layer(full, key), value, rtol=1e-12, err_msg=key)
    nc4 = [r["metrics"]["nc4"] for r in full["layers"]]
    assert nc4[0] is None and nc4[1] is None and 0 <= nc4[2] <= 1  # JSON null: not defined
    streamed = run_json(capsys, f, "--streaming", "--batch-size", 6)  # NC4: two passes
    for key in ref:
        np.testing.assert_allclose(
            per_layer(streamed, key), per_layer(full, key), rtol=1e-10, atol=1e-10
        )
    assert main(["metrics", str(f), "--streaming"]) == 0
    out = capsys.readouterr().out
    nc4_row = next(line for line in out.splitlines() if line.startswith("nc4 "))
    assert nc4_row.split()[1:3] == ["-", "-"]  # hidden layers: no NC4


def test_single_layer_files_without_weights(tmp_path, capsys):
    Hs, Ws, Y = regression_arrays()
    f = tmp_path / "one.npz"
    np.savez(f, H=Hs[0], Y=Y[:, 0])  # 1-D Y is one target
    for extra in ((), ("--streaming",)):
        doc = run_json(capsys, f, *extra)
        assert doc["num_targets"] == 1 and doc["head"] is None
        assert "deep_nrc3" not in doc["layers"][0]["metrics"]
        assert "deep_nrc1" in doc["layers"][0]["metrics"]
    _, _, _, y = classification_arrays()
    np.savez(f, H=Hs[0], labels=y)
    doc = run_json(capsys, f, "--streaming")
    assert doc["num_classes"] == K and set(doc["layers"][0]["metrics"]) == {
        "nc1",
        "nc2",
        "nc2_equinorm",
        "nc2_orthogonal",
    }


def _save(path, **arrays):
    np.savez(path, **arrays)
    return path


H = np.random.default_rng(0).normal(size=(10, 3))
Y = np.ones((10, 2)) * np.arange(10)[:, None]
NAN_H = H.copy()
NAN_H[6, 1] = np.nan


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"W": np.ones((2, 3)), "Y": Y}, "no features: expected H or H_0"),
        ({"H": H, "H_0": H, "Y": Y}, "give either H or H_0"),
        ({"H_0": H, "H_2": H, "Y": Y}, "H_1 is missing"),
        ({"H_0": H, "H_1": H[:7], "Y": Y}, "H_1 has 7 rows but H_0 has 10"),
        ({"H": H, "Y": Y[:9]}, "Y has 9 rows but the features have N = 10"),
        ({"H": NAN_H, "Y": Y}, "H contains NaN or inf (first at row 6)"),
        ({"H": H, "Y": Y + np.inf}, "Y contains NaN or inf"),
        ({"H": H[0], "Y": Y}, "H must be a 2-D array of shape (N, p)"),
        ({"H": np.array([["a", "b"]]), "Y": Y}, "H must hold real numbers, got dtype <U1"),
        ({"H": H * 1j, "Y": Y}, "must hold real numbers, got dtype complex128"),
        ({"H": H, "W": np.ones((2, 4)), "Y": Y}, "it must have p = 3 columns"),
        ({"H": H, "W": np.full((2, 3), np.nan), "Y": Y}, "W contains NaN or inf"),
        ({"H": H}, "give targets Y (regression) or labels (classification)"),
        ({"H": H, "Y": Y, "labels": np.zeros(10, int)}, "not both"),
        ({"H": H, "labels": np.zeros(10)}, "labels must be a 1-D integer array"),
        ({"H": H, "labels": np.arange(10) % 3, "num_classes": np.int64(2)}, "num_classes must be"),
        ({"H": H, "labels": np.repeat([0, 2], 5)}, "classes [1] of num_classes = 3 have no"),
        ({"H": H, "b": np.ones(2), "Y": Y}, "biases b given without weights W"),
        ({"H": np.zeros((0, 3)), "Y": np.zeros((0, 2))}, "H has no rows (N = 0)"),
    ],
)
@pytest.mark.parametrize("streaming", [False, True])
def test_bad_files_exit_2_with_a_message(tmp_path, capsys, arrays, message, streaming):
    f = _save(tmp_path / "bad.npz", **arrays)
    with pytest.raises(SystemExit) as exc:
        main(["metrics", str(f)] + (["--streaming"] if streaming else []))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unreadable_sources_exit_2(tmp_path, capsys):
    text = tmp_path / "notes.npz"
    text.write_text("not a zip")
    single = tmp_path / "H.npy"
    np.save(single, H)
    packed = tmp_path / "packed.npz"
    np.savez_compressed(packed, H=H, Y=Y)
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ([str(tmp_path / "missing.npz")], "no such file or directory"),
        ([str(text)], "not an .npz archive"),
        ([str(single)], "a single .npy array"),
        ([str(packed), "--streaming"], "is compressed and cannot be memory-mapped"),
        ([str(empty)], "directory holds no .npy files"),
        ([str(packed), "--batch-size", "0"], "--batch-size must be >= 1"),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) as exc:
            main(["metrics", *args])
        assert exc.value.code == 2
        assert message in capsys.readouterr().err
    assert main(["metrics", str(packed)]) == 0  # compressed is fine in memory
    capsys.readouterr()


def test_help_documents_the_formats(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["metrics", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for phrase in ("--streaming", "uncompressed .npz", "written as null", "H_0, H_1", "labels"):
        assert phrase in out


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ufm") is None, reason="the ufm command is not installed")
def test_installed_command_reports_bad_input_without_traceback(tmp_path):
    f = _save(tmp_path / "bad.npz", H=NAN_H, Y=Y)
    run = subprocess.run(["ufm", "metrics", str(f)], capture_output=True, text=True)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and "H contains NaN or inf" in run.stderr
