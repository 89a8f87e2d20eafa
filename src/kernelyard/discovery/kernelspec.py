"""The KernelSpec model: how to start one kind of kernel.

A kernelspec is a directory holding ``kernel.json`` and optional resources
(logos, ``kernel.js``, ``kernel.css``). Its name is the directory's name,
lowercased: names are ASCII letters, digits, ``-``, ``.`` and ``_``, and match
case-insensitively, as in jupyter_client.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeGuard, get_args

import orjson

from kernelyard.errors import KernelSpecError, NoSuchKernelSpec
from kernelyard.provisioning.spec import LaunchSpec

__all__ = [
    "IPYKERNEL_PRELOAD",
    "KernelSpec",
    "check_kernel_name",
    "load_kernelspec",
    "normalize_kernel_name",
]

#: jupyter_client's name for its local provisioner, which kernelspecs may name.
LOCAL_PROVISIONER = "local-provisioner"
#: What a fork server imports for ipykernel (its app, kernel, debugger and what they
#: import late), so that a forked ipykernel starts without importing them.
IPYKERNEL_PRELOAD = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.debugger",
    "IPython.core.debugger",
    "sqlite3",
    "pydoc",
)
#: The modules that start ipykernel (``python -m ipykernel_launcher`` is its kernelspec's).
IPYKERNEL_MODULES = frozenset({"ipykernel_launcher", "ipykernel"})

InterruptMode = Literal["signal", "message"]


def _is_interrupt_mode(value: object) -> TypeGuard[InterruptMode]:
    """Whether ``value`` is one of the interrupt modes a kernelspec may name."""
    return value in get_args(InterruptMode)


_NAME = re.compile(r"^[a-z0-9._\-]+$", re.IGNORECASE)
_NAME_RULE = "kernel names are ASCII letters, digits, '-', '.' and '_'"


def check_kernel_name(name: str) -> None:
    """Raise KernelSpecError unless ``name`` is a valid kernelspec name."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise KernelSpecError(f"invalid kernel name {name!r}: {_NAME_RULE}", name=str(name))


def normalize_kernel_name(name: str) -> str:
    """The canonical (lowercase) form of a valid name; invalid names raise KernelSpecError."""
    check_kernel_name(name)
    return name.lower()


