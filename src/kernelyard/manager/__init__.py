"""Kernel lifecycles: one kernel (KernelManager), restarts (KernelRestarter), many kernels."""

from kernelyard.manager.kernel import KernelManager
from kernelyard.manager.state import TRANSITIONS, KernelState, Lifecycle

__all__ = ["TRANSITIONS", "KernelManager", "KernelState", "Lifecycle"]
