"""The kernelyard kernel's kernelspec: offered without install, or installed on demand.

The spec is named ``kernelyard`` (never ``python3``, so installing it shadows
nothing). It runs ``python -m kernelyard.kernel`` with the interpreter that
installs or offers it, and recommends ``interrupt_mode: message``: the kernel
answers ``interrupt_request`` on its control thread, which works where signals
do not reach (Windows, containers, remote provisioners). It advertises the
registration handshake (JEP 66) through ``metadata.kernelyard.handshake``,
lists in ``metadata.kernelyard.preload`` what a fork server imports once
so that kernels are forked from it instead of importing IPython each time,
says ``metadata.debugger: true`` (JupyterLab offers its debugger for it) and
``metadata.supported_encryption: ["curve"]`` (it takes CurveZMQ keys, so a
manager with ``transport_encryption`` ``auto`` encrypts it).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import orjson

from kernelyard.discovery.kernelspec import KernelSpec, check_kernel_name, normalize_kernel_name

__all__ = ["KERNEL_NAME", "RESOURCE_DIR", "install_kernelspec", "kernelyard_spec"]

KERNEL_NAME = "kernelyard"
#: What the kernel imports before it answers, and IPython (its warm-up thread's import).
PRELOAD = ("kernelyard.kernel.app", "kernelyard.kernel.comms", "kernelyard.kernel.shell")
#: Logos shipped with the package (logo-32x32.png, logo-64x64.png, logo-svg.svg).
RESOURCE_DIR = Path(__file__).parent / "resources" / "kernelyard"


def kernelyard_spec(
    *,
    name: str = KERNEL_NAME,
    display_name: str | None = None,
    executable: str | None = None,
    resource_dir: Path | None = RESOURCE_DIR,
) -> KernelSpec:
    """The spec that runs the kernelyard kernel with ``executable`` (this Python by default)."""
    return KernelSpec(
        name=normalize_kernel_name(name),
        argv=(executable or sys.executable, "-m", "kernelyard.kernel", "-f", "{connection_file}"),
        display_name=display_name or f"Python {sys.version_info.major} (kernelyard)",
        language="python",
        interrupt_mode="message",
        metadata={
            "kernelyard": {"handshake": True, "preload": list(PRELOAD)},
            "debugger": True,
            "supported_encryption": ["curve"],
        },
        kernel_protocol_version="5.5",
        resource_dir=resource_dir,
    )


def install_kernelspec(
    kernels_dir: Path, *, name: str = KERNEL_NAME, display_name: str | None = None
) -> Path:
    """Write the spec and its logos to ``kernels_dir/name``; returns that directory.

    An existing directory of that name is replaced. A bad name raises
    KernelSpecError; a directory that cannot be written raises OSError.
    """
    check_kernel_name(name)
    spec = kernelyard_spec(name=name, display_name=display_name, resource_dir=None)
    target = kernels_dir / spec.name
    staging = kernels_dir / f".{spec.name}.installing"
    kernels_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(RESOURCE_DIR, staging)
    (staging / "kernel.json").write_bytes(
        orjson.dumps(spec.to_dict(), option=orjson.OPT_INDENT_2) + b"\n"
    )
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
