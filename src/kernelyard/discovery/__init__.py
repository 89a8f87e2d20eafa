"""Which kernel types exist: kernelspecs, the running Python env, entry-point providers.

Discovery reads files and package metadata; it starts nothing.
"""

from kernelyard.discovery.finder import ENTRY_POINT_GROUP, KernelFinder, load_entry_point_providers
from kernelyard.discovery.kernelspec import (
    KernelSpec,
    check_kernel_name,
    load_kernelspec,
    normalize_kernel_name,
)
from kernelyard.discovery.ownkernel import KERNEL_NAME, install_kernelspec, kernelyard_spec
from kernelyard.discovery.paths import jupyter_data_dir, kernel_dirs
from kernelyard.discovery.providers import KernelProvider, KernelSpecProvider, PythonEnvProvider

__all__ = [
    "ENTRY_POINT_GROUP",
    "KERNEL_NAME",
    "KernelFinder",
    "KernelProvider",
    "KernelSpec",
    "KernelSpecProvider",
    "PythonEnvProvider",
    "check_kernel_name",
    "install_kernelspec",
    "jupyter_data_dir",
    "kernel_dirs",
    "kernelyard_spec",
    "load_entry_point_providers",
    "load_kernelspec",
    "normalize_kernel_name",
]
