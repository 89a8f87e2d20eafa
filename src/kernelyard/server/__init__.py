"""The kernel server: jupyter_server's kernels REST API and WebSocket, on Starlette.

``kernelyard serve`` runs it; :func:`create_app` gives the ASGI app for a
:class:`ServerSettings`. Modules: ``settings`` (every knob), ``app`` (routes,
lifespan, uvicorn), ``auth`` (token, origin, CORS), ``rest`` (handlers and
the error table), ``kernels`` (served kernels, policies, culling),
``bridge`` (one kernel's shared channels), ``websocket`` (one connection),
``replay`` (the per-kernel log), ``ratelimit``, ``activity``, ``events``,
``openapi``.
"""

from kernelyard.server.app import create_app, serve
from kernelyard.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app", "serve"]
