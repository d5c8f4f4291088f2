"""A minimal safetensors writer, so the fixtures do not depend on the
`safetensors` package.

Layout: 8-byte little-endian header length, a JSON header mapping each tensor
name (sorted) to {"dtype", "shape", "data_offsets": [begin, end]} relative to
the end of the header, plus "__metadata__" (str -> str); the header is padded
with spaces so the data starts 8-byte aligned; then the raw little-endian data
in header order.
"""

import json
import struct

import torch

# safetensors dtype name -> (torch dtype, little-endian numpy dtype of the bits)
DTYPES = {
    "F32": (torch.float32, "<f4"),
    "F16": (torch.float16, "<f2"),
    "BF16": (torch.bfloat16, "<i2"),
}


def tensor_bytes(t, dtype):
    """Raw little-endian bytes of float tensor t converted (round to nearest even) to dtype."""
    tdt, npdt = DTYPES[dtype]
    t = t.detach().to(tdt).contiguous()
    if tdt is torch.bfloat16:  # numpy has no bfloat16: write its bit pattern
        t = t.view(torch.int16)
    return t.numpy().astype(npdt, copy=False).tobytes()


def write_safetensors(path, tensors, dtype="F32", metadata=None):
    """Write a {name: float tensor} dict with every tensor stored as dtype."""
    header = {}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        data = tensor_bytes(tensors[name], dtype)
        header[name] = {"dtype": dtype, "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in chunks:
            f.write(data)
