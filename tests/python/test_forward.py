"""Model.forward against the CLI's forward (bit for bit) and the PyTorch
reference (the model tests' tolerances), in place and converted inputs, the
refusals, torch tensors, config, card and profile."""
import os
import tracemalloc

import numpy as np
import pytest

import segmamba
from compare import compare
from conftest import THREADS, load_case, run_cli

# tests/meson.build: the model tests' limits; Winograd and auto (Python's
# default conv) are held to the strict ones.
REL, ARGMAX = 1e-3, 0.999
STRICT_REL, STRICT_ARGMAX = 1e-4, 0.9999


def cli_forward(exe, case_dir, model, tmp_path, conv="auto"):
    case = load_case(case_dir)
    out = str(tmp_path / "logits.npy")
    args = ["forward", "--model", os.path.join(case_dir, model), "--input",
            os.path.join(case_dir, "input.npy"), "--output", out, "--conv", conv, "--nslices",
            ",".join(map(str, case["nslices"])), "--threads", str(THREADS), "--quiet"]
    if case.get("fue"):
        args.append("--fue")
    run_cli(exe, *args)
    return np.load(out)


@pytest.mark.parametrize("case_name,model,conv", [
    ("tiny_case", "model.safetensors", "auto"),
    ("tiny_case", "model.pt", "onednn"),
    ("official_case", "model_wrapped.pt", "auto"),
])
def test_forward_equals_cli_and_reference(request, exe, tmp_path, case_name, model, conv):
    case_dir = request.getfixturevalue(case_name)
    case = load_case(case_dir)
    x = np.load(os.path.join(case_dir, "input.npy"))
    with segmamba.Model(os.path.join(case_dir, model), threads=THREADS, conv=conv,
                        nslices=case["nslices"], fue=bool(case.get("fue"))) as m:
        y = m.forward(x)
    y_cli = cli_forward(exe, case_dir, model, tmp_path, conv)
    assert y.shape == y_cli.shape == x.shape[:1] + (case["config"]["out_chans"],) + x.shape[2:]
    assert np.array_equal(y, y_cli), f"max |python - cli| {np.abs(y - y_cli).max()}"
    strict = conv in ("auto",) and case_name == "official_case"
    ok, report = compare(np.load(os.path.join(case_dir, "expected.npy")), y,
                         STRICT_REL if strict else REL, STRICT_ARGMAX if strict else ARGMAX)
    print(report)
    assert ok, report


def test_batch_and_single_volume(tiny_case):
    x = np.load(os.path.join(tiny_case, "input.npy"))  # (1, C, D, H, W)
    x2 = np.concatenate([x, x[:, :, ::-1].copy()])
    with segmamba.Model(os.path.join(tiny_case, "model.safetensors"), threads=THREADS,
                        nslices=(16, 8, 4, 2)) as m:
        y4 = m.forward(x[0])
        y5 = m.forward(x2)
        y_second = m.forward(x2[1])
    assert y4.ndim == 4 and y5.shape[0] == 2
    assert np.array_equal(y5[0], y4) and np.array_equal(y5[1], y_second)


def test_in_place_no_copy(tiny_case, tmp_path):
    """A read-only memory-mapped C-contiguous float32 array is read where it
    lies: no conversion runs, and nothing the size of the input is
    allocated (tracemalloc sees NumPy's allocations)."""
    x = np.load(os.path.join(tiny_case, "input.npy"))[0]
    path = tmp_path / "x.npy"
    np.save(path, x)
    mm = np.load(path, mmap_mode="r")
    assert isinstance(mm, np.memmap) and not mm.flags.writeable
    with segmamba.Model(os.path.join(tiny_case, "model.safetensors"), threads=THREADS,
                        nslices=(16, 8, 4, 2)) as m:
        expected = m.forward(x)
        out = np.empty_like(expected)
        real = np.ascontiguousarray
        try:
            np.ascontiguousarray = None  # any conversion would fail
            tracemalloc.start()
            m.forward(mm, out=out)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            np.ascontiguousarray = real
        assert np.array_equal(out, expected)
        assert peak < x.nbytes // 4, f"{peak} bytes allocated for a {x.nbytes}-byte input"
        # Anything else is converted once and gives the same logits.
        assert np.array_equal(m.forward(x.astype(np.float64)), expected)
        assert np.array_equal(m.forward(np.asfortranarray(x)), expected)
        assert np.array_equal(m.forward(x.tolist()), expected)


