"""Run the compose files in real containers with podman (Docker-compatible API) and docker-compose.

The product stays Docker-first; podman 4.3's quirks are handled here: a private containers.conf
(compose/containers/podman-env.sh), health checks run by a loop (no systemd to schedule them), and `down`
repeated for containers that share a network namespace. Every run starts clean (start_clean): what a killed
earlier run left would make `up` fail; one stage runs per machine at a time (stage_lock).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from deploy_helpers import COMPOSE, ROOT

IMAGES_SCRIPT = COMPOSE / "containers" / "images.sh"
PODMAN_ENV = COMPOSE / "containers" / "podman-env.sh"
HEALTH_INTERVAL_S = 2.0
TEST_PROJECT_PREFIX = "mecha-e2e-"  # every compose project name the tests use
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"


def _podman_env() -> dict[str, str]:
    """The environment podman-env.sh sets up (CONTAINERS_CONF), taken from a bash that sourced it."""
    out = subprocess.run(
        ["bash", "-c", f"source {PODMAN_ENV} && env -0"], capture_output=True, check=True, timeout=30
    ).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


@contextmanager
def stage_lock(state_dir: Path, wait_s: float = 1200) -> Iterator[None]:
    """One container stage per machine at a time. The compose files share one subnet and the tests fixed
    project names, and images.sh retags the images: a second stage at the same time would remove the first
    one's projects (start_clean) or swap its images. An flock: a killed run's lock goes with its process, so
    its leftovers are still removed by the next run. Fails naming the holder after wait_s."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "stage.lock"
    with path.open("a+") as lock:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    holder = path.read_text().strip() or "?"
                    raise RuntimeError(f"another container stage (pid {holder}) holds {path}") from None
                time.sleep(1)
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def state_dir() -> Path:
    """The harness's state folder (podman-env.sh: MECHA_CONTAINERS_STATE)."""
    return Path(_podman_env()["MECHA_CONTAINERS_STATE"])


