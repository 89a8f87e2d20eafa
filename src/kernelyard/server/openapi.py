"""The OpenAPI 3.1 document of the routes the server implements (``GET /api/openapi.json``).

It describes what the server really answers (a test checks the live
responses against it), including what jupyter_server's own ``api.yaml``
leaves out: ``GET /api/kernelspecs/{name}``, the resource files, the
``kernel_id`` and ``env`` fields of a start, and the WebSocket route.
"""

from __future__ import annotations

from typing import Any

import kernelyard

__all__ = ["SCHEMAS", "openapi_document"]

_ERROR = {"$ref": "#/components/schemas/Error"}
_UUID = r"^\w+-\w+-\w+-\w+-\w+$"
_TIME = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["message", "reason"],
        "properties": {"message": {"type": "string"}, "reason": {"type": ["string", "null"]}},
    },
    "Kernel": {
        "type": "object",
        "required": ["id", "name", "last_activity", "execution_state", "connections"],
        "properties": {
            "id": {"type": "string", "pattern": _UUID},
            "name": {"type": "string"},
            "last_activity": {"type": "string", "pattern": _TIME},
            "execution_state": {
                "type": "string",
                "enum": ["starting", "idle", "busy", "restarting", "dead"],
            },
            "connections": {"type": "integer", "minimum": 0},
            "reason": {"type": "string"},
            "encrypted": {
                "type": "boolean",
                "description": "the server's connection to the kernel is CurveZMQ-encrypted "
                "(kernelyard; absent when the kernel is a gateway's)",
            },
        },
        "additionalProperties": False,
    },
    "KernelList": {"type": "array", "items": {"$ref": "#/components/schemas/Kernel"}},
    "StartKernel": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "kernelspec name (default: the server's)"},
            "path": {"type": "string", "description": "API path; its directory is the cwd"},
            "kernel_id": {"type": "string", "pattern": _UUID},
            "env": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "KERNEL_* and allow-listed names are passed on, others ignored",
            },
        },
    },
    "KernelSpec": {
        "type": "object",
        "required": ["name", "spec", "resources"],
        "properties": {
            "name": {"type": "string"},
            "spec": {
                "type": "object",
                "required": ["argv", "display_name", "language"],
                "properties": {
                    "argv": {"type": "array", "items": {"type": "string"}},
                    "display_name": {"type": "string"},
                    "language": {"type": "string"},
                    "interrupt_mode": {"type": "string", "enum": ["signal", "message"]},
                    "env": {"type": "object", "additionalProperties": {"type": "string"}},
                    "metadata": {"type": "object"},
                },
            },
            "resources": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "KernelSpecs": {
        "type": "object",
        "required": ["default", "kernelspecs"],
        "properties": {
            "default": {"type": ["string", "null"]},
            "kernelspecs": {
                "type": "object",
                "additionalProperties": {"$ref": "#/components/schemas/KernelSpec"},
            },
        },
    },
    "Status": {
        "type": "object",
        "required": ["started", "last_activity", "kernels", "connections"],
        "properties": {
            "started": {"type": "string", "pattern": _TIME},
            "last_activity": {"type": "string", "pattern": _TIME},
            "kernels": {"type": "integer", "minimum": 0},
            "connections": {"type": "integer", "minimum": 0},
        },
    },
    "Version": {
        "type": "object",
        "required": ["version"],
        "properties": {"version": {"type": "string"}},
    },
}


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}


def _answer(description: str, schema: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description}
    if schema is not None:
        answer["content"] = _json(schema)
    return answer


_NOT_FOUND = _answer("no such kernel", "Error")
_FORBIDDEN = _answer("missing or wrong token", "Error")
_KERNEL_ID = {"name": "kernel_id", "in": "path", "required": True, "schema": {"type": "string"}}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}


