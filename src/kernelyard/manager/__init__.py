"""Kernel lifecycles: one kernel (KernelManager), restarts (KernelRestarter), many kernels."""

from kernelyard.manager.hl import run_kernel, start_kernel
from kernelyard.manager.kernel import KernelManager
from kernelyard.manager.multi import MultiKernelManager
from kernelyard.manager.restart_policy import RestartBudget
from kernelyard.manager.restarter import KernelRestarter, RestartEvent
from kernelyard.manager.state import TRANSITIONS, KernelState, Lifecycle

__all__ = [
    "TRANSITIONS",
    "KernelManager",
    "KernelRestarter",
    "KernelState",
    "Lifecycle",
    "MultiKernelManager",
    "RestartBudget",
    "RestartEvent",
    "run_kernel",
    "start_kernel",
]
