"""The REST handlers: jupyter_server's kernels, kernelspecs, api and status routes.

Status codes and bodies are jupyter_server's: 201 with ``Location`` on start,
204 on delete and interrupt, 200 with the model on restart, 404 with
``{"message", "reason"}`` for unknown ids. Errors are mapped to statuses in
one table (:mod:`kernelyard.server.status`); an unexpected error is a 500 with the same
JSON shape, never an HTML page.
"""

from __future__ import annotations

import logging
import mimetypes
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

import kernelyard
from kernelyard.errors import KernelyardError, RequestRejected
from kernelyard.server.auth import error_body
from kernelyard.server.kernels import ServedKernels
from kernelyard.server.models import format_time, kernelspec_model, kernelspecs_body
from kernelyard.server.openapi import openapi_document
from kernelyard.server.status import status_for

__all__ = ["error_response", "json_response"]

log = logging.getLogger(__name__)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, headers, media_type="application/json")


def error_response(exc: Exception) -> Response:
    """The JSON error answer for ``exc`` (statuses from :func:`status_for`)."""
    if not isinstance(exc, KernelyardError):
        log.exception("unhandled error", exc_info=exc)
    status, message = status_for(exc)
    return Response(error_body(message), status, media_type="application/json")


def _kernels(request: Request) -> ServedKernels:
    kernels: ServedKernels = request.app.state.kernels
    return kernels


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestRejected(400, f"the request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestRejected(400, "the request body must be a JSON object")
    return body


# -- /api ---------------------------------------------------------------------------


async def api_version(request: Request) -> Response:
    return json_response({"version": kernelyard.__version__})


async def api_status(request: Request) -> Response:
    kernels = _kernels(request)
    return json_response(
        {
            "connections": kernels.connections,
            "kernels": len(kernels),
            "last_activity": format_time(kernels.last_activity),
            "started": format_time(kernels.started),
        }
    )


async def api_spec(request: Request) -> Response:
    return json_response(openapi_document(request.app.state.settings.base_url))


# -- /api/kernels ---------------------------------------------------------------------


async def list_kernels(request: Request) -> Response:
    return json_response(_kernels(request).models())


async def start_kernel(request: Request) -> Response:
    body = await _body(request)
    kernels = _kernels(request)
    kernel, _ = await kernels.start(body)
    location = f"{kernels.settings.base_url}api/kernels/{kernel.id}"
    return json_response(kernel.model(), 201, {"Location": location})


async def get_kernel(request: Request) -> Response:
    return json_response(_kernels(request).get(request.path_params["kernel_id"]).model())


async def delete_kernel(request: Request) -> Response:
    await _kernels(request).shutdown(request.path_params["kernel_id"])
    return Response(status_code=204)


async def interrupt_kernel(request: Request) -> Response:
    await _kernels(request).interrupt(request.path_params["kernel_id"])
    return Response(status_code=204)


async def restart_kernel(request: Request) -> Response:
    kernel = await _kernels(request).restart(request.path_params["kernel_id"])
    return json_response(kernel.model())


# -- kernelspecs ----------------------------------------------------------------------


async def list_kernelspecs(request: Request) -> Response:
    kernels = _kernels(request)
    specs = await kernels.backend.kernel_specs()
    return json_response(kernelspecs_body(specs, base_url=kernels.settings.base_url))


async def get_kernelspec(request: Request) -> Response:
    kernels = _kernels(request)
    name = request.path_params["name"]
    spec = (await kernels.backend.kernel_specs()).specs.get(name)
    if spec is None:
        raise RequestRejected(404, f"Kernel spec {name} not found")
    return json_response(kernelspec_model(name, spec, base_url=kernels.settings.base_url))


async def kernelspec_file(request: Request) -> Response:
    name, filename = request.path_params["name"], request.path_params["filename"]
    data = await _kernels(request).backend.kernel_spec_file(name, filename)
    media_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    headers = {"Cache-Control": "max-age=2592000"} if filename.endswith(".png") else None
    return Response(data, 200, headers, media_type=media_type)  # HEAD: uvicorn drops the body
