#!/usr/bin/python3
"""Self-test of the PyTorch reference (segmamba_ref.py) and its tools.

    /usr/bin/python3 tests/reference/selftest.py

Checks the chunked selective scan against the sequential loop, the three
sequence orders, the state_dict layout against a key list written down
independently from the spec, the official parameter count, the safetensors
writer and compare(). Prints one line per check, then "N passed, N failed";
exits non-zero on any failure.
"""

import json
import math
import os
import struct
import sys
import tempfile
import time
import traceback

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_case  # noqa: E402
import segmamba_ref as ref  # noqa: E402
from compare import compare  # noqa: E402
from safetensors_writer import write_safetensors  # noqa: E402

OFFICIAL = dict(in_chans=4, out_chans=4, depths=[2, 2, 2, 2], feat_size=[48, 96, 192, 384],
                hidden_size=768)
OFFICIAL_PARAMS = 67_416_196
CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def max_rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# ---------------------------------------------------------------- scan


def scan_inputs(gen, d, L, N, log_delta_range):
    lo, hi = log_delta_range
    u = torch.randn(d, L, generator=gen)
    delta = torch.exp(torch.rand(d, L, generator=gen) * (hi - lo) + lo)
    A = -(torch.rand(d, N, generator=gen) * 15.5 + 0.5)
    B = torch.randn(N, L, generator=gen)
    C = torch.randn(N, L, generator=gen)
    return u, delta, A, B, C


@check
def scan_chunked_matches_loop():
    gen = torch.Generator().manual_seed(11)
    cases = [  # (d, L, N, log delta range, chunk, block_elems)
        (16, 4096, 16, (math.log(1e-4), math.log(1e2)), ref.SCAN_CHUNK, ref.SCAN_BLOCK_ELEMS),
        (16, 4096, 16, (math.log(1e-6), math.log(1e-3)), 16, ref.SCAN_BLOCK_ELEMS),
        (24, 1001, 16, (math.log(1e-3), math.log(0.5)), ref.SCAN_CHUNK, ref.SCAN_BLOCK_ELEMS),
        (8, 777, 8, (math.log(1e-3), math.log(3.0)), 64, 1 << 16),  # several groups
        (8, 5, 16, (math.log(1e-3), math.log(0.5)), ref.SCAN_CHUNK, ref.SCAN_BLOCK_ELEMS),
    ]
    for d, L, N, rng, chunk, block in cases:
        u, delta, A, B, C = scan_inputs(gen, d, L, N, rng)
        want = ref.scan_loop(u, delta, A, B, C)
        got = ref.scan_chunked(u, delta, A, B, C, chunk=chunk, block_elems=block)
        assert torch.isfinite(got).all(), f"L={L}: non-finite output"
        err = max_rel_err(got, want)
        assert err < 1e-5, f"d={d} L={L} chunk={chunk}: max rel err {err:.3g}"


@check
def sequence_orders():
    L, S = 48, 8
    m = L // S
    assert ref.sequence_order("", L, S).tolist() == list(range(L))
    assert ref.sequence_order("_b", L, S).tolist() == list(range(L - 1, -1, -1))
    spec = [0] * L
    for q in range(L):  # q = j*S + s visits token s*m + j
        j, s = divmod(q, S)
        spec[q] = s * m + j
    got = ref.sequence_order("_s", L, S).tolist()
    assert got == spec, got
    # The released code builds it as chunk(S) -> stack on a new last axis -> flatten.
    stacked = torch.stack(torch.arange(L).chunk(S), dim=-1).flatten().tolist()
    assert got == stacked
    try:
        ref.sequence_order("_s", L, 5)
    except ValueError:
        pass
    else:
        raise AssertionError("L % nslices != 0 was accepted")


@check
def mamba_directions_loop_vs_chunked():
    gen = torch.Generator().manual_seed(5)
    L, dim, S = 640, 20, 10  # dt_rank 2
    fast = ref.Mamba(dim, S, scan="chunked")
    slow = ref.Mamba(dim, S, scan="loop")
    gen_case.randomize_(fast, gen)
    slow.load_state_dict(fast.state_dict())
    t = torch.randn(L, dim, generator=gen)
    with torch.no_grad():
        xz = fast.in_proj.weight @ t.t()
        x, z = xz[:fast.d_inner], xz[fast.d_inner:]
        for s in ref.DIRECTIONS:
            err = max_rel_err(fast.direction(x, z, s), slow.direction(x, z, s))
            assert err < 1e-5, f"direction {s!r}: max rel err {err:.3g}"
        err = max_rel_err(fast(t), slow(t))
        assert err < 1e-5, f"sum of directions: max rel err {err:.3g}"


