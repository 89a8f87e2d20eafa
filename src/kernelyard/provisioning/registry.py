"""Provisioners that kernelspecs choose by name, from an entry-point group of ours.

A kernelspec says ``metadata.kernel_provisioner = {"provisioner_name": NAME,
"config": {...}}``, as jupyter_client and Enterprise Gateway kernelspecs do;
NAME is looked up in the ``kernelyard.provisioners`` group (kernelyard's own:
``kernelyard-slurm``). The entry point is a class with
``from_spec(spec_name, config, runtime_dir)`` that validates the config.
A name that is not ours but one of jupyter_client's provisioners (its
``jupyter_client.kernel_provisioners`` group) launches through the adapter of
:mod:`kernelyard.provisioning.jupyter`. A name that is neither, or a bad
config, is a KernelSpecError naming the kernelspec, at start.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from kernelyard.errors import KernelSpecError
from kernelyard.provisioning.jupyter import JupyterProvisioner, jupyter_provisioner_names
from kernelyard.provisioning.provisioner import Provisioner
from kernelyard.provisioning.spec import LaunchSpec

__all__ = ["PROVISIONER_GROUP", "NamedProvisioner", "provisioner_for"]

PROVISIONER_GROUP = "kernelyard.provisioners"


class NamedProvisioner(Protocol):
    """What an entry point of PROVISIONER_GROUP loads to."""

    @classmethod
    def from_spec(cls, spec_name: str, config: Mapping[str, Any], runtime_dir: Path) -> Provisioner:
        """The provisioner for a kernelspec's config; KernelSpecError if it is bad."""
        ...


def provisioner_for(spec: LaunchSpec, runtime_dir: Path) -> Provisioner:
    """The provisioner ``spec`` names, made from its config."""
    installed = {ep.name: ep for ep in entry_points(group=PROVISIONER_GROUP)}
    found = installed.get(spec.provisioner)
    if found is None:
        theirs = jupyter_provisioner_names()
        if spec.provisioner in theirs:
            return JupyterProvisioner.from_spec(
                spec.kernel_name, spec.provisioner, spec.provisioner_config, runtime_dir
            )
        raise KernelSpecError(
            f"kernelspec {spec.kernel_name!r} names provisioner {spec.provisioner!r}, which is "
            f"not installed (the {PROVISIONER_GROUP} entry points are: "
            f"{', '.join(sorted(installed)) or 'none'}; jupyter_client's: "
            f"{', '.join(theirs) or 'none'})",
            name=spec.kernel_name,
        )
    try:
        factory: NamedProvisioner = found.load()
    except Exception as exc:  # a broken plugin is the kernelspec's problem, named as such
        raise KernelSpecError(
            f"kernelspec {spec.kernel_name!r}: provisioner {spec.provisioner!r} "
            f"({found.value}) fails to load: {exc}",
            name=spec.kernel_name,
        ) from exc
    return factory.from_spec(spec.kernel_name, spec.provisioner_config, runtime_dir)