@dataclass(frozen=True, slots=True)
class KernelSpec:
    """One kernel type: the command that starts it and how to talk to it."""

    name: str
    argv: tuple[str, ...]
    display_name: str = ""
    language: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    interrupt_mode: InterruptMode = "signal"
    metadata: Mapping[str, Any] = field(default_factory=dict)
    kernel_protocol_version: str = ""
    resource_dir: Path | None = None
    #: Resource files known without a directory: a remote kernelspec's (its gateway
    #: serves them), so ``resource_names`` can list them.
    resource_files: tuple[str, ...] = ()

    def launch_spec(self) -> LaunchSpec:
        """What the provisioner needs to start this kernel."""
        return LaunchSpec(
            argv=self.argv,
            env=self.env,
            interrupt_mode=self.interrupt_mode,
            resource_dir=self.resource_dir,
            kernel_name=self.name,
            handshake=self.supports_handshake,
            preload=self.preload,
            supports_curve="curve" in self.supported_encryption,
            provisioner=self.provisioner_name,
            provisioner_config=self.provisioner_config,
        )

    @property
    def supports_handshake(self) -> bool:
        """True when the spec says the kernel registers its own ports (JEP 66).

        Said by ``metadata.kernelyard.handshake``, which the kernelyard kernel's
        spec sets.
        """
        ours = self.metadata.get("kernelyard")
        return isinstance(ours, Mapping) and ours.get("handshake") is True

    @property
    def provisioner_name(self) -> str:
        """The provisioner ``metadata.kernel_provisioner.provisioner_name`` names, or ""
        (the caller's own: local). jupyter_client's ``local-provisioner`` is ours too.
        """
        named = self.metadata.get("kernel_provisioner")
        name = named.get("provisioner_name", "") if isinstance(named, Mapping) else ""
        return "" if name in ("", LOCAL_PROVISIONER) else str(name)

    @property
    def provisioner_config(self) -> Mapping[str, Any]:
        """``metadata.kernel_provisioner.config`` (empty when not given)."""
        named = self.metadata.get("kernel_provisioner")
        config = named.get("config", {}) if isinstance(named, Mapping) else {}
        return config if isinstance(config, Mapping) else {}

    @property
    def supported_encryption(self) -> frozenset[str]:
        """The transport encryptions the kernel takes (``metadata.supported_encryption``:
        a name or a list of names, as ipykernel writes ``["curve"]``), lower case.
        """
        value = self.metadata.get("supported_encryption")
        names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        return frozenset(str(name).strip().lower() for name in names)

    @property
    def preload(self) -> tuple[str, ...]:
        """Modules to import once in a fork server (``metadata.kernelyard.preload``).

        A spec that lists them, and runs ``PYTHON -m MODULE ...``, is forked
        from a process that imported them (when the launch is given fork
        servers) instead of being spawned and importing them each time. A spec
        that runs ipykernel's launcher and says nothing (the ``python3``
        kernelspec ipykernel installs) preloads ipykernel; ``"preload": []``
        opts out. A Python that cannot import them is spawned, as before.
        """
        ours = self.metadata.get("kernelyard")
        names = ours.get("preload") if isinstance(ours, Mapping) else None
        if isinstance(names, list):
            return tuple(names)  # ``[]`` opts out
        if self._runs_ipykernel():
            return IPYKERNEL_PRELOAD  # the python3 kernelspec ipykernel installs
        return ()

    def _runs_ipykernel(self) -> bool:
        """Whether the argv is ipykernel's own, ``PYTHON -m ipykernel_launcher ...``."""
        argv = self.argv
        return len(argv) >= 3 and argv[1] == "-m" and argv[2] in IPYKERNEL_MODULES

    def resource_names(self) -> list[str]:
        """The resource files a frontend may fetch: ``kernel.js``, ``kernel.css``, ``logo-*``."""
        if self.resource_dir is None:
            return sorted(self.resource_files)
        if not self.resource_dir.is_dir():
            return []
        return sorted(
            path.name
            for path in self.resource_dir.iterdir()
            if path.name in ("kernel.js", "kernel.css") or path.name.startswith("logo-")
        )

    def resource_path(self, filename: str) -> Path:
        """Where resource file ``filename`` would be; NoSuchKernelSpec for a name that is
        not a plain file name (no path may leave the resource directory) or a spec
        without resources. Whether the file exists is the reader's to find out.
        """
        root = self.resource_dir
        if root is None or "/" in filename or "\\" in filename or filename in ("", ".", ".."):
            raise NoSuchKernelSpec(f"{self.name}/{filename}")
        return root / filename

    def to_dict(self) -> dict[str, Any]:
        """The ``kernel.json`` form, as jupyter_client's ``KernelSpec.to_dict`` gives it."""
        return {
            "argv": list(self.argv),
            "env": dict(self.env),
            "display_name": self.display_name,
            "language": self.language,
            "interrupt_mode": self.interrupt_mode,
            "metadata": dict(self.metadata),
            "kernel_protocol_version": self.kernel_protocol_version,
        }

    @classmethod
    def from_dict(
        cls, name: str, data: Mapping[str, Any], *, resource_dir: Path | None = None
    ) -> KernelSpec:
        """Validate a ``kernel.json`` dict; problems raise KernelSpecError naming the kernel."""

        def fail(message: str) -> KernelSpecError:
            return KernelSpecError(f"kernelspec {name!r}: {message}", name=name)

        if not isinstance(data, Mapping):
            raise fail("kernel.json is not a JSON object")
        argv = data.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise fail("argv must be a non-empty list of strings")
        for key in ("display_name", "language", "kernel_protocol_version"):
            if not isinstance(data.get(key, ""), str):
                raise fail(f"{key} must be a string")
        env = data.get("env", {})
        env = {} if env is None else env
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise fail("env must map strings to strings")
        mode = data.get("interrupt_mode", "signal")
        interrupt_mode = mode.lower() if isinstance(mode, str) else None
        if not _is_interrupt_mode(interrupt_mode):
            raise fail(f"interrupt_mode must be 'signal' or 'message', not {mode!r}")
        metadata = data.get("metadata", {})
        metadata = {} if metadata is None else metadata
        if not isinstance(metadata, dict):
            raise fail("metadata must be a JSON object")
        named = metadata.get("kernel_provisioner")
        if named is not None and (
            not isinstance(named, dict)
            or not isinstance(named.get("provisioner_name"), str)
            or not isinstance(named.get("config", {}), dict)
        ):
            raise fail(
                "metadata.kernel_provisioner must be an object with a 'provisioner_name' "
                "string and, optionally, a 'config' object"
            )
        ours = metadata.get("kernelyard", {})
        preload = ours.get("preload", []) if isinstance(ours, dict) else []
        if not isinstance(preload, list) or not all(
            isinstance(m, str) and all(part.isidentifier() for part in m.split("."))
            for m in preload
        ):
            raise fail("metadata.kernelyard.preload must be a list of module names")
        return cls(
            name=normalize_kernel_name(name),
            argv=tuple(argv),
            display_name=data.get("display_name", "") or name,
            language=data.get("language", ""),
            env=env,
            interrupt_mode=interrupt_mode,
            metadata=metadata,
            kernel_protocol_version=data.get("kernel_protocol_version", ""),
            resource_dir=resource_dir,
        )


def load_kernelspec(resource_dir: Path, name: str | None = None) -> KernelSpec:
    """Read ``resource_dir/kernel.json``; any problem raises KernelSpecError.

    The name defaults to the directory's name.
    """
    name = name or resource_dir.name
    try:
        raw = (resource_dir / "kernel.json").read_bytes()
    except OSError as exc:
        raise KernelSpecError(
            f"kernelspec {name!r}: cannot read {resource_dir / 'kernel.json'}: {exc.strerror}",
            name=name,
        ) from exc
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise KernelSpecError(
            f"kernelspec {name!r}: {resource_dir / 'kernel.json'} is not valid JSON: {exc}",
            name=name,
        ) from exc
    return KernelSpec.from_dict(name, data, resource_dir=resource_dir)
