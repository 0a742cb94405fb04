"""scripts/setup --plan: what set-up would install and start, decided from what is really
on the machine (a Docker *engine*, not a look-alike client).

Each test runs a copy of the script (in a temp checkout, so `.venv` is the test's own) with
a PATH that holds only stubs and symlinks to the few real tools the script needs; never
/usr/bin wholesale (the test machine has docker.io installed). Every stub records its calls:
the plan must run nothing but `docker info` and change nothing.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "setup"
# Real tools the script runs (the plan uses bash, dirname and python3; the rest are for
# the real run and must not be reached in --plan).
REAL_TOOLS = ("bash", "env", "python3", "id", "dirname", "seq", "cat", "sleep")
# What set-up checks for by name, and the package that brings each.
TOOLS = {"debootstrap": "debootstrap", "ssh": "openssh-client", "ssh-keygen": "openssh-client", "git": "git"}


def _real(tool: str) -> str:
    for d in ("/usr/bin", "/bin", "/usr/local/bin"):
        path = os.path.join(d, tool)
        if os.access(path, os.X_OK):
            return os.path.realpath(path)
    found = shutil.which(tool)
    if not found:
        pytest.skip(f"{tool} not installed")
    return found


class Machine:
    """A temp checkout with scripts/setup and a bin dir that is the whole PATH."""

    def __init__(self, root: Path):
        self.root = root
        self.repo = root / "repo"
        (self.repo / "scripts").mkdir(parents=True)
        shutil.copy2(SCRIPT, self.repo / "scripts" / "setup")
        self.bin = root / "bin"
        self.bin.mkdir()
        self.calls = root / "calls.log"
        self.calls.touch()
        self.keyring = root / "debian-archive-keyring.gpg"
        self.keyring.write_bytes(b"\x99\x01keyring")
        for tool in REAL_TOOLS:
            (self.bin / tool).symlink_to(_real(tool))
        for tool in TOOLS:
            self.stub(tool)
        # Would-be side effects: recorded if ever run.
        for tool in ("apt-get", "systemctl", "nohup", "sudo"):
            self.stub(tool)

    def stub(self, name: str, body: str = "exit 0") -> Path:
        path = self.bin / name
        if path.exists() or path.is_symlink():
            path.unlink()
        path.write_text(f'#!/bin/sh\necho "{name} $*" >> "{self.calls}"\n{body}\n')
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return path

    def remove(self, name: str) -> None:
        (self.bin / name).unlink()

    def docker_client_without_engine(self) -> None:
        # Like a machine image's /usr/local/bin/docker with no engine behind it.
        self.stub(
            "docker",
            'echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock." >&2\nexit 1',
        )

    def docker_engine_reachable(self) -> None:
        self.stub("docker", '[ "$1" = info ] && exit 0\nexit 1')

    def dockerd_installed(self) -> None:
        self.stub("dockerd", "exit 1")

    def python_without_venv(self) -> None:
        real = _real("python3")
        self.remove("python3")
        self.stub("python3", f'case "$*" in *ensurepip*) exit 1;; esac\nexec "{real}" "$@"')

    def plan(self, *args: str, **env) -> tuple[list[str], str]:
        environ = {
            "PATH": str(self.bin),
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
            "RIGCTL_SETUP_KEYRING": str(self.keyring),
        }
        environ.update(env)
        proc = subprocess.run(
            [str(self.repo / "scripts" / "setup"), "--plan", *args],
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.root,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines(), proc.stderr

    def ran(self) -> list[str]:
        return self.calls.read_text().splitlines()


def _venv_line() -> list[str]:
    """`install python3-venv` when this machine's python3 cannot make a venv."""
    ok = (
        subprocess.run([_real("python3"), "-c", "import ensurepip, venv"], capture_output=True).returncode
        == 0
    )
    return [] if ok else ["install python3-venv"]


@pytest.fixture
def machine(tmp_path) -> Machine:
    return Machine(tmp_path)


def _pkgs(lines: list[str]) -> list[str]:
    return [line.removeprefix("install ") for line in lines if line.startswith("install ")]


def test_docker_client_without_engine_installs_and_starts_the_engine(machine):
    machine.docker_client_without_engine()
    lines, err = machine.plan()
    assert lines == ["install docker.io", *_venv_line(), "start docker engine", "create .venv"]
    assert "docker client" in err and str(machine.bin / "docker") in err
    # The plan asked the client and ran nothing else.
    assert machine.ran() == ["docker info"]


def test_no_docker_at_all_installs_and_starts_the_engine(machine):
    lines, _err = machine.plan()
    assert lines == ["install docker.io", *_venv_line(), "start docker engine", "create .venv"]
    assert machine.ran() == []


