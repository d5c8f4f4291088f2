"""A small safetensors reader with numpy only (no torch, no safetensors
package): F32, F16, BF16 and F64 tensors, returned as float32 arrays; and
an F32 writer for tests that build (or break) checkpoints from arrays."""

import json
import struct

import numpy as np


def read_safetensors(path):
    """Returns ({name: float32 ndarray}, {metadata key: value})."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", None) or {}
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        raw = data[begin:end]
        dtype = info["dtype"]
        if dtype == "BF16":  # numpy has no bfloat16: widen the bit pattern
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        elif dtype in ("F32", "F16", "F64"):
            a = np.frombuffer(raw, {"F32": "<f4", "F16": "<f2", "F64": "<f8"}[dtype])
        else:
            raise ValueError(f"{path}: tensor {name}: dtype {dtype} is not handled")
        out[name] = a.astype(np.float32).reshape(info["shape"])
    return out, meta


def write_safetensors_f32(path, tensors, metadata=None, header_edit=None):
    """Writes {name: array} as F32, names sorted; header_edit(header) may
    change the header dict before it is written."""
    header, chunks, off = {}, [], 0
    for name in sorted(tensors):
        buf = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [off, off + len(buf)]}
        chunks.append(buf)
        off += len(buf)
    if metadata:
        header["__metadata__"] = metadata
    if header_edit:
        header_edit(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))