@check
def mamba_types():
    """v2 and none hold the first two / one direction of v3 (spec 7.1) and sum
    just those; nslices is then unused."""
    gen = torch.Generator().manual_seed(6)
    L, dim, S = 60, 8, 6
    full = ref.Mamba(dim, S)
    gen_case.randomize_(full, gen)
    t = torch.randn(L, dim, generator=gen)
    with torch.no_grad():
        xz = full.in_proj.weight @ t.t()
        x, z = xz[:full.d_inner], xz[full.d_inner:]
        ys = {s: full.direction(x, z, s) for s in ref.DIRECTIONS}
        for kind, dirs in (("v2", ("", "_b")), ("none", ("",))):
            m = ref.Mamba(dim, 7, mamba_type=kind)  # 7 does not divide L: unused
            keys = set(m.state_dict())
            assert not any("_s" in k for k in keys) and (kind == "v2") == any("_b" in k for k in keys), \
                f"{kind}: {sorted(keys)}"
            m.load_state_dict({k: v for k, v in full.state_dict().items() if k in keys})
            want = (full.out_proj.weight @ sum(ys[s] for s in dirs)).t()
            err = max_rel_err(m(t), want)
            assert err < 1e-6, f"{kind}: max rel err {err:.3g}"
            net = ref.SegMambaRef(**gen_case.CONFIGS["tiny"], nslices=[5, 5, 5, 5], mamba_type=kind)
            net.check_shape((32, 32, 32))


@check
def network_loop_vs_chunked():
    gen = torch.Generator().manual_seed(3)
    cfg = {**gen_case.CONFIGS["tiny"], **gen_case.MAMBA_DEFAULTS}
    n = 32
    nslices = [n >> (i + 1) for i in range(4)]
    fast = ref.SegMambaRef(**cfg, nslices=nslices, fue=True, scan="chunked")
    slow = ref.SegMambaRef(**cfg, nslices=nslices, fue=True, scan="loop")
    gen_case.randomize_(fast, gen)
    slow.load_state_dict(fast.state_dict())
    x = gen_case.make_input(gen, cfg["in_chans"], (n, n, n))
    err = max_rel_err(fast(x), slow(x))
    assert err < 1e-5, f"max rel err {err:.3g}"


@check
def shape_refusals():
    m = ref.SegMambaRef(**OFFICIAL, nslices=ref.DEFAULT_NSLICES)
    for shape in [(128, 128, 120), (0, 16, 16), (16, 16)]:
        try:
            m.check_shape(shape)
        except ValueError:
            continue
        raise AssertionError(f"{shape} was accepted")
    try:  # stage 0 of a 32^3 input has 16^3 tokens: 4096 % 64 == 0, stage 3: 8 % 8 == 0
        m.check_shape((32, 32, 32))
    except ValueError as e:
        raise AssertionError(f"32^3 refused: {e}")
    try:
        ref.SegMambaRef(**OFFICIAL, nslices=[64, 32, 16, 16]).check_shape((32, 32, 32))
    except ValueError:
        pass
    else:
        raise AssertionError("stage 3 with 8 tokens and nslices 16 was accepted")
    # The smallest input: stage 3 is a single voxel, its instance norms give 0.
    tiny = ref.SegMambaRef(**gen_case.CONFIGS["tiny"], nslices=[8, 4, 2, 1])
    gen_case.randomize_(tiny, torch.Generator().manual_seed(0))
    assert torch.isfinite(tiny(torch.randn(1, 2, 16, 16, 16))).all()


# ---------------------------------------------------------------- layout


