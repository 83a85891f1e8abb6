"""Docker containers' lifecycle: create, run, list, logs, stop, exec, top, stats."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from toolkit import records
from toolkit.backends import inspection, validation
from toolkit.backends.docker.client import DockerClient, docker
from toolkit.backends.options import restart_policy, sdk_ports
from toolkit.errors import InvalidArgument
from toolkit.models import ContainerInfo, ContainerSpec, ContainerStats, ExecResult, ProcessList


class LifecycleMixin(DockerClient):
    """Containers from creation to removal."""

    def run(self, spec: ContainerSpec) -> ContainerInfo:
        container = self._create(spec)
        try:
            with self._errors(container=spec.name or container.id):
                container.start()
        except Exception:
            # Never leave a half-made container behind.
            with self._errors(container=container.id):
                container.remove(force=True, v=True)
            raise
        return self.inspect(str(container.id))

    def create(self, spec: ContainerSpec) -> ContainerInfo:
        return self.inspect(str(self._create(spec).id))

    def _create(self, spec: ContainerSpec) -> Any:
        validation.validate_spec(spec)
        kwargs: dict[str, Any] = {
            "command": list(spec.command) or None,
            "name": spec.name,
            "environment": dict(spec.env),
            "labels": dict(spec.labels),
            "ports": sdk_ports(spec.ports),
            "detach": True,
        }
        for key, value in (
            ("network", spec.network),
            ("hostname", spec.hostname),
            ("working_dir", spec.working_dir),
            ("user", spec.user),
            ("runtime", spec.runtime),
        ):
            if value:
                kwargs[key] = value
        if spec.volumes:
            kwargs["mounts"] = [
                docker.types.Mount(
                    target=m.target,
                    source=m.source,
                    type="bind" if m.type == "bind" else "volume",
                    read_only=m.read_only,
                )
                for m in spec.volumes
            ]
        policy = restart_policy(spec.restart)
        if policy is not None:
            kwargs["restart_policy"] = policy
        if spec.memory:
            kwargs["mem_limit"] = spec.memory
        if spec.cpus:
            kwargs["nano_cpus"] = int(spec.cpus * 1e9)
        if spec.ulimits:
            kwargs["ulimits"] = [
                docker.types.Ulimit(name=u.name, soft=u.soft, hard=u.hard) for u in spec.ulimits
            ]
        if spec.auto_remove:
            kwargs["auto_remove"] = True
        if spec.tty:
            kwargs["tty"] = True
        if spec.stdin_open:
            kwargs["stdin_open"] = True
            # The SDK sets StdinOnce (and the Attach* flags) only for a non-detached create.
            kwargs["detach"] = not spec.stdin_once
        # create + start rather than containers.run: run pulls a missing image from a
        # registry, which is unreachable here and would turn "no such image" into a timeout.
        with self._errors(image=spec.image):
            return self._client.containers.create(spec.image, **kwargs)

    def logs(self, name: str, *, tail: int | None = None, since: int | None = None) -> str:
        validation.validate_ref(name, what="container")
        # The SDK refuses since=0, which means "from the start" anyway.
        extra: dict[str, Any] = {"since": since} if since else {}
        with self._errors(container=name):
            data = self._api.logs(
                name, stdout=True, stderr=True, tail=tail if tail else "all", **extra
            )
        return bytes(data).decode(errors="replace")

    def follow_logs(
        self, name: str, *, tail: int | None = None, since: int | None = None
    ) -> Iterator[str]:
        validation.validate_ref(name, what="container")
        # The SDK refuses since=0, which means "from the start" anyway.
        extra: dict[str, Any] = {"since": since} if since else {}
        with self._errors(container=name):
            stream = self._api.logs(
                name,
                stdout=True,
                stderr=True,
                stream=True,
                follow=True,
                tail=tail if tail else "all",
                **extra,
            )
            for chunk in stream:
                yield bytes(chunk).decode(errors="replace")

    def wait(self, name: str) -> int:
        validation.validate_ref(name, what="container")
        with self._errors(container=name):
            result = self._api.wait(name, timeout=None)
        return int(result.get("StatusCode", 0))

    def stop(self, name: str, *, timeout: int | None = None) -> None:
        validation.validate_ref(name, what="container")
        with self._errors(container=name):
            self._api.stop(name, timeout=timeout if timeout is not None else 10)

    def remove(self, name: str, *, force: bool = False, volumes: bool = False) -> None:
        attrs = self._attrs(name)
        with self._errors(container=name):
            self._api.remove_container(attrs["Id"], force=force, v=volumes)
        records.forget_container(self.kind, self.url, attrs["Id"])

    def start(self, name: str) -> None:
        validation.validate_ref(name, what="container")
        # A running container answers 304, which the SDK does not raise: a no-op, as in docker.
        with self._errors(container=name):
            self._api.start(name)

    def restart(self, name: str, *, timeout: int | None = None) -> None:
        validation.validate_ref(name, what="container")
        with self._errors(container=name):
            self._api.restart(name, timeout=timeout if timeout is not None else 10)

    def pause(self, name: str) -> None:
        validation.validate_ref(name, what="container")
        with self._errors(container=name):
            self._api.pause(name)

    def unpause(self, name: str) -> None:
        attrs = self._attrs(name)
        # Docker 20.10 answers "is not paused" with a bare 500; the state says it plainly.
        validation.require_paused(name, attrs)
        with self._errors(container=name):
            self._api.unpause(attrs["Id"])

    def kill(self, name: str, *, signal: str | int | None = None) -> None:
        validation.validate_ref(name, what="container")
        with self._errors(container=name):
            self._api.kill(name, signal=signal)

    def exec(
        self,
        name: str,
        command: Sequence[str],
        *,
        user: str | None = None,
        workdir: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ExecResult:
        validation.validate_ref(name, what="container")
        if not command:
            raise InvalidArgument("exec needs a command", hint="e.g. ctk exec web1 ls /")
        with self._errors(container=name):
            created = self._api.exec_create(
                name,
                list(command),
                user=user or "",
                workdir=workdir,
                environment=dict(env) if env else None,
            )
            stdout, stderr = self._api.exec_start(created["Id"], demux=True)
            exit_code = self._api.exec_inspect(created["Id"]).get("ExitCode")
        return ExecResult(
            exit_code=int(exit_code if exit_code is not None else -1),
            stdout=bytes(stdout or b"").decode(errors="replace"),
            stderr=bytes(stderr or b"").decode(errors="replace"),
        )

    def top(self, name: str) -> ProcessList:
        attrs = self._require_running(name, "top")
        with self._errors(container=name):
            data = self._api.top(attrs["Id"])
        return inspection.process_list(name, data)

    def stats(self, name: str) -> ContainerStats:
        attrs = self._require_running(name, "stats")
        with self._errors(container=name):
            # stream=False waits for a second sample, so precpu_stats gives a CPU delta.
            sample = self._api.stats(attrs["Id"], stream=False)
        return inspection.stats_from_sample(sample, name=name, container_id=attrs["Id"])

    def _require_running(self, name: str, action: str) -> dict[str, Any]:
        attrs = self._attrs(name)
        validation.require_running(name, attrs, action)
        return attrs
