#!/usr/bin/python3
"""Builds the checkpoint and array fixtures for tests/test_checkpoint.c.

Run with Debian's python (torch 1.13, numpy) from the repository root:

    /usr/bin/python3 tests/reference/make_loader_fixtures.py

Writes tests/fixtures/loaders/: torch.save files (plain, wrapped, protocol 4,
ZIP64), safetensors written here by hand, .npy files of many dtypes, and
files that must be refused (a pickle naming os.system, truncations, bad
offsets, ...). expected.json holds the exact float32 values the C test
compares against; the refusals and their messages are listed in the test.
"""
import collections
import json
import os
import pickle
import struct
import zlib

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "loaders")
expected = {}


def path(name):
    return os.path.join(OUT, name)


def write(name, data):
    with open(path(name), "wb") as f:
        f.write(data)


def float32_values(t):
    """Exact float32 values as Python floats (repr round-trips them)."""
    return [float(v) for v in t.detach().to(torch.float32).reshape(-1).tolist()]


def expect(fixture, tensors, metadata=None):
    entry = {"tensors": {name: {"shape": list(t.shape), "values": float32_values(t)}
                         for name, t in tensors.items()}}
    if metadata is not None:
        entry["metadata"] = metadata
    expected[fixture] = entry


# ---------------------------------------------------------------- state dicts

def make_state_dict():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv3d(2, 3, 2), torch.nn.BatchNorm1d(3))
    with torch.no_grad():
        model[1].running_mean.normal_()
        model[1].running_var.uniform_(0.5, 2.0)
        model[1].num_batches_tracked.fill_(7)
    sd = model.state_dict()  # an OrderedDict carrying _metadata (pickled with BUILD)
    base = torch.randn(4, 6)
    sd["proj.weight_t"] = base.t()  # transposed view: strides (1, 6)
    grid = torch.arange(40, dtype=torch.float32).reshape(5, 8)
    sd["grid.slice"] = grid[1:4, 2::3]  # storage offset 10, strides (8, 3)
    sd["norm.weight_f16"] = torch.randn(5).half()
    sd["norm.bias_bf16"] = torch.randn(5).bfloat16()
    sd["scale_f64"] = torch.randn(2, 2, dtype=torch.float64)
    sd["temperature"] = torch.tensor(0.125)  # 0-d
    sd["empty"] = torch.zeros(0, 3)
    sd["param"] = torch.nn.Parameter(torch.tensor([1.5, -2.25]))  # _rebuild_parameter
    return sd


def torch_fixtures(sd):
    plain = collections.OrderedDict((k, v.detach()) for k, v in sd.items())
    torch.save(sd, path("state_dict.pt"))
    expect("state_dict.pt", plain)

    torch.save(sd, path("state_dict_proto4.pt"), pickle_protocol=4)
    expect("state_dict_proto4.pt", plain)

    wrapped = {"module": collections.OrderedDict(("module." + k, v) for k, v in sd.items())}
    torch.save(wrapped, path("state_dict_module.pt"))
    expect("state_dict_module.pt", plain)  # sm_load_weights strips "module."

    small = collections.OrderedDict((k, sd[k]) for k in ["0.bias", "temperature"])
    torch.save({"epoch": 3, "state_dict": small, "best": 0.5}, path("checkpoint_wrapped.pt"))
    expect("checkpoint_wrapped.pt", small)


# ---------------------------------------------------------------- zip writer

def write_zip(name, entries, zip64=False, deflate=(), prefix="archive"):
    """A zip laid out like torch's writer: stored entries whose local extra
    field is padded ("FB" + 'Z's) so that the data starts 64-byte aligned.
    zip64 adds ZIP64 extra fields and end records; names in deflate are
    compressed."""
    out = bytearray()
    central = []
    for leaf, data in entries:
        name_b = (prefix + "/" + leaf).encode()
        method = 8 if leaf in deflate else 0
        if method == 8:
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            payload = c.compress(data) + c.flush()
        else:
            payload = data
        crc = zlib.crc32(data)
        offset = len(out)
        extra = struct.pack("<HHQQ", 1, 16, len(data), len(payload)) if zip64 else b""
        pad = (-(offset + 30 + len(name_b) + len(extra) + 4)) % 64
        extra += struct.pack("<HH", 0x4246, pad) + b"Z" * pad
        sizes = (0xFFFFFFFF, 0xFFFFFFFF) if zip64 else (len(payload), len(data))
        version = 45 if zip64 else 20
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, version, 0, method, 0, 0x21, crc,
                           sizes[0], sizes[1], len(name_b), len(extra))
        out += name_b + extra + payload
        central.append((name_b, method, crc, len(payload), len(data), offset))
    cd_start = len(out)
    for name_b, method, crc, csize, size, offset in central:
        version = 45 if zip64 else 20
        if zip64:
            extra = struct.pack("<HHQQQ", 1, 24, size, csize, offset)
            csize = size = offset = 0xFFFFFFFF
        else:
            extra = b""
        out += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, version, version, 0, method, 0,
                           0x21, crc, csize, size, len(name_b), len(extra), 0, 0, 0, 0, offset)
        out += name_b + extra
    cd_size = len(out) - cd_start
    n = len(central)
    if zip64:
        record = len(out)
        out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, n, n, cd_size, cd_start)
        out += struct.pack("<IIQI", 0x07064B50, 0, record, 1)
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                           0xFFFFFFFF, 0)
    else:
        out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, cd_size, cd_start, 0)
    write(name, bytes(out))


