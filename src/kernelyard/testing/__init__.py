"""Test kernelyard frontends without kernel processes.

:class:`FakeBackend` is a :class:`~kernelyard.backend.KernelBackend` whose
kernels run in memory: a fake Python kernel that answers ``kernel_info``,
executes code (``print``, ``input``, ``display``, errors, interrupts),
publishes status and stream output, and can be made to die. Give it to the
server (``create_app(settings, backend=fake.factory)``) to test a client of
the REST and WebSocket API, or use it directly where code takes a backend.
Everything is really signed and verified; nothing opens a socket or a file.
"""

from kernelyard.testing.backend import FAKE_SPEC, FakeBackend, FakeKernel
from kernelyard.testing.channels import MAX_HELD, FakeChannels
from kernelyard.testing.process import KERNEL_INFO, FakeProcess

__all__ = [
    "FAKE_SPEC",
    "KERNEL_INFO",
    "MAX_HELD",
    "FakeBackend",
    "FakeChannels",
    "FakeKernel",
    "FakeProcess",
]