def _paths() -> dict[str, Any]:
    kernel = {"parameters": [_KERNEL_ID]}
    return {
        "/api": {
            "get": {
                "summary": "server version",
                "security": [],
                "responses": {"200": _answer("the version", "Version")},
            }
        },
        "/api/status": {
            "get": {
                "summary": "server status",
                "responses": {"200": _answer("status", "Status"), "403": _FORBIDDEN},
            }
        },
        "/api/openapi.json": {
            "get": {
                "summary": "this document",
                "responses": {"200": {"description": "OpenAPI 3.1"}},
            }
        },
        "/api/kernels": {
            "get": {
                "summary": "running kernels",
                "responses": {"200": _answer("the kernels", "KernelList"), "403": _FORBIDDEN},
            },
            "post": {
                "summary": "start a kernel (an existing kernel_id returns that kernel)",
                "requestBody": {"required": False, "content": _json("StartKernel")},
                "responses": {
                    "201": {
                        **_answer("started", "Kernel"),
                        "headers": {"Location": {"schema": {"type": "string"}}},
                    },
                    "400": _answer("bad body, env or path", "Error"),
                    "403": _answer("no token, or the kernel limit is reached", "Error"),
                    "404": _answer("no such kernelspec", "Error"),
                    "500": _answer("the kernel failed to start", "Error"),
                },
            },
        },
        "/api/kernels/{kernel_id}": {
            **kernel,
            "get": {
                "summary": "one kernel",
                "responses": {"200": _answer("the kernel", "Kernel"), "404": _NOT_FOUND},
            },
            "delete": {
                "summary": "shut a kernel down",
                "responses": {"204": _answer("gone"), "404": _NOT_FOUND},
            },
        },
        "/api/kernels/{kernel_id}/interrupt": {
            **kernel,
            "post": {
                "summary": "interrupt",
                "responses": {"204": _answer("interrupted"), "404": _NOT_FOUND},
            },
        },
        "/api/kernels/{kernel_id}/restart": {
            **kernel,
            "post": {
                "summary": "restart and wait until it answers",
                "responses": {
                    "200": _answer("restarted", "Kernel"),
                    "404": _NOT_FOUND,
                    "500": _answer("the restart failed", "Error"),
                },
            },
        },
        "/api/kernels/{kernel_id}/channels": {
            **kernel,
            "get": {
                "summary": "WebSocket: the kernel's messages (legacy JSON framing, or "
                "v1.kernel.websocket.jupyter.org when offered)",
                "parameters": [
                    {"name": "session_id", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "replay",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["all"]},
                        "description": "a new session gets the IOPub messages the log holds",
                    },
                ],
                "responses": {
                    "101": _answer("switching protocols"),
                    "403": _FORBIDDEN,
                    "404": _NOT_FOUND,
                },
            },
        },
        "/api/kernelspecs": {
            "get": {
                "summary": "kernel types",
                "responses": {"200": _answer("the kernelspecs", "KernelSpecs")},
            },
        },
        "/api/kernelspecs/{name}": {
            "parameters": [_NAME],
            "get": {
                "summary": "one kernel type",
                "responses": {
                    "200": _answer("the kernelspec", "KernelSpec"),
                    "404": _answer("no such kernelspec", "Error"),
                },
            },
        },
        "/kernelspecs/{name}/{filename}": {
            "parameters": [
                _NAME,
                {"name": "filename", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "get": {
                "summary": "a resource file (logo, kernel.js)",
                "responses": {
                    "200": {"description": "the file"},
                    "404": _answer("no such file", "Error"),
                },
            },
        },
        "/api/events/subscribe": {
            "get": {
                "summary": "WebSocket: kernel action events (kernel_actions/v1 records)",
                "responses": {"101": _answer("switching protocols")},
            },
        },
    }


def openapi_document(base_url: str = "/") -> dict[str, Any]:
    """The document, with the server's base URL."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "kernelyard", "version": kernelyard.__version__},
        "servers": [{"url": base_url}],
        "security": [{"token": []}],
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "token": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "'token <T>' or 'bearer <T>'; also ?token=<T>",
                },
            },
        },
    }