def test_refusals(tiny_case):
    x = np.load(os.path.join(tiny_case, "input.npy"))[0]
    m = segmamba.Model(os.path.join(tiny_case, "model.safetensors"), threads=THREADS,
                       nslices=(16, 8, 4, 2))

    def refused(arr, status):
        with pytest.raises(segmamba.Error) as e:
            m.forward(arr)
        assert e.value.status == status
        print(f"{status}: {e.value}")
        return str(e.value)

    assert refused(x[0], "E_SHAPE") == ("input: expected a float32 array shaped (N, 2, D, H, W) "
                                        "or (2, D, H, W); got 3 dimensions 32x32x32")
    assert refused(np.zeros((3, 32, 32, 32), np.float32), "E_SHAPE").endswith("4 dimensions 3x32x32x32")
    msg = refused(np.zeros((2, 32, 32, 24), np.float32), "E_SHAPE")
    assert "24" in msg and "16" in msg  # the engine's own words: sides are multiples of 16
    bad = x.copy()
    bad[1, 2, 3, 4] = np.nan
    assert refused(bad, "E_UNSUPPORTED").startswith("input: element [1, 2, 3, 4] is NaN")
    assert refused(np.zeros((2, 32, 32, 32), np.complex64), "E_ARG") == \
        "input: dtype complex64 cannot be converted to float32"
    assert refused("not an array", "E_ARG").startswith("input: dtype <U")
    m.close()
    with pytest.raises(segmamba.Error) as e:
        m.forward(x)
    assert e.value.status == "E_ARG" and str(e.value) == "the model is closed"
    m.close()  # twice is fine
    with pytest.raises(segmamba.Error) as e:
        segmamba.Model(os.path.join(tiny_case, "no_such.safetensors"))
    assert e.value.status == "E_IO" and e.value.code == 2
    with pytest.raises(segmamba.Error) as e:
        segmamba.Model(os.path.join(tiny_case, "model.safetensors"), conv="fast")
    assert e.value.status == "E_ARG"


def test_torch_tensor_call(tiny_case):
    torch = pytest.importorskip("torch")
    x = np.load(os.path.join(tiny_case, "input.npy"))
    with segmamba.Model(os.path.join(tiny_case, "model.safetensors"), threads=THREADS,
                        nslices=(16, 8, 4, 2)) as m:
        y = m(torch.from_numpy(x).double())
        assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
        assert np.array_equal(y.numpy(), m.forward(x))
        assert isinstance(m(x), np.ndarray)


def test_config_card_profile(tiny_case, official_case):
    case = load_case(official_case)
    with segmamba.Model(os.path.join(official_case, "model.safetensors"), threads=THREADS) as m:
        c = m.config
        assert c["family"] == "SegMamba v1" and c["mamba_type"] == "v3"
        assert (c["in_channels"], c["out_channels"]) == (4, 4)
        assert c["features"] == tuple(case["config"]["feat_size"]) == (48, 96, 192, 384)
        assert c["depths"] == (2, 2, 2, 2) and c["hidden_size"] == 768
        import torch
        sd = torch.load(os.path.join(official_case, "model.pt"))
        assert c["parameters"] == sum(v.numel() for v in sd.values())
        assert c["nslices"] == tuple(case["nslices"])  # from the safetensors metadata
        assert c["card"] == m.card and m.card["patch"] == [128, 128, 128]
        assert m.card["labels"] == ["background", "NCR", "ED", "ET"]  # BraTS defaults
        assert m.profile["flops"] == 0.0
        m.forward(np.load(os.path.join(official_case, "input.npy")))
        p = m.profile
        parts = p["seconds_conv"] + p["seconds_scan"] + p["seconds_norm"] + p["seconds_other"]
        assert p["flops"] > 1e9 and p["seconds"] == pytest.approx(parts) and parts > 0
        assert 0 < p["seconds_conv3x3x3"] <= p["seconds_conv"]
        assert m.config["arena_bytes"] > 0
        # every copy the backends hold: at least the parameters' 4 bytes each
        assert m.config["weight_bytes"] >= 4 * c["parameters"]
        assert sum(l["seconds"] for l in m.layers()) == pytest.approx(parts, rel=0.05)
    with segmamba.Model(os.path.join(tiny_case, "model.safetensors")) as m:
        assert m.card["generic"] and m.card["channels"][0]["name"] == "ch0"