def spec_state_dict_shapes(in_chans, out_chans, depths, feat_size, hidden_size):
    """The checkpoint layout, written out from the spec (section 2) by hand."""
    k = {}

    def conv(prefix, cout, cin, ks, bias=True):
        k[prefix + ".weight"] = (cout, cin, ks, ks, ks)
        if bias:
            k[prefix + ".bias"] = (cout,)

    def resblock(p, cin, cout):
        conv(p + ".conv1.conv", cout, cin, 3, bias=False)
        conv(p + ".conv2.conv", cout, cout, 3, bias=False)
        if cin != cout:
            conv(p + ".conv3.conv", cout, cin, 1, bias=False)

    f = feat_size
    conv("vit.downsample_layers.0.0", f[0], in_chans, 7)
    for i in range(1, 4):
        conv(f"vit.downsample_layers.{i}.1", f[i], f[i - 1], 2)
    for i, c in enumerate(f):
        g = f"vit.gscs.{i}"
        conv(g + ".proj", c, c, 3)
        conv(g + ".proj2", c, c, 3)
        conv(g + ".proj3", c, c, 1)
        conv(g + ".proj4", c, c, 1)
        di, r, n = 2 * c, -(-c // 16), 16
        for j in range(depths[i]):
            s = f"vit.stages.{i}.{j}"
            k[s + ".norm.weight"] = (c,)
            k[s + ".norm.bias"] = (c,)
            m = s + ".mamba."
            k[m + "in_proj.weight"] = (2 * di, c)
            k[m + "out_proj.weight"] = (c, di)
            for conv1d, x_proj, dt_proj, a_log, d in (
                    ("conv1d", "x_proj", "dt_proj", "A_log", "D"),
                    ("conv1d_b", "x_proj_b", "dt_proj_b", "A_b_log", "D_b"),
                    ("conv1d_s", "x_proj_s", "dt_proj_s", "A_s_log", "D_s")):
                k[m + conv1d + ".weight"] = (di, 1, 4)
                k[m + conv1d + ".bias"] = (di,)
                k[m + x_proj + ".weight"] = (r + 2 * n, di)
                k[m + dt_proj + ".weight"] = (di, r)
                k[m + dt_proj + ".bias"] = (di,)
                k[m + a_log] = (di, n)
                k[m + d] = (di,)
        conv(f"vit.mlps.{i}.fc1", 2 * c, c, 1)
        conv(f"vit.mlps.{i}.fc2", c, 2 * c, 1)
    resblock("encoder1.layer", in_chans, f[0])
    for i in range(1, 4):
        resblock(f"encoder{i + 1}.layer", f[i - 1], f[i])
    resblock("encoder5.layer", f[3], hidden_size)
    for name, cin, cout in (("decoder5", hidden_size, f[3]), ("decoder4", f[3], f[2]),
                            ("decoder3", f[2], f[1]), ("decoder2", f[1], f[0])):
        k[name + ".transp_conv.conv.weight"] = (cin, cout, 2, 2, 2)
        resblock(name + ".conv_block", 2 * cout, cout)
    resblock("decoder1.layer", f[0], f[0])
    conv("out.conv.conv", out_chans, f[0], 1)
    return k


@check
def official_state_dict_layout():
    want = spec_state_dict_shapes(**OFFICIAL)
    got = {k: tuple(v.shape) for k, v in
           ref.SegMambaRef(**OFFICIAL, nslices=ref.DEFAULT_NSLICES).state_dict().items()}
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    assert not missing and not extra, f"missing {missing[:5]}, unexpected {extra[:5]}"
    wrong = [k for k in want if want[k] != got[k]]
    assert not wrong, f"shape differs: {[(k, got[k], want[k]) for k in wrong[:5]]}"
    assert sum(math.prod(s) for s in want.values()) == OFFICIAL_PARAMS


@check
def official_parameter_count():
    model = ref.SegMambaRef(**OFFICIAL, nslices=ref.DEFAULT_NSLICES)
    n = sum(p.numel() for p in model.parameters())
    assert n == OFFICIAL_PARAMS, f"{n} parameters, want {OFFICIAL_PARAMS}"
    assert not list(model.buffers()), "the model should have no buffers"


# ---------------------------------------------------------------- tools


def read_safetensors(path):
    """Parse a safetensors file strictly; returns ({name: float32 array}, metadata)."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    assert n % 8 == 0, "header length is not a multiple of 8"
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    meta = header.pop("__metadata__", {})
    names = list(header)
    assert names == sorted(names), "tensors are not sorted by name"
    out, pos = {}, 0
    for name in names:
        e = header[name]
        begin, end = e["data_offsets"]
        assert begin == pos, f"{name}: data not contiguous"
        raw = data[begin:end]
        if e["dtype"] == "F32":
            a = np.frombuffer(raw, "<f4")
        elif e["dtype"] == "F16":
            a = np.frombuffer(raw, "<f2").astype(np.float32)
        elif e["dtype"] == "BF16":
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise AssertionError(f"{name}: unexpected dtype {e['dtype']}")
        out[name] = a.reshape(e["shape"])
        pos = end
    assert pos == len(data), "trailing bytes after the last tensor"
    return out, meta


@check
def safetensors_round_trip():
    gen = torch.Generator().manual_seed(2)
    tensors = {"b.w": torch.randn(3, 5, generator=gen) * 100, "a": torch.randn(7, generator=gen),
               "c.scalar_like": torch.randn(1, generator=gen)}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype, tdt in (("F32", torch.float32), ("F16", torch.float16), ("BF16", torch.bfloat16)):
            path = os.path.join(tmp, dtype + ".safetensors")
            write_safetensors(path, tensors, dtype, {"config": json.dumps({"k": 1})})
            got, meta = read_safetensors(path)
            assert json.loads(meta["config"]) == {"k": 1}
            assert set(got) == set(tensors)
            for name, t in tensors.items():
                want = t.to(tdt).float().numpy()
                assert np.array_equal(got[name], want), f"{dtype} {name}"


@check
def compare_tool():
    gen = np.random.default_rng(0)
    a = gen.standard_normal((1, 4, 8, 8, 8)).astype(np.float32)
    assert compare(a, a)[0]
    assert compare(a[0], a[0] + 1e-4 * np.abs(a).max())[0]
    assert not compare(a, a + 2e-3 * np.abs(a).max())[0]
    ok, report = compare(a, a[:, :3])
    assert not ok and "shape mismatch" in report
    b = a.copy()
    b[0, 0, 0, 0, 0] = np.nan
    assert not compare(a, b)[0]
    c = a.copy()  # a swap of two class scores everywhere: tiny error budget is not enough
    c[0, [0, 1]] = c[0, [1, 0]]
    assert not compare(a, c, rel=10)[0]


@check
def compare_against_truth():
    """compare(..., truth): errors and labels measured against the float64
    answer; as many label flips as the float32 reference has are allowed,
    one more is not, and an error that is small against the reference but
    large against the truth fails."""
    gen = np.random.default_rng(1)
    truth = gen.standard_normal((1, 3, 10, 10, 10))
    labels = truth[0].argmax(0)

    def flipped(x, voxels):
        x = x.copy()
        for v in voxels:
            i, j, k = np.unravel_index(v, labels.shape)
            top = labels[i, j, k]
            x[0, (top + 1) % 3, i, j, k] = x[0, top, i, j, k] + 1e-6
        return x

    # (the flips change one score each by up to a few units: rel=10 leaves
    # the labels alone to decide)
    ref = flipped(truth, [1, 2, 3])  # 3 flips in 1000 voxels
    ok, report = compare(ref, flipped(truth, [4, 5, 6]), rel=10, argmax=0.999, truth=truth)
    assert ok and "3 of 1000 differ" in report, report
    ok, report = compare(ref, flipped(truth, [4, 5, 6, 7]), rel=10, argmax=0.999, truth=truth)
    assert not ok and "4 of 1000 differ" in report, report
    # without truth the same arrays are measured against ref: 6 or 7 differ
    assert not compare(ref, flipped(truth, [4, 5, 6]), rel=10, argmax=0.999)[0]
    # the fraction alone still allows what it allowed: 1 flip in 1000
    ok, report = compare(truth, flipped(truth, [9]), rel=10, argmax=0.999, truth=truth)
    assert ok and "1 of 1000 differ" in report, report
    # an error of 2e-3 x max against the truth fails even where ref shares it
    off = truth + 2e-3 * np.abs(truth).max()
    assert compare(off, off, rel=1e-3)[0]
    assert not compare(off, off, rel=1e-3, truth=truth)[0]
    ok, report = compare(truth, truth, truth=truth[:, :2])
    assert not ok and "shape mismatch" in report


def main():
    torch.set_num_threads(2)
    passed = failed = 0
    for fn in CHECKS:
        t0 = time.perf_counter()
        try:
            fn()
        except Exception:  # report every failing check, not just the first
            failed += 1
            print(f"FAIL {fn.__name__}")
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print(f"PASS {fn.__name__} ({time.perf_counter() - t0:.1f}s)")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