def torch_entries(name):
    """The (leaf, bytes) entries of a torch.save file, in order."""
    import zipfile
    with zipfile.ZipFile(path(name)) as z:
        return [(i.filename.split("/", 1)[1], z.read(i)) for i in z.infolist()]


# ---------------------------------------------------------------- hand-written pickles

def p_str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def p_int(i):
    return b"K" + bytes([i]) if 0 <= i < 256 else b"J" + struct.pack("<i", i)


def p_tuple(xs):
    return b"(" + b"".join(p_int(x) for x in xs) + b"t"


def p_tensor(key, numel, offset, size, stride, storage="FloatStorage"):
    """_rebuild_tensor_v2 over the storage ('storage', torch.<storage>, key, 'cpu', numel)."""
    pid = (b"(" + p_str("storage") + b"ctorch\n" + storage.encode() + b"\n" + p_str(key)
           + p_str("cpu") + p_int(numel) + b"tQ")
    return (b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + p_int(offset) + p_tuple(size)
            + p_tuple(stride) + b"\x89ccollections\nOrderedDict\n)RtR")


def p_dict(items):
    """Protocol-2 pickle of {key: value_opcodes, ...}."""
    return b"\x80\x02}(" + b"".join(p_str(k) + v for k, v in items) + b"u."


def hostile_torch_fixtures(sd):
    four_floats = struct.pack("<4f", 1, 2, 3, 4)

    def pt(name, pickle, storages=(("0", four_floats),), **kw):
        entries = [("data.pkl", pickle)] + [("data/" + k, v) for k, v in storages]
        write_zip(name, entries + [("version", b"3\n")], **kw)

    # What pickling a class whose __reduce__ returns (os.system, ("echo pwned",)) gives.
    pt("evil_os_system.pt", b"\x80\x02cos\nsystem\nq\x00X\n\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.")
    pt("bad_binget.pt", b"\x80\x02}q\x00(X\x01\x00\x00\x00ah\xc8u.")
    pt("huge_memo_index.pt", b"\x80\x02}r\xff\xff\xff\xff.")
    pt("storage_overrun.pt", p_dict([("w", p_tensor("0", 4, 0, [10], [1]))]))
    pt("strided_overrun.pt", p_dict([("w", p_tensor("0", 4, 1, [2, 2], [2, 1]))]))
    pt("storage_short.pt", p_dict([("w", p_tensor("0", 100, 0, [100], [1]))]))
    pt("broadcast_view.pt", p_dict([("w", p_tensor("0", 4, 0, [1000, 4], [0, 1]))]))
    pt("missing_storage.pt", p_dict([("w", p_tensor("7", 4, 0, [4], [1]))]))
    pt("non_tensor_value.pt", p_dict([("w", p_tensor("0", 4, 0, [4], [1])), ("step", p_int(5))]))
    pt("byte_storage.pt", p_dict([("w", p_tensor("0", 4, 0, [4], [1], "ByteStorage"))]))
    pt("no_stop.pt", p_dict([("w", p_tensor("0", 4, 0, [4], [1]))])[:-1])
    pt("truncated_pickle.pt", p_dict([("w", p_tensor("0", 4, 0, [4], [1]))])[:40])
    good = p_dict([("w", p_tensor("0", 4, 0, [2, 2], [1, 2]))])
    pt("handmade.pt", good)
    expect("handmade.pt", {"w": torch.tensor([[1.0, 3.0], [2.0, 4.0]])})

    entries = torch_entries("state_dict.pt")
    write_zip("state_dict_zip64.pt", entries, zip64=True)
    expect("state_dict_zip64.pt", {k: v.detach() for k, v in sd.items()})
    write_zip("deflated.pt", entries, deflate=("data.pkl",))
    write_zip("big_endian.pt", entries + [("byteorder", b"big")])

    with open(path("state_dict.pt"), "rb") as f:
        whole = f.read()
    write("truncated.pt", whole[: len(whole) // 2])

    torch.save(torch.nn.Linear(2, 1), path("whole_model.pt"))
    # A pre-1.6 torch.save file begins with two pickles: torch's magic number
    # and protocol version. (The rest holds object ids, which vary per run.)
    write("legacy.pt", pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2))


# ---------------------------------------------------------------- safetensors

def tensor_bytes(t, dtype):
    t = t.detach().contiguous()
    if dtype == "F32":
        return t.to(torch.float32).numpy().astype("<f4").tobytes()
    if dtype == "F16":
        return t.to(torch.float16).numpy().astype("<f2").tobytes()
    if dtype == "BF16":
        return t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
    if dtype == "F64":
        return t.to(torch.float64).numpy().astype("<f8").tobytes()
    raise ValueError(dtype)


def safetensors_bytes(tensors, dtype, metadata=None, ensure_ascii=True):
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    blobs, offset = [], 0
    for name, t in tensors.items():
        b = tensor_bytes(t, dtype)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    text = json.dumps(header, ensure_ascii=ensure_ascii).encode()
    text += b" " * ((-(8 + len(text))) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def rounded(t, dtype):
    torch_dtype = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                   "F64": torch.float64}[dtype]
    return t.detach().to(torch_dtype).to(torch.float32)


def safetensors_fixtures(sd):
    # Not sorted, so that the reader cannot rely on the order.
    names = ["proj.weight_t", "0.weight", "temperature", "0.bias", "empty", "grid.slice"]
    tensors = collections.OrderedDict((k, sd[k].detach().to(torch.float32)) for k in names)
    # \u escapes (json.dumps' default) of a quote, accents and a surrogate pair.
    metadata = {"format": "pt", "note": "caf\u00e9 \"quoted\" \\ tab\t \U0001F9E0 \u65e5\u672c"}
    for dtype in ["F32", "F16", "BF16", "F64"]:
        name = "model_%s.safetensors" % dtype.lower()
        write(name, safetensors_bytes(tensors, dtype, metadata))
        expect(name, {k: rounded(t, dtype) for k, t in tensors.items()}, metadata)

    small = {"w": torch.tensor([1.0, 2.0, 3.0])}
    good = safetensors_bytes(small, "F32")
    write("truncated.safetensors", good[:-3])
    write("header_too_long.safetensors", struct.pack("<Q", len(good)) + good[8:])
    header = b'{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,4000]}}'
    write("bad_offsets.safetensors", struct.pack("<Q", len(header)) + header + good[-12:])
    header = b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}}'
    write("offsets_mismatch.safetensors", struct.pack("<Q", len(header)) + header + good[-12:])
    header = b'{"w":{"dtype":"F8_E4M3","shape":[3],"data_offsets":[0,3]}}'
    write("bad_dtype.safetensors", struct.pack("<Q", len(header)) + header + b"\0\0\0")
    header = b'{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},}'
    write("bad_json.safetensors", struct.pack("<Q", len(header)) + header + good[-12:])


