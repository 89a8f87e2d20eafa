"""The gateway's REST bodies, both ways, without I/O: what a start sends, and what the
gateway's kernel and kernelspec models mean as our values.

Gateways differ and some answer oddly; reading is lenient where a value only
informs (a bad ``last_activity`` or ``connections`` reads as unknown, a
kernelspec that does not parse is skipped with a warning) and strict where a
caller depends on it (a kernelspecs body that is not one is a GatewayError).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from kernelyard.backend import KernelModel, KernelSpecs
from kernelyard.discovery import KernelSpec
from kernelyard.errors import GatewayError, KernelSpecError, MalformedMessage
from kernelyard.gateway.settings import GatewaySettings
from kernelyard.lifecycle import KernelState, Lifecycle
from kernelyard.wire import parse_date

__all__ = ["kernel_model", "kernelspecs_from", "start_env"]

log = logging.getLogger(__name__)


def start_env(
    settings: GatewaySettings,
    environ: Mapping[str, str],
    env: Mapping[str, str] | None,
    cwd: str | None,
) -> dict[str, str]:
    """The ``env`` of a start request, as jupyter_server's gateway client builds it:
    this process's ``KERNEL_*`` and allowed variables, then the caller's, then
    ``KERNEL_WORKING_DIR`` and ``KERNEL_LAUNCH_TIMEOUT``.
    """
    out = {
        k: v for k, v in environ.items() if k.startswith("KERNEL_") or k in settings.allowed_envs
    }
    if settings.http_user and "KERNEL_USERNAME" not in out:
        out["KERNEL_USERNAME"] = settings.http_user
    out.update(env or {})
    if cwd:
        out["KERNEL_WORKING_DIR"] = cwd
    out["KERNEL_LAUNCH_TIMEOUT"] = str(int(settings.kernel_launch_timeout))
    return out


def kernel_model(model: Mapping[str, Any], lifecycle: Lifecycle | None) -> KernelModel:
    """A gateway's kernel model (which has an ``id``) as ours; state and reason come
    from our ``lifecycle`` of it, if we have one (RUNNING otherwise).
    """
    return KernelModel(
        id=str(model["id"]),
        name=str(model.get("name", "")),
        state=lifecycle.state if lifecycle is not None else KernelState.RUNNING,
        reason=lifecycle.reason if lifecycle is not None else "",
        execution_state=str(model.get("execution_state", "")),
        last_activity=_parse_time(model.get("last_activity")),
        connections=_count(model.get("connections", 0)),
    )


def kernelspecs_from(body: object, url: str) -> KernelSpecs:
    """The ``GET /api/kernelspecs`` body of the gateway at ``url``, with its default."""
    if not isinstance(body, dict) or not isinstance(body.get("kernelspecs"), dict):
        raise GatewayError(f"the gateway at {url} listed kernelspecs as {str(body)[:200]}", url=url)
    specs: dict[str, KernelSpec] = {}
    for name, model in body["kernelspecs"].items():
        try:
            specs[name] = _spec_from_model(name, model)
        except KernelSpecError as exc:
            log.warning("skipping the gateway's kernelspec %r: %s", name, exc)
    default = body.get("default")
    return KernelSpecs(specs, default if isinstance(default, str) and default in specs else None)


def _spec_from_model(name: str, model: object) -> KernelSpec:
    if not isinstance(model, dict) or not isinstance(model.get("spec"), dict):
        raise KernelSpecError(f"kernelspec {name!r}: no 'spec' object", name=name)
    data = dict(model["spec"])
    if not data.get("argv"):
        data["argv"] = ["(runs on the gateway)"]  # gateways may hide how they start it
    spec = KernelSpec.from_dict(name, data)
    resources = model.get("resources")
    files: tuple[str, ...] = ()
    if isinstance(resources, dict):
        files = tuple(
            sorted({str(v).rsplit("/", 1)[-1] for v in resources.values() if isinstance(v, str)})
        )
    return replace(spec, name=name, resource_files=files)


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_date(value)
    except MalformedMessage:
        return None


def _count(value: object) -> int:
    """A model's ``connections`` as a count (0 for anything that is not one)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0
    try:
        return max(0, int(value))
    except ValueError:
        return 0
