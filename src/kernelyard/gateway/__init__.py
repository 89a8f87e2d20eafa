"""Gateway client mode: kernels that live on a remote gateway, behind the backend seam.

* :class:`GatewaySettings`: every setting of jupyter_server's ``GatewayClient``,
  validated, as one frozen value (the CLI reads them from flags and
  ``JUPYTER_GATEWAY_*``).
* :class:`GatewayBackend`: a :class:`~kernelyard.backend.KernelBackend` over the
  gateway's REST API and kernel WebSockets; ``kernelyard serve --gateway-url``
  runs the server on it, library code drives remote kernels with it.
* :mod:`~kernelyard.gateway.hl`: a remote kernel and a ready ``KernelClient`` in
  one call (``run_kernel(..., gateway=...)`` uses it).
* :mod:`~kernelyard.gateway.http` (requests, retries, errors that name the
  hop), :mod:`~kernelyard.gateway.channels` (one upstream WebSocket,
  reconnects without loss or duplicates), :mod:`~kernelyard.gateway.bodies`
  (the REST bodies, without I/O), :mod:`~kernelyard.gateway.renewer` (token
  renewal), :mod:`~kernelyard.gateway.cookies` (a load balancer's cookies).
"""

from kernelyard.gateway.backend import GatewayBackend, RemoteKernel
from kernelyard.gateway.bodies import start_env
from kernelyard.gateway.channels import GatewayChannels
from kernelyard.gateway.http import GatewayHTTP
from kernelyard.gateway.renewer import TokenRenewer
from kernelyard.gateway.settings import GatewaySettings

__all__ = [
    "GatewayBackend",
    "GatewayChannels",
    "GatewayHTTP",
    "GatewaySettings",
    "RemoteKernel",
    "TokenRenewer",
    "start_env",
]
