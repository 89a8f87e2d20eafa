"""An ipykernel that ignores shutdown_request and SIGTERM: only SIGKILL stops it."""

import signal
import sys

from ipykernel.kernelbase import Kernel


async def _ignore_shutdown(self: Kernel, *args: object) -> None:
    """Answer nothing and keep running."""


signal.signal(signal.SIGTERM, signal.SIG_IGN)
Kernel.shutdown_request = _ignore_shutdown  # type: ignore[method-assign]

if __name__ == "__main__":
    from ipykernel.kernelapp import IPKernelApp

    sys.exit(IPKernelApp.launch_instance())
