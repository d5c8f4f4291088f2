#!/usr/bin/env python3
"""Builds tests/fixtures/containers/: the committed tiny model
(tests/fixtures/tiny/model.safetensors) saved the ways training code saves
checkpoints, for tests/test_containers.py.

Run from the repository root with a PyTorch 2.x (the committed files were
written with torch 2.15.0 from PyPI, on purpose newer than Debian's torch
1.13 that the test suite uses):

    python3 -m venv /tmp/venv-torch && /tmp/venv-torch/bin/pip install torch
    /tmp/venv-torch/bin/python tests/reference/make_container_fixtures.py

- nnunet.pt: nnU-Net's trainer checkpoint: {"network_weights": sd,
  "optimizer_state": SGD with momentum (a buffer per parameter), the grad
  scaler's None, logging lists of floats, "current_epoch", "init_args",
  "trainer_name", "inference_allowed_mirroring_axes" (a tuple), ...}.
- lightning.pt: a Lightning checkpoint of a torch.compile'd model:
  {"state_dict": sd with keys "_orig_mod.*", "epoch", "global_step",
  "optimizer_states": [Adam's state (with its step tensors) for two of the
  parameters, to keep the file small], "hyper_parameters" (a plain dict with
  lists, tuples, floats, bools, None), "loops", "callbacks", ...}.
- module_compiled.pt: {"model": sd with keys "module._orig_mod.*"
  (DataParallel around torch.compile), "step": 5}.
- out_main_seg.pt: torch.save(sd) with the head named as nnU-Net's SegMamba
  names it ("out_main_seg.*") and two deep-supervision heads
  ("ds_seg_from_dec1.*"), which inference ignores.
Every one gives the tiny model's logits bit for bit.

Also writes small seeds of the same shapes (a toy state_dict of two tensors)
into fuzz/corpus/pt/container_*.pt for the .pt fuzz target.
"""
import collections
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from safetensors_read import read_safetensors  # noqa: E402

OUT = os.path.join(HERE, "..", "fixtures", "containers")
CORPUS = os.path.join(HERE, "..", "..", "fuzz", "corpus", "pt")


def state_dict():
    tensors, _ = read_safetensors(os.path.join(HERE, "..", "fixtures", "tiny", "model.safetensors"))
    return collections.OrderedDict((k, torch.from_numpy(v.copy())) for k, v in tensors.items())


def prefixed(sd, prefix):
    return collections.OrderedDict((prefix + k, v) for k, v in sd.items())


def optimizer_state(sd, cls, names, **kw):
    """A real optimizer's state_dict after one step on parameters shaped as
    sd's entries NAMES (zero gradients except a constant)."""
    params = [torch.nn.Parameter(sd[n].clone()) for n in names]
    opt = cls(params, **kw)
    for p in params:
        p.grad = torch.full_like(p, 1e-3)
    opt.step()
    return opt.state_dict()


def write_all(sd, out, prefix=""):
    names = list(sd)

    torch.save({
        "network_weights": sd,
        "optimizer_state": optimizer_state(sd, torch.optim.SGD, names, lr=1e-2, momentum=0.99,
                                           nesterov=True, weight_decay=3e-5),
        "grad_scaler_state": None,
        "logging": {"train_losses": [0.91, 0.52], "val_losses": [0.88, 0.61],
                    "ema_fg_dice": [0.1, 0.25], "epoch_end_timestamps": [1.7e9, 1.7e9 + 60.5]},
        "_best_ema": 0.25,
        "current_epoch": 2,
        "init_args": {"plans": {"dataset_name": "Dataset137_BraTS2021", "configurations": {
            "3d_fullres": {"patch_size": [128, 128, 128], "batch_size": 2}}},
            "configuration": "3d_fullres", "fold": 0, "unpack_dataset": True},
        "trainer_name": "nnUNetTrainerSegMamba",
        "inference_allowed_mirroring_axes": (0, 1, 2),
    }, os.path.join(out, prefix + "nnunet.pt"))

    torch.save({
        "epoch": 3,
        "global_step": 120,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": prefixed(sd, "_orig_mod."),
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 4}}}},
        "callbacks": {},
        "optimizer_states": [optimizer_state(sd, torch.optim.Adam, names[:2], lr=1e-3)],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": {"lr": 1e-3, "depths": [1, 1, 1, 1], "feat_size": (8, 16, 32, 64),
                             "name": "tiny", "amp": False, "resume": None, "seed": 2**40},
    }, os.path.join(out, prefix + "lightning.pt"))

    torch.save({"model": prefixed(sd, "module._orig_mod."), "step": 5},
               os.path.join(out, prefix + "module_compiled.pt"))

    renamed = collections.OrderedDict(
        ("out_main_seg." + k[len("out."):] if k.startswith("out.") else k, v)
        for k, v in sd.items())
    w = sd["out.conv.conv.weight"]
    g = torch.Generator().manual_seed(3)
    renamed["ds_seg_from_dec1.conv.conv.weight"] = torch.randn(w.shape, generator=g)
    renamed["ds_seg_from_dec1.conv.conv.bias"] = torch.randn(w.shape[0], generator=g)
    torch.save(renamed, os.path.join(out, prefix + "out_main_seg.pt"))


def main():
    os.makedirs(OUT, exist_ok=True)
    write_all(state_dict(), OUT)
    g = torch.Generator().manual_seed(5)
    toy = collections.OrderedDict([("stem.weight", torch.randn(4, 2, 3, generator=g)),
                                   ("out.conv.conv.weight", torch.randn(3, 4, 1, 1, 1, generator=g)),
                                   ("out.conv.conv.bias", torch.randn(3, generator=g))])
    write_all(toy, CORPUS, "container_")
    print(f"wrote {os.path.normpath(OUT)} and {os.path.normpath(CORPUS)}/container_*.pt "
          f"with torch {torch.__version__}")


if __name__ == "__main__":
    main()