def build_images(timeout_s: float = 1500) -> dict[str, str]:
    """Build base, stand-ins and the Mecha image; returns ENVOY_IMAGE=... and the other image variables."""
    env = {**os.environ, "MECHA_IMAGE_SOURCE": os.environ.get("MECHA_IMAGE_SOURCE", "worktree")}
    result = subprocess.run(
        ["bash", str(IMAGES_SCRIPT)], capture_output=True, text=True, timeout=timeout_s, env=env, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{IMAGES_SCRIPT} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    lines = [line for line in result.stdout.splitlines() if "=" in line]
    return dict(line.split("=", 1) for line in lines)


@dataclass
class Podman:
    """`podman system service` on a private socket plus the health-check loop; stopped by PID."""

    workdir: Path
    env: dict[str, str] = field(default_factory=_podman_env)
    _service: subprocess.Popen[bytes] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    paused: threading.Event = field(default_factory=threading.Event)  # set: no health checks (during down)
    _checking: threading.Lock = field(default_factory=threading.Lock)
    _loop: threading.Thread | None = None

    @property
    def socket(self) -> Path:
        return self.workdir / "podman.sock"

    def start(self) -> None:
        log = (self.workdir / "podman-service.log").open("wb")
        self._service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{self.socket}"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if time.monotonic() > deadline or self._service.poll() is not None:
                raise RuntimeError(f"podman system service did not start: {self.workdir}/podman-service.log")
            time.sleep(0.2)
        self._loop = threading.Thread(target=self._run_health_checks, daemon=True)
        self._loop.start()

    def stop(self) -> None:
        self._stop.set()
        if self._loop:
            self._loop.join(timeout=30)
        if self._service and self._service.poll() is None:
            self._service.terminate()
            self._service.wait(timeout=30)

    def _run_health_checks(self) -> None:
        """Podman schedules health checks with systemd timers; without systemd, run them ourselves."""
        while not self._stop.wait(HEALTH_INTERVAL_S):
            if self.paused.is_set():
                continue
            with self._checking:
                self._check_once()

    def pause_health_checks(self) -> None:
        self.paused.set()
        with self._checking:  # an in-flight round finishes first
            pass

    def _check_once(self) -> None:
        ids = self.run("ps", "-q", "--filter", "health=starting").split()
        ids += self.run("ps", "-q", "--filter", "health=unhealthy").split()
        ids += self.run("ps", "-q", "--filter", "health=healthy").split()
        for container in dict.fromkeys(ids):
            subprocess.run(
                ["podman", "healthcheck", "run", container],
                env=self.env, capture_output=True, timeout=30, check=False,
            )  # fmt: skip

    def run(self, *args: str, check: bool = False) -> str:
        result = subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, timeout=120, check=check
        )
        return result.stdout

    def containers(self, project: str) -> list[dict[str, object]]:
        out = self.run("ps", "-a", "--format", "json", "--filter", f"label={COMPOSE_PROJECT_LABEL}={project}")
        return json.loads(out or "[]")

    def networks_on(self, subnets: list[str]) -> list[dict[str, Any]]:
        """Podman networks with one of these subnets."""
        networks = json.loads(self.run("network", "ls", "--format", "json", check=True) or "[]")
        return [n for n in networks if any(s.get("subnet") in subnets for s in n.get("subnets") or [])]

    def remove_project(self, project: str, network: str) -> None:
        """Everything a compose project left: its containers (and those joined to their network namespaces:
        --depend), any other container on its network, the network, its volumes."""
        self.pause_health_checks()
        try:
            ids = [str(c["Id"]) for c in self.containers(project)]
            ids += self.run("ps", "-a", "-q", "--no-trunc", "--filter", f"network={network}").split()
            for container in dict.fromkeys(ids):
                self.run("rm", "-f", "--depend", "-t", "5", "-i", container)
            self.run("network", "rm", "-f", network, check=True)
            label = f"label={COMPOSE_PROJECT_LABEL}={project}"
            for volume in self.run("volume", "ls", "-q", "--filter", label).split():
                self.run("volume", "rm", "-f", volume, check=True)
            _end_stale_health_check_sessions(ids)
        finally:
            self.paused.clear()


