"""Generates the ingot.v1 gRPC stubs from ingot's proto/ into the build as the package
builds (pyproject.toml holds the metadata). proto/ is the repository's (../../proto
from here) or, in a copy of this directory, ./proto."""
import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def proto_root():
    for candidate in (HERE / "proto", HERE.parent.parent / "proto"):
        if (candidate / "ingot" / "v1" / "generation.proto").exists():
            return candidate
    raise RuntimeError(f"ingot's proto/ not found beside {HERE} or two levels up")


class BuildWithStubs(build_py):
    def run(self):
        super().run()
        from grpc_tools import protoc  # a build requirement
        import grpc_tools

        root = proto_root()
        out = Path(self.build_lib)
        protos = sorted(str(p.relative_to(root)) for p in (root / "ingot" / "v1").glob("*.proto"))
        include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        args = ["grpc_tools.protoc", f"-I{root}", f"-I{include}", f"--python_out={out}",
                f"--pyi_out={out}", f"--grpc_python_out={out}", *protos]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {protos}")
        (out / "ingot" / "v1" / "__init__.py").write_text('"""Generated from proto/ingot/v1 by grpcio-tools."""\n')


def runtime_requirements():
    """The generated code checks at import that grpcio and protobuf are at least the
    versions that generated it: the ones in this build's environment."""
    import google.protobuf
    import grpc_tools
    from importlib.metadata import version

    protobuf = ".".join(google.protobuf.__version__.split(".")[:2])
    return [f"grpcio>={version('grpcio-tools')}", f"protobuf>={protobuf}"]


setup(cmdclass={"build_py": BuildWithStubs}, install_requires=runtime_requirements())
