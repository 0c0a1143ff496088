"""Importing a peer's algorithm modules without its package's __init__ (which pulls in
CUDA extensions, model zoos or `datasets`): the packages are stubbed with real module
specs, because transformers (which the algorithms import) asks importlib.util.find_spec
about every optional package, and a module in sys.modules without a spec is a ValueError
there (transformers 4.51.3, the version requirements-quant.txt pins)."""
import importlib.machinery
import importlib.util
import os
import sys
import types


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