@dataclass
class ComposeProject:
    podman: Podman
    file: str
    name: str
    images: dict[str, str]

    def compose(
        self, *args: str, timeout_s: float = 600, check: bool = True, override: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **self.podman.env, **self.images, "DOCKER_HOST": f"unix://{self.podman.socket}"}
        env.pop("MECHA_PUBLISH_ADDRESS", None)  # the default: loopback
        files = ["-f", str(COMPOSE / self.file), *(["-f", str(override)] if override else [])]
        command = ["docker-compose", "-p", self.name, *files, *args]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, env=env, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def subnets(self) -> list[str]:
        """The subnets of the file's networks (the compose subnet, topology.COMPOSE_SUBNET)."""
        networks = yaml.safe_load((COMPOSE / self.file).read_text()).get("networks") or {}
        configs = [c for n in networks.values() for c in ((n or {}).get("ipam") or {}).get("config") or []]
        return [str(c["subnet"]) for c in configs if "subnet" in c]

    def scale(self, service: str, count: int) -> None:
        """`up --scale` on the running project. Podman reports the network's IPAM option driver=host-local,
        which compose v1 then wants in the file ('needs to be recreated'): an override names podman's."""
        native = json.loads(self.podman.run("network", "inspect", f"{self.name}_mesh") or "[{}]")[0]
        doc = yaml.safe_load((COMPOSE / self.file).read_text())["networks"]
        doc["mesh"]["ipam"]["options"] = dict(native.get("ipam_options") or {"driver": "host-local"})
        override = self.podman.workdir / f"{self.name}-ipam.yaml"
        override.write_text(yaml.safe_dump({"networks": doc}))
        args = ("up", "-d", "--no-deps", "--no-recreate", "--scale", f"{service}={count}", service)
        self.compose(*args, override=override)

    def health(self) -> dict[str, str]:
        """Container name -> its status line (e.g. "Up 10 seconds (healthy)")."""
        return {str(c["Names"][0]): str(c["Status"]) for c in self.podman.containers(self.name)}  # type: ignore[index]

    def wait_healthy(self, within_s: float = 240) -> None:
        deadline = time.monotonic() + within_s
        while True:
            statuses = self.health()
            # every container healthy; the one-shot `credentials` container done (exited 0)
            if statuses and all("(healthy)" in s or s.startswith("Exited (0)") for s in statuses.values()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not every container became healthy in {within_s}s: {statuses}")
            time.sleep(2)

    def exec(self, service: str, *command: str) -> str:
        return self.compose("exec", "-T", service, *command, timeout_s=60).stdout

    def down(self) -> list[str]:
        """`down -v` (twice: podman may refuse a namespace owner before its joiners); returns what is left."""
        ids = [str(c["Id"]) for c in self.podman.containers(self.name)]
        self.podman.pause_health_checks()
        for _ in range(2):
            self.compose("down", "-v", "--remove-orphans", "--timeout", "5", check=False)
            if not self.podman.containers(self.name):
                break
        left = [f"container {c['Names']}" for c in self.podman.containers(self.name)]
        networks = self.podman.run("network", "ls", "--format", "{{.Name}}").split()
        left += [f"network {n}" for n in networks if n.startswith(f"{self.name}_")]
        volumes = self.podman.run("volume", "ls", "--format", "{{.Name}}").split()
        left += [f"volume {v}" for v in volumes if v.startswith(f"{self.name}_")]
        _end_stale_health_check_sessions(ids)
        left += [f"process {pid}" for pid in _processes_naming(ids)]
        self.podman.paused.clear()
        return left


def _end_stale_health_check_sessions(container_ids: list[str]) -> None:
    """Podman 4.3 quirk: a `podman healthcheck run` exec session caught by `down` can leave its conmon behind
    (`conmon ... --exec`) after the container is gone. Those are the harness's own health checks: end them."""
    for pid in _processes_naming(container_ids):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"conmon") and b"--exec" in argv:
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _processes_naming(container_ids):
        time.sleep(0.5)


def _processes_naming(container_ids: list[str]) -> list[str]:
    """PIDs whose command line names one of the containers (conmon, runc, the container's own processes)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if any(cid in cmdline for cid in container_ids):
            found.append(proc.name)
    return found


def start_clean(project: ComposeProject) -> None:
    """Remove what a killed earlier run left (a machine restart mid-run): `up` fails on either. The project's
    own network makes compose say 'needs to be recreated' (podman reports IPAM option driver=host-local, the
    file names none); another test project's network on the same subnet makes podman refuse a second one
    ('subnet ... is already used'). Only test projects (TEST_PROJECT_PREFIX) are removed: anything else on
    the subnet fails the run with its name."""
    assert project.name.startswith(TEST_PROJECT_PREFIX), project.name
    left = project.down()
    assert not left, f"the leftovers of an earlier {project.name} run could not be removed: {left}"
    subnets = project.subnets()
    for network in project.podman.networks_on(subnets):
        owner = network.get("labels", {}).get(COMPOSE_PROJECT_LABEL, "")
        if owner.startswith(TEST_PROJECT_PREFIX) and owner != project.name:
            project.podman.remove_project(owner, str(network["name"]))
    held = [str(n["name"]) for n in project.podman.networks_on(subnets)]
    assert not held, f"subnet {subnets} is held by podman network(s) {held} (not a test project's leftover)"


@contextmanager
def running(project: ComposeProject) -> Iterator[ComposeProject]:
    """Start clean, up -d, every container healthy, then always down; nothing may be left."""
    start_clean(project)
    try:
        project.compose("up", "-d", "--no-build", timeout_s=600)
        project.wait_healthy()
        yield project
    finally:
        left = project.down()
        assert not left, f"left after down: {left}"


__all__ = [
    "ROOT",
    "ComposeProject",
    "Podman",
    "build_images",
    "running",
    "stage_lock",
    "start_clean",
    "state_dir",
]
