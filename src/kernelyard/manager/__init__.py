"""Kernel lifecycles: one kernel (KernelManager), restarts (KernelRestarter), many kernels.

The state machine itself is :mod:`kernelyard.lifecycle`; its names are re-exported here.
"""

from kernelyard.lifecycle import TRANSITIONS, Change, KernelEvent, KernelState, Lifecycle
from kernelyard.manager.hl import run_kernel, start_kernel
from kernelyard.manager.kernel import KernelManager
from kernelyard.manager.multi import MultiKernelManager
from kernelyard.manager.restart_policy import RestartBudget
from kernelyard.manager.restarter import KernelRestarter, RestartEvent

__all__ = [
    "TRANSITIONS",
    "Change",
    "KernelEvent",
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
