"""Kernels on a Slurm cluster: ``provisioner_name: "kernelyard-slurm"`` in a kernelspec.

A kernelspec becomes cluster-launched by adding metadata::

    "metadata": {"kernel_provisioner": {"provisioner_name": "kernelyard-slurm",
                 "config": {"partition": "debug", "callback_ip": "10.0.0.1"}}}

A start submits :mod:`.node` as the batch script (``sbatch`` through an
asyncio subprocess, the secrets in its environment), listens on a callback
port (:mod:`.callback`) until the kernel, once its ports are bound on its
node, reports where it is, and returns a :class:`~.job.SlurmKernel`. Two
timeouts say which hop was slow: ``queue_timeout`` while the job is PENDING
(Slurm's reason in the error), ``options.startup_timeout`` from RUNNING to
the report. A job that ends before it reports is a LaunchError with its exit
code, Slurm's reason and the end of its output.

While a start waits for the report it looks at its job every 0.2 s (a start
is short); a running kernel is watched with every other one of its cluster
(:mod:`.watcher`). A restart starts the kernel again in its job (the job's
:class:`~.job.Allocation`), with the same keys and new ports, while the job
runs and its supervisor's link is up; else it is a new job. The kernel's
connection leaves the machine, so it is encrypted by default when its spec
supports it (``transport_encryption`` in the config: ``auto`` unless the
kernelspec says ``disabled``; the launch options may ask for more).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from kernelyard.errors import LaunchError
from kernelyard.provisioning.encryption import (
    TransportEncryption,
    curve_keys_for,
    encryption_mode,
    stricter,
)
from kernelyard.provisioning.options import LaunchOptions
from kernelyard.provisioning.slurm.callback import Callback
from kernelyard.provisioning.slurm.commands import JobState, SlurmCommands
from kernelyard.provisioning.slurm.config import NAME, SlurmConfig, job_name
from kernelyard.provisioning.slurm.job import Allocation, SlurmKernel
from kernelyard.provisioning.slurm.link import Report
from kernelyard.provisioning.spec import LaunchSpec, kernel_env
from kernelyard.transport.curve import curve_supported
from kernelyard.wire.connection import ConnectionInfo

__all__ = ["Allocation", "SlurmConfig", "SlurmKernel", "SlurmProvisioner"]

log = logging.getLogger(__name__)

NODE_SCRIPT = Path(__file__).with_name("node.py")


@dataclass
class SlurmProvisioner:
    """Starts kernels as Slurm jobs (see the module docstring)."""

    config: SlurmConfig = field(default_factory=SlurmConfig)
    name: str = NAME
    #: Each kernel's job, kept for a restart in it.
    _allocations: dict[str, Allocation] = field(default_factory=dict, repr=False)

    @classmethod
    def from_spec(
        cls, spec_name: str, config: Mapping[str, Any], runtime_dir: Path
    ) -> SlurmProvisioner:
        """The provisioner a kernelspec's ``kernel_provisioner.config`` describes."""
        del runtime_dir  # nothing of a cluster kernel is kept on this machine
        return cls(SlurmConfig.from_config(spec_name, config))

    @property
    def commands(self) -> SlurmCommands:
        env = {"SLURM_CONF": self.config.slurm_conf} if self.config.slurm_conf else {}
        return SlurmCommands(env)

    async def start(
        self,
        spec: LaunchSpec,
        *,
        kernel_id: str,
        options: LaunchOptions,
        connection_info: ConnectionInfo | None = None,
    ) -> SlurmKernel:
        """Submit the kernel's job and return once it reported its ports (see the module).
        LaunchError for ``options.persist``: its supervisor ends the job with its link.
        """
        if options.persist:
            raise LaunchError(
                "kernelyard-slurm cannot launch kernels that outlive their manager yet "
                "(LaunchOptions.persist: the node's supervisor ends the job with its link)"
            )
        info = connection_info
        if info is None:
            mode = self._encryption(options)
            public, secret = curve_keys_for(spec, mode) or (b"", b"")
            info = ConnectionInfo(
                key=secrets.token_hex(16).encode("ascii"),
                kernel_name=spec.kernel_name,
                curve_publickey=public,
                curve_secretkey=secret,
            )
        self._allocations = {k: a for k, a in self._allocations.items() if not a.gone}
        allocation = self._allocations.get(kernel_id)
        if connection_info is not None and allocation is not None and allocation.usable:
            try:
                return await self._restart_in(allocation, spec, kernel_id, info, options)
            except LaunchError as exc:
                if allocation.link.open and not allocation.gone:
                    raise  # the kernel itself fails to start: a new job would too
                log.warning("kernel %s: %s; starting it in a new job", kernel_id, exc)
        callback_ip = self.config.callback_ip or await anyio.to_thread.run_sync(_this_host)
        commands = self.commands
        async with Callback(callback_ip, kernel_id, info.key) as callback:
            # The kernel's environment as a local launch makes it (``${VAR}`` filled in),
            # with the secrets; sbatch exports it to the job and nothing else of ours.
            env = {
                **kernel_env(options.environment(), spec.env, parent_pid=os.getpid()),
                **commands.env,
                "KERNELYARD_KEY": info.key.decode(),
                "KERNELYARD_KERNEL": _job_json(spec, kernel_id, callback, info, self.config),
            }
            if info.curve_keys is not None:
                env["KERNELYARD_CURVE_PUBLIC"] = info.curve_publickey.decode()
                env["KERNELYARD_CURVE_SECRET"] = info.curve_secretkey.decode()
            script = f"#!{self.config.python}\n".encode() + NODE_SCRIPT.read_bytes()
            _tell(options, "", "submitting the kernel's job to Slurm")
            try:
                job_id = await commands.submit(
                    [*self.config.sbatch_args(kernel_id), *_cwd_args(options)], script, env
                )
            except BaseException:  # the job may be in the queue all the same: by its name
                with anyio.CancelScope(shield=True):
                    await commands.cancel_named(job_name(kernel_id))
                raise
            callback.job_id = job_id
            log.info("kernel %s: submitted as Slurm job %s", kernel_id, job_id)
            try:
                report = await self._await_report(callback, commands, job_id, options)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await commands.cancel(job_id)
                raise
            allocation = Allocation(
                job_id=job_id,
                node=report.node,
                commands=commands,
                link=callback.link(),
                poll_interval=self.config.poll_interval,
                output=_output_path(self.config.output, job_id),
            )
        self._allocations[kernel_id] = allocation
        return self._kernel(allocation, report, spec, info)

    async def _restart_in(
        self,
        allocation: Allocation,
        spec: LaunchSpec,
        kernel_id: str,
        info: ConnectionInfo,
        options: LaunchOptions,
    ) -> SlurmKernel:
        """The kernel again in its job (no new queue wait), once it reported its ports."""
        _tell(options, "", f"restarting the kernel in Slurm job {allocation.job_id}")
        report = await allocation.restart(secrets.token_hex(16), options.startup_timeout)
        log.info("kernel %s: restarted in Slurm job %s", kernel_id, allocation.job_id)
        return self._kernel(allocation, report, spec, info)

    def _kernel(
        self, allocation: Allocation, report: Report, spec: LaunchSpec, info: ConnectionInfo
    ) -> SlurmKernel:
        data = {**info.to_dict(), **report.ports, "ip": report.address, "transport": "tcp"}
        return SlurmKernel(
            allocation=allocation,
            pid=report.pid,
            connection_info=ConnectionInfo.from_dict(data),
            argv=list(spec.argv),
            launch_spec=spec,
            provisioner=self.name,
        )

    def _encryption(self, options: LaunchOptions) -> TransportEncryption:
        """The stricter of the options' mode and the kernelspec's (``auto`` by default,
        which needs libzmq's Curve: without it, a default stays clear text).
        """
        floor = self.config.transport_encryption
        if floor == "auto" and not curve_supported():
            floor = "disabled"
        return stricter(options.transport_encryption, encryption_mode(floor))

    async def _await_report(
        self, callback: Callback, commands: SlurmCommands, job_id: str, options: LaunchOptions
    ) -> Report:
        """The kernel's report, racing the job's states: PENDING too long, or ended."""
        reported: list[Report] = []
        failure: list[LaunchError] = []
        async with anyio.create_task_group() as tg:

            async def receive() -> None:
                reported.append(await callback.report())
                tg.cancel_scope.cancel()

            async def watch() -> None:
                failure.append(await self._watch_start(commands, job_id, options))
                tg.cancel_scope.cancel()

            tg.start_soon(receive)
            tg.start_soon(watch)
        if reported:
            return reported[0]
        raise failure[0]

    async def _watch_start(
        self, commands: SlurmCommands, job_id: str, options: LaunchOptions
    ) -> LaunchError:
        """Poll the job until its start fails; returns why (the caller races the report)."""
        submitted = time.monotonic()
        running_since: float | None = None
        told = ""
        while True:
            await anyio.sleep(min(0.2, self.config.poll_interval))
            now = time.monotonic()
            try:
                state = (await commands.states([job_id])).get(job_id) or (
                    await commands.show(job_id) or JobState("COMPLETED")
                )
            except LaunchError as exc:  # one failed look is not a failed start
                log.warning("Slurm job %s: %s", job_id, exc)
                continue
            if state.ended:
                return await self._ended_early(commands, job_id, state)
            told = _tell(options, told, _waiting_for(job_id, state))
            if state.state == "PENDING":
                if now - submitted > self.config.queue_timeout:
                    return LaunchError(
                        f"Slurm job {job_id} was still PENDING after "
                        f"{self.config.queue_timeout:g} s in the queue "
                        f"({state.reason or 'no reason given'}); cancelled"
                    )
                continue
            running_since = running_since or now
            if now - running_since > options.startup_timeout:
                return LaunchError(
                    f"Slurm job {job_id} ran on {state.nodes} for {options.startup_timeout:g} s "
                    "without its kernel reporting its ports; cancelled"
                )

    async def _ended_early(
        self, commands: SlurmCommands, job_id: str, state: JobState
    ) -> LaunchError:
        shown = await commands.show(job_id) or state
        output = _output_path(self.config.output, job_id)
        tail = ""
        if output is not None and output.exists():
            tail = output.read_text(errors="replace")[-4000:]
        return LaunchError.citing_stderr(
            f"Slurm job {job_id} ended ({shown.state}"
            + (f", {shown.reason}" if shown.reason else "")
            + f", exit code {shown.returncode}) before its kernel reported",
            argv=[],
            exit_code=shown.returncode,
            stderr_tail=tail,
        )


