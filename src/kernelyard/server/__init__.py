"""The kernel server: jupyter_server's kernels REST API and WebSocket, on Starlette.

``kernelyard serve`` runs it; :func:`create_app` gives the ASGI app for a
:class:`ServerSettings` and a backend, :class:`KernelServer` runs that app on
uvicorn. Modules: ``settings`` (every knob), ``app`` (routes, lifespan,
uvicorn), ``auth`` (token, origin, CORS), ``rest`` (handlers), ``status``
(the error table), ``kernels`` (served kernels, start policies, culling),
``bridge`` (one kernel's shared channels), ``websocket`` (one connection),
``policy`` (the pure decisions), ``replay`` (the per-kernel log),
``ratelimit``, ``activity``, ``events``, ``models``, ``openapi``.
"""

from kernelyard.server.app import BackendFactory, KernelServer, create_app, serve
from kernelyard.server.settings import ServerSettings

__all__ = ["BackendFactory", "KernelServer", "ServerSettings", "create_app", "serve"]