def test_reachable_engine_needs_nothing_for_docker(machine):
    machine.docker_engine_reachable()
    lines, _err = machine.plan()
    assert lines == [*_venv_line(), "create .venv"]
    assert machine.ran() == ["docker info"]


@pytest.mark.parametrize("client", [True, False], ids=["client", "no-client"])
def test_dockerd_present_but_not_running_is_started_not_installed(machine, client):
    machine.dockerd_installed()
    if client:
        machine.docker_client_without_engine()
    lines, _err = machine.plan()
    assert lines == [*_venv_line(), "start docker engine", "create .venv"]
    assert "docker.io" not in _pkgs(lines)
    assert all(not call.startswith("dockerd") for call in machine.ran())  # only started for real


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_missing_tool_installs_its_package(machine, tool):
    machine.docker_engine_reachable()
    machine.remove(tool)
    lines, _err = machine.plan()
    assert _pkgs(lines) == [TOOLS[tool], *_pkgs(_venv_line())]


def test_all_tools_missing_each_package_once(machine):
    machine.docker_engine_reachable()
    for tool in TOOLS:
        machine.remove(tool)
    lines, _err = machine.plan()
    assert _pkgs(lines) == ["debootstrap", "openssh-client", "git", *_pkgs(_venv_line())]


def test_missing_keyring_installs_debian_archive_keyring(machine):
    machine.docker_engine_reachable()
    lines, _err = machine.plan(RIGCTL_SETUP_KEYRING=str(machine.root / "no" / "such.gpg"))
    assert _pkgs(lines) == ["debian-archive-keyring", *_pkgs(_venv_line())]


def test_empty_keyring_counts_as_missing(machine):
    machine.docker_engine_reachable()
    machine.keyring.write_bytes(b"")
    lines, _err = machine.plan()
    assert "debian-archive-keyring" in _pkgs(lines)


def test_python_without_venv_support_installs_python3_venv(machine):
    machine.docker_engine_reachable()
    machine.python_without_venv()
    lines, _err = machine.plan()
    assert lines == ["install python3-venv", "create .venv"]


def test_existing_venv_is_not_created_again(machine):
    machine.docker_engine_reachable()
    venv_python = machine.repo / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.symlink_to(_real("python3"))
    lines, _err = machine.plan()
    assert lines == _venv_line()


def test_everything_missing_at_once(machine):
    machine.docker_client_without_engine()
    for tool in TOOLS:
        machine.remove(tool)
    machine.python_without_venv()
    lines, _err = machine.plan(RIGCTL_SETUP_KEYRING=str(machine.root / "missing.gpg"))
    assert lines == [
        "install docker.io",
        "install debootstrap",
        "install openssh-client",
        "install git",
        "install debian-archive-keyring",
        "install python3-venv",
        "start docker engine",
        "create .venv",
    ]
    assert [c for c in machine.ran() if not c.startswith(("docker info", "python3"))] == []


# --- the headless browser of the report test (--with-browser, the test job only) --------


def test_browser_not_asked_for_is_not_installed(machine):
    machine.docker_engine_reachable()
    lines, _err = machine.plan()
    assert "chromium" not in _pkgs(lines)
    assert not any(c.startswith("chromium") for c in machine.ran())


def test_with_browser_and_no_chromium_installs_debians_chromium(machine):
    machine.docker_engine_reachable()
    lines, _err = machine.plan("--with-browser")
    assert _pkgs(lines) == [*_pkgs(_venv_line()), "chromium"]


def test_with_browser_and_a_working_chromium_installs_nothing(machine):
    machine.docker_engine_reachable()
    machine.stub("chromium", '[ "$1" = --version ] && echo "Chromium 156.0" && exit 0\nexit 1')
    lines, _err = machine.plan("--with-browser")
    assert "chromium" not in _pkgs(lines)
    assert machine.ran() == ["docker info", "chromium --version"]


def test_with_browser_and_a_chromium_stub_that_does_not_run_installs_it(machine):
    # Ubuntu's chromium-browser/chromium without snapd: a script that cannot start a browser
    machine.docker_engine_reachable()
    machine.stub("chromium", 'echo "please install the chromium snap" >&2\nexit 1')
    lines, err = machine.plan("--with-browser")
    assert _pkgs(lines) == [*_pkgs(_venv_line()), "chromium"]
    assert "does not answer --version" in err


def test_unknown_setup_option_is_refused(machine):
    proc = subprocess.run([str(machine.repo / "scripts" / "setup"), "--plan", "--browser"],
                          env={"PATH": str(machine.bin), "HOME": str(machine.root)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "usage: scripts/setup" in proc.stderr