# ---------------------------------------------------------------- npy

def npy_fixtures():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((2, 3, 4))
    arrays = {
        "f4.npy": base.astype("<f4"),
        "f8.npy": base.astype("<f8"),
        "f2.npy": base.astype("<f2"),
        "u1.npy": np.arange(250, 256, dtype="|u1").reshape(2, 3),
        "i1.npy": np.array([-128, -1, 0, 127], dtype="|i1"),
        "i2.npy": np.array([-32768, -2, 3, 32767], dtype="<i2"),
        "u2.npy": np.array([0, 1, 65535], dtype="<u2"),
        "i4.npy": np.array([[-7, 8], [9, -2147483648]], dtype="<i4"),
        "u4.npy": np.array([0, 4294967295, 16777217], dtype="<u4"),
        "i8.npy": np.array([-3, 1 << 40, 5], dtype="<i8"),
        "b1.npy": np.array([True, False, True]),
        "f4_big_endian.npy": base.astype(">f4"),
        "i2_big_endian.npy": np.array([-2, 258, 7], dtype=">i2"),
        "f4_fortran.npy": np.asfortranarray(base.astype("<f4")),
        "f8_fortran_2d.npy": np.asfortranarray(np.arange(6, dtype="<f8").reshape(2, 3)),
        "scalar.npy": np.array(2.5, dtype="<f4"),
        "empty.npy": np.zeros((0, 3), dtype="<f4"),
    }
    for name, a in arrays.items():
        np.save(path(name), a)
        expect(name, {"array": torch.from_numpy(np.array(a, dtype="<f4", order="C"))})
    for version in [(2, 0), (3, 0)]:
        name = "f4_v%d.npy" % version[0]
        with open(path(name), "wb") as f:
            np.lib.format.write_array(f, base.astype("<f4"), version=version)
        expect(name, {"array": torch.from_numpy(base.astype("<f4"))})

    with open(path("f4.npy"), "rb") as f:
        whole = f.read()
    write("truncated.npy", whole[:-5])
    np.save(path("structured.npy"), np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]))
    np.save(path("complex.npy"), np.zeros(2, dtype="<c8"))


def main():
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        os.remove(path(name))
    sd = make_state_dict()
    torch_fixtures(sd)
    hostile_torch_fixtures(sd)
    safetensors_fixtures(sd)
    npy_fixtures()
    with open(path("expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, sort_keys=True)
        f.write("\n")
    total = sum(os.path.getsize(path(n)) for n in os.listdir(OUT))
    print("wrote %d files, %d bytes, to %s" % (len(os.listdir(OUT)), total, os.path.normpath(OUT)))


if __name__ == "__main__":
    main()
