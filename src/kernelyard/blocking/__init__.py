"""The blocking API: facades over the async classes, run on a private loop thread. No logic.

Nothing inside kernelyard imports this package; it is for users.
"""

from kernelyard.blocking.client import BlockingKernelClient, BlockingReceiver
from kernelyard.blocking.hl import run_kernel_blocking, start_kernel_blocking
from kernelyard.blocking.manager import BlockingKernelManager, BlockingMultiKernelManager

__all__ = [
    "BlockingKernelClient",
    "BlockingKernelManager",
    "BlockingMultiKernelManager",
    "BlockingReceiver",
    "run_kernel_blocking",
    "start_kernel_blocking",
]