def _waiting_for(job_id: str, state: JobState) -> str:
    """What a start waits for, in a user's words."""
    if state.state == "PENDING":
        return f"Slurm job {job_id} is queued ({state.reason or 'no reason given'})"
    where = f" on {state.nodes}" if state.nodes else ""
    return f"Slurm job {job_id} is {state.state}{where}; waiting for the kernel to report"


def _tell(options: LaunchOptions, told: str, text: str) -> str:
    """Tell ``options.progress`` ``text`` unless it was the last thing told."""
    if text != told and options.progress is not None:
        options.progress(text)
    return text


def _this_host() -> str:
    """This host's address by its name; LaunchError when that is a loopback address,
    which no node could reach (Debian maps the host name to 127.0.1.1).
    """
    address = socket.gethostbyname(socket.gethostname())
    if address.startswith("127.") or address == "::1":
        raise LaunchError(
            f"this host's name resolves to {address}, which the nodes cannot reach: "
            "set callback_ip in the kernelspec's kernel_provisioner config"
        )
    return address


def _cwd_args(options: LaunchOptions) -> list[str]:
    return [f"--chdir={os.fspath(options.cwd)}"] if options.cwd is not None else []


def _output_path(template: str, job_id: str) -> Path | None:
    """The job's output file, if its name needs no more than the job id."""
    name = template.replace("%j", job_id)
    return Path(name) if "%" not in name else None


def _job_json(
    spec: LaunchSpec, kernel_id: str, callback: Callback, info: ConnectionInfo, config: SlurmConfig
) -> str:
    return json.dumps(
        {
            "kernel_id": kernel_id,
            "nonce": callback.nonce,
            "kernel_name": spec.kernel_name,
            "argv": list(spec.argv),
            "callback": callback.address,
            "signature_scheme": info.signature_scheme,
            "workdir": config.workdir,
        }
    )
