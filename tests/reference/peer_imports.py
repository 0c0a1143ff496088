"""Driving the peers' algorithm code from the generators. Importing a peer's modules
without its package's __init__ (which pulls in CUDA extensions, model zoos or
`datasets`): the packages are stubbed with real module specs, because transformers (which the algorithms import) asks importlib.util.find_spec
about every optional package, and a module in sys.modules without a spec is a ValueError
there (transformers 4.51.3, the version requirements-quant.txt pins)."""
import importlib.machinery
import importlib.util
import os
import sys
import types

import torch
import torch.nn as nn


def stub_packages(top, subpackages):
    """`top` and `top.<sub>` for each sub as empty packages over their installed folders,
    so `top.sub.module` imports without running any __init__.py on the way."""
    base = importlib.util.find_spec(top).submodule_search_locations[0]
    for name in [top] + [f"{top}.{s}" for s in subpackages]:
        path = os.path.join(base, *name.split(".")[1:])
        mod = types.ModuleType(name)
        mod.__path__ = [path]
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        mod.__spec__.submodule_search_locations = [path]
        sys.modules[name] = mod


def stub_datasets():
    """awq.utils.calib_data imports `datasets` at module level; its calibration loader is
    not used here. With no installed metadata beside the stub, transformers still counts
    datasets absent."""
    if importlib.util.find_spec("datasets") is None:
        ds = types.ModuleType("datasets")
        ds.__spec__ = importlib.machinery.ModuleSpec("datasets", None)
        ds.load_dataset = None
        sys.modules["datasets"] = ds


class SharedInput(nn.Module):
    """Linears that read one input; the output is their outputs side by side (the loss
    AutoAWQ takes over module2inspect)."""

    def __init__(self, linears):
        super().__init__()
        self.norm = nn.Identity()  # the op that would absorb 1/s
        self.linears = nn.ModuleList(linears)

    def forward(self, x):
        return torch.cat([fc(x) for fc in self.linears], dim=-1)

    def state_dict(self, *args, **kwargs):
        # _compute_best_scale keeps the original weights as {k: v.cpu()} of this and
        # then multiplies the live weights in place (fc.weight.mul_): on the GPU, where
        # AutoAWQ runs, .cpu() is a copy; on the CPU it is the same tensor, and the first
        # grid point (which with duo scaling is not s = 1) would overwrite the
        # "original" every later grid point restores. Copies, as on the GPU. (Without
        # duo scaling the first grid point is s = 1 and the copies change nothing.)
        return {k: v.clone() for k, v in super().state_dict(*args, **kwargs).items()}
