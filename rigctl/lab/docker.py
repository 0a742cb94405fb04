"""A thin wrapper around the docker CLI.

Every call is an argument list (no shell). The first call checks that a Docker engine is
reachable and turns the usual failures (no CLI, engine not running, no permission on the
socket) into an :class:`~rigctl.errors.InputError` that says how to fix it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from rigctl.errors import InputError, RigctlError

# Where to find the docker CLI: $RIGCTL_DOCKER (a path or a name on PATH), else `docker`.
DOCKER_ENV = "RIGCTL_DOCKER"

_checked: set[str] = set()


class DockerError(RigctlError):
    """A docker command failed (exit 1)."""

    def __init__(self, message: str, *, stderr: str = "", fix: str | None = None):
        super().__init__(message, fix=fix)
        self.stderr = stderr


def _has_systemd() -> bool:
    return Path("/run/systemd/system").is_dir()


def start_engine_hint() -> str:
    if _has_systemd():
        return "start the engine: `sudo systemctl start docker`"
    return (
        "start the engine (no systemd here): `sudo dockerd > /var/log/dockerd.log 2>&1 &`, "
        "then check with `docker info`"
    )


def docker_bin() -> str:
    """The path of the docker CLI, or InputError saying how to install it."""
    wanted = os.environ.get(DOCKER_ENV) or "docker"
    found = shutil.which(wanted)
    if found is None:
        where = f" (${DOCKER_ENV}={wanted})" if os.environ.get(DOCKER_ENV) else ""
        raise InputError(
            f"the docker CLI is not installed{where}: lab rigs are Docker containers",
            fix="install Docker: `sudo apt-get install docker.io` (Debian/Ubuntu), then "
            + start_engine_hint(),
        )
    return found


def classify_engine_error(stderr: str) -> InputError:
    """The InputError for a failed `docker version` (engine unreachable)."""
    text = stderr.strip()
    low = text.lower()
    host = os.environ.get("DOCKER_HOST")
    if "permission denied" in low:
        return InputError(
            "permission denied on the Docker socket: this user may not use the Docker engine",
            fix="add yourself to the docker group (`sudo usermod -aG docker $USER`, then log "
            "in again) or run rigctl as root",
        )
    unreachable = (
        "cannot connect to the docker daemon",
        "is the docker daemon running",
        "failed to connect to the docker api",
        "connection refused",
        "no such file or directory",
        "error during connect",
    )
    if any(s in low for s in unreachable):
        where = f" at DOCKER_HOST={host}" if host else ""
        return InputError(
            f"the docker CLI is installed but no Docker engine is running{where}",
            fix=start_engine_hint(),
        )
    return InputError(
        f"the Docker engine is not usable: {text or 'docker version failed'}",
        fix="check `docker info`; " + start_engine_hint(),
    )


def check_engine() -> str:
    """Check once per process that the engine answers; return the docker CLI path."""
    exe = docker_bin()
    if exe in _checked:
        return exe
    try:
        proc = subprocess.run(
            [exe, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired as exc:
        raise InputError(
            "the Docker engine did not answer within 30 s",
            fix="check `docker info`; restart the engine",
        ) from exc
    except OSError as exc:
        raise InputError(
            f"cannot run the docker CLI at {exe}: {exc}",
            fix="reinstall it: `sudo apt-get install docker.io`",
        ) from exc
    if proc.returncode != 0 or not proc.stdout.strip():
        raise classify_engine_error(proc.stderr or proc.stdout)
    _checked.add(exe)
    return exe


def run(
    args: Sequence[str],
    *,
    input: bytes | None = None,
    check: bool = True,
    timeout: float | None = 120,
    what: str | None = None,
) -> subprocess.CompletedProcess:
    """Run `docker ARGS` and return the CompletedProcess (stdout/stderr as text).

    With check=True a non-zero exit raises DockerError naming `what` (or the command).
    """
    exe = check_engine()
    try:
        proc = subprocess.run([exe, *args], input=input, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise DockerError(
            f"{what or 'docker ' + ' '.join(args[:2])} did not finish within {timeout:.0f} s"
        ) from exc
    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check and proc.returncode != 0:
        raise DockerError(
            f"{what or 'docker ' + ' '.join(args[:2])} failed: {err.strip() or out.strip()}",
            stderr=err,
        )
    return result


def out(args: Sequence[str], **kw) -> str:
    return run(args, **kw).stdout.strip()


def lines(args: Sequence[str], **kw) -> list[str]:
    return [ln for ln in out(args, **kw).splitlines() if ln.strip()]


def image_exists(ref: str) -> bool:
    return run(["image", "inspect", "--format", "{{.Id}}", ref], check=False).returncode == 0


def exec_(container: str, cmd: Sequence[str], *, timeout: float = 30, check: bool = False):
    return run(["exec", container, *cmd], check=check, timeout=timeout)
