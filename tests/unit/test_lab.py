"""Lab logic that needs no Docker: validation, ports, the files a lab writes, and the
messages a user gets when Docker or debootstrap are missing."""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import subprocess
import sys
import tarfile

import pytest
import yaml

from rigctl.cli import main
from rigctl.errors import EXIT_USAGE, InputError
from rigctl.lab import docker, image, model, profiles
from rigctl.lab.model import Lab, Rig


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """Every test gets its own RIGCTL_HOME and a fresh docker engine check."""
    monkeypatch.setenv("RIGCTL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(docker.DOCKER_ENV, raising=False)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(docker, "_checked", set())
    return tmp_path / "home"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def make_lab(name: str = "t-unit", n: int = 3) -> Lab:
    rigs = [
        Rig(i, 22200 + i, "4x3090" if i % 2 else "2x4090", 4 if i % 2 else 2, model.container_name(name, i))
        for i in range(1, n + 1)
    ]
    return Lab(
        name=name,
        image="rigctl-lab:bookworm-x",
        network=model.network_name(name),
        created="2025-01-01T00:00:00Z",
        rigs=rigs,
    )


# --- inventory, known_hosts, lab.json ------------------------------------------------


def test_inventory_has_the_documented_structure(home):
    lab = make_lab(n=3)
    text = model.render_inventory(lab)
    labdir = home / "labs" / "t-unit"
    assert yaml.safe_load(text) == {
        "all": {
            "children": {
                "rigs": {
                    "children": {
                        "lab": {
                            "hosts": {
                                "lab-rig-1": {
                                    "ansible_host": "127.0.0.1",
                                    "ansible_port": 22201,
                                    "rig_lab_profile": "4x3090",
                                    "rig_gpu_count": 4,
                                },
                                "lab-rig-2": {
                                    "ansible_host": "127.0.0.1",
                                    "ansible_port": 22202,
                                    "rig_lab_profile": "2x4090",
                                    "rig_gpu_count": 2,
                                },
                                "lab-rig-3": {
                                    "ansible_host": "127.0.0.1",
                                    "ansible_port": 22203,
                                    "rig_lab_profile": "4x3090",
                                    "rig_gpu_count": 4,
                                },
                            },
                            "vars": {
                                "ansible_user": "rig",
                                "ansible_ssh_private_key_file": str(labdir / "id_ed25519"),
                                "ansible_ssh_common_args": f"-o UserKnownHostsFile={labdir / 'known_hosts'} "
                                "-o StrictHostKeyChecking=yes",
                                "ansible_python_interpreter": "/usr/bin/python3",
                            },
                        }
                    }
                }
            }
        }
    }
    # One flow-style line per host, as in docs/architecture.md.
    assert (
        "            lab-rig-1: {ansible_host: 127.0.0.1, ansible_port: 22201, "
        "rig_lab_profile: 4x3090, rig_gpu_count: 4}"
    ) in text.splitlines()


@pytest.mark.parametrize("n", [1, 32])
def test_inventory_lists_every_rig_with_an_int_port(n):
    data = yaml.safe_load(model.render_inventory(make_lab(n=n)))
    hosts = data["all"]["children"]["rigs"]["children"]["lab"]["hosts"]
    assert list(hosts) == [f"lab-rig-{i}" for i in range(1, n + 1)]
    assert all(isinstance(h["ansible_port"], int) for h in hosts.values())
    assert all(isinstance(h["rig_lab_profile"], str) for h in hosts.values())


def test_inventory_quotes_a_known_hosts_path_with_a_space(tmp_path, monkeypatch):
    monkeypatch.setenv("RIGCTL_HOME", str(tmp_path / "my home"))
    data = yaml.safe_load(model.render_inventory(make_lab(n=1)))
    args = data["all"]["children"]["rigs"]["children"]["lab"]["vars"]["ansible_ssh_common_args"]
    import shlex

    assert shlex.split(args) == [
        "-o",
        f"UserKnownHostsFile={tmp_path / 'my home' / 'labs' / 't-unit' / 'known_hosts'}",
        "-o",
        "StrictHostKeyChecking=yes",
    ]


def test_known_hosts_lines_name_the_loopback_port():
    text = model.render_known_hosts([(22202, "ssh-ed25519 AAAAB comment"), (22201, "ssh-ed25519 AAAAA x")])
    assert text == ("[127.0.0.1]:22201 ssh-ed25519 AAAAA\n[127.0.0.1]:22202 ssh-ed25519 AAAAB\n")


def test_lab_files_are_written_and_read_back(home):
    from rigctl.lab.ssh import write_lab_files

    lab = make_lab(n=2)
    for r in lab.rigs:
        pub = model.host_pub_path(lab.name, r.index)
        pub.parent.mkdir(parents=True, exist_ok=True)
        pub.write_text(f"ssh-ed25519 KEY{r.index} lab-rig-{r.index}\n")
    write_lab_files(lab)
    d = home / "labs" / "t-unit"
    assert (d / "known_hosts").read_text() == (
        "[127.0.0.1]:22201 ssh-ed25519 KEY1\n[127.0.0.1]:22202 ssh-ed25519 KEY2\n"
    )
    state = json.loads((d / "lab.json").read_text())
    assert state["rigs"][1]["name"] == "lab-rig-2" and state["rigs"][1]["port"] == 22202
    assert state["image"] == "rigctl-lab:bookworm-x" and state["created"]
    back = model.load_state("t-unit")
    assert back == lab
    assert stat.S_IMODE(os.stat(d / "known_hosts").st_mode) == 0o644


def test_a_half_written_lab_json_is_ignored(home):
    d = home / "labs" / "t-half"
    d.mkdir(parents=True)
    (d / "lab.json").write_text('{"name": "t-ha')
    assert model.load_state("t-half") is None


# --- ports ---------------------------------------------------------------------------


def test_port_allocation_skips_busy_and_taken_ports():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert not model.port_is_free(port)
        got = model.allocate_ports(2, port, taken={port + 1})
    assert port not in got and port + 1 not in got
    assert got == sorted(got) and all(p > port + 1 for p in got)


def test_port_allocation_is_deterministic_given_what_is_free():
    free = {22201: False, 22202: True, 22203: False, 22204: True, 22205: True}
    got = model.allocate_ports(2, 22201, taken={22204}, is_free=lambda p: free.get(p, True))
    assert got == [22202, 22205]


def test_port_allocation_fails_clearly_at_the_top_of_the_range():
    with pytest.raises(InputError, match="no 3 free TCP ports") as exc:
        model.allocate_ports(3, 65534, is_free=lambda p: True)
    assert "--port-base" in exc.value.fix


# --- input validation ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "lab", "t-lab-1", "x" * 31, "9rigs"])
def test_valid_lab_names(name):
    assert model.check_name(name) == name


@pytest.mark.parametrize("name", ["", "-lab", "Lab", "lab_1", "x" * 32, "lab.1", "a b", "lab-", "../etc"])
def test_invalid_lab_names(name):
    with pytest.raises(InputError, match="invalid lab name"):
        model.check_name(name)


@pytest.mark.parametrize("n", [0, -1, 33, True, "2"])
def test_invalid_rig_counts(n):
    with pytest.raises(InputError, match="1 to 32"):
        model.check_rigs(n)


def test_rig_names_and_indexes():
    assert model.rig_index("lab-rig-12") == 12
    assert model.rig_index("3") == 3
    assert model.rig_index("rig-3") is None
    assert model.container_name("t1", 2) == "rigctl-t1-rig-2"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--name", "Bad_Name"], "invalid lab name 'Bad_Name'"),
        (["--rigs", "0"], "invalid number of rigs 0"),
        (["--rigs", "40"], "invalid number of rigs 40"),
        (["--port-base", "80"], "invalid port base 80"),
        (["--mirror", "deb.debian.org"], "invalid Debian mirror"),
    ],
)
def test_lab_up_rejects_bad_input_with_exit_2(capsys, args, message):
    code, out, err = run_cli(capsys, "lab", "up", *args)
    assert code == EXIT_USAGE
    assert f"error: {message}" in err
    assert "  fix: " in err


def test_unknown_profile_lists_the_known_ones(capsys):
    code, _, err = run_cli(capsys, "lab", "up", "--name", "t-unit", "--profile", "3x9999")
    assert code == EXIT_USAGE
    assert "unknown lab profile '3x9999'" in err
    known = profiles.known_profiles()
    assert {"4x3090", "6x3090", "2x4090", "8x5090", "4x3090-p2p"} <= set(known)
    assert "use one of: " + ", ".join(known) in err


def test_profile_and_profiles_together_are_refused(capsys):
    code, _, err = run_cli(capsys, "lab", "up", "--profile", "4x3090", "--profiles", "4x3090,2x4090")
    assert code == EXIT_USAGE and "either --profile or --profiles" in err


def test_profiles_must_match_the_rig_count():
    from rigctl.lab.checks import _resolve_profiles

    with pytest.raises(InputError, match="2 profile.* for 3 rig"):
        _resolve_profiles({}, 3, None, ["4x3090", "2x4090"])
    assert _resolve_profiles({}, None, None, ["4x3090", "2x4090"]) == (2, {1: "4x3090", 2: "2x4090"})
    # Existing rigs keep their profile unless one is given; new ones get the default.
    assert _resolve_profiles({1: "8x5090"}, 2, None, None) == (2, {1: "8x5090", 2: "4x3090"})
    assert _resolve_profiles({1: "8x5090"}, None, "2x4090", None) == (1, {1: "2x4090"})


def test_gpu_count_comes_from_the_profile():
    assert profiles.gpu_count("8x5090") == 8
    assert profiles.gpu_count("4x3090-p2p") == 4
    assert profiles.gpu_count("2x4090") == 2


def test_profile_files_are_absolute_paths_with_modes():
    files = profiles.profile_files("2x4090")
    paths = {p for p, _, _ in files}
    assert "/usr/local/bin/nvidia-smi" in paths
    assert all(p.startswith("/") and isinstance(c, bytes) for p, c, _ in files)


# --- Docker missing, not running, not allowed ----------------------------------------


def fake_docker(tmp_path, stderr: str, rc: int = 1):
    """A `docker` script on PATH that fails the way the real CLI does."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir(exist_ok=True)
    script = bindir / "docker"
    script.write_text(f"#!/bin/sh\ncat >&2 <<'EOF'\n{stderr}\nEOF\nexit {rc}\n")
    script.chmod(0o755)
    return bindir


def test_docker_cli_missing(capsys, monkeypatch):
    monkeypatch.setenv(docker.DOCKER_ENV, "/nonexistent/docker")
    code, _, err = run_cli(capsys, "lab", "up", "--name", "t-unit")
    assert code == EXIT_USAGE
    assert "the docker CLI is not installed" in err
    assert "apt-get install docker.io" in err


@pytest.mark.parametrize(
    "stderr",
    [
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
        "failed to connect to the docker API at unix:///var/run/docker.sock; check if the path "
        "is correct and if the daemon is running: dial unix /var/run/docker.sock: connect: no "
        "such file or directory",
    ],
)
def test_docker_engine_not_running(capsys, monkeypatch, tmp_path, stderr):
    monkeypatch.setenv("PATH", f"{fake_docker(tmp_path, stderr)}{os.pathsep}{os.environ['PATH']}")
    for cmd in (["up"], ["down"], ["status"]):
        monkeypatch.setattr(docker, "_checked", set())
        code, _, err = run_cli(capsys, "lab", *cmd, "--name", "t-unit")
        assert code == EXIT_USAGE, cmd
        assert "no Docker engine is running" in err
        assert ("systemctl start docker" in err) or ("dockerd" in err)


def test_engine_hint_without_systemd_says_dockerd(monkeypatch):
    monkeypatch.setattr(docker, "_has_systemd", lambda: False)
    err = docker.classify_engine_error("Cannot connect to the Docker daemon at x")
    assert "dockerd" in err.fix and "systemctl" not in err.fix
    monkeypatch.setattr(docker, "_has_systemd", lambda: True)
    err = docker.classify_engine_error("Cannot connect to the Docker daemon at x")
    assert "systemctl start docker" in err.fix


def test_docker_socket_permission_denied(capsys, monkeypatch, tmp_path):
    stderr = (
        "permission denied while trying to connect to the Docker daemon socket at "
        'unix:///var/run/docker.sock: Get "http://%2Fvar%2Frun%2Fdocker.sock/v1.50/'
        'version": dial unix /var/run/docker.sock: connect: permission denied'
    )
    monkeypatch.setenv("PATH", f"{fake_docker(tmp_path, stderr)}{os.pathsep}{os.environ['PATH']}")
    code, _, err = run_cli(capsys, "lab", "up", "--name", "t-unit")
    assert code == EXIT_USAGE
    assert "permission denied on the Docker socket" in err
    assert "docker group" in err and "root" in err


def test_real_docker_cli_against_a_missing_socket(monkeypatch):
    """The real CLI's message (whatever its version) is recognised as 'not running'."""
    if docker.shutil.which("docker") is None:
        pytest.skip("no docker CLI on this machine")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/rigctl-test.sock")
    with pytest.raises(InputError, match="no Docker engine is running at DOCKER_HOST="):
        docker.check_engine()


# --- image build prerequisites -------------------------------------------------------


def test_debootstrap_missing(monkeypatch):
    monkeypatch.setattr(image.shutil, "which", lambda name: None)
    monkeypatch.setattr(image.os.path, "exists", lambda p: False)
    with pytest.raises(InputError, match="debootstrap is not installed") as exc:
        image.check_build_prerequisites()
    assert "apt-get install debootstrap" in exc.value.fix


def test_image_build_needs_root(monkeypatch):
    monkeypatch.setattr(image.shutil, "which", lambda name: "/usr/sbin/debootstrap")
    monkeypatch.setattr(image.os, "geteuid", lambda: 1000)
    with pytest.raises(InputError, match="needs root") as exc:
        image.check_build_prerequisites()
    assert "sudo rigctl lab image" in exc.value.fix


def test_image_tag_follows_the_recipe():
    a = image.image_tag("bookworm", "http://deb.debian.org/debian")
    assert a == image.image_tag("bookworm", "http://deb.debian.org/debian")
    assert a.startswith("rigctl-lab:bookworm-")
    assert a != image.image_tag("bookworm", "http://mirror.local/debian")
    assert a != image.image_tag("trixie", "http://deb.debian.org/debian")


def test_image_apt_sources_carry_non_free_from_the_same_signed_mirror():
    text = image.apt_sources("bookworm", "http://mirror.local/debian")
    assert "URIs: http://mirror.local/debian\n" in text
    assert "Components: main contrib non-free non-free-firmware\n" in text
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n" in text


def test_image_sshd_is_key_only():
    conf = image.SSHD_CONFIG
    for line in (
        "PasswordAuthentication no",
        "PermitRootLogin no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
    ):
        assert line in conf.splitlines()


def test_mirror_default_and_env(monkeypatch):
    monkeypatch.delenv(model.MIRROR_ENV, raising=False)
    assert model.default_mirror() == "http://deb.debian.org/debian"
    monkeypatch.setenv(model.MIRROR_ENV, "http://127.0.0.1:3142/debian")
    assert model.default_mirror() == "http://127.0.0.1:3142/debian"


# --- inotify budget ------------------------------------------------------------------


def test_inotify_budget():
    assert model.inotify_shortfall(128, 10, 10) is None
    assert model.inotify_shortfall(128, 10, 32) == 1024
    assert model.inotify_shortfall(1024, 0, 32) is None
    err = model.inotify_error(128, 10, 32, 1024)
    assert "fs.inotify.max_user_instances" in err.message
    assert "sysctl -w fs.inotify.max_user_instances=1024" in err.fix


# --- what goes into a rig ------------------------------------------------------------


def test_tar_stream_keeps_modes_and_owners():
    data = model.tar_stream(
        [
            ("/etc/ssh/ssh_host_ed25519_key", b"secret", 0o600, 0, 0),
            ("/home/rig/.ssh/authorized_keys", b"key\n", 0o600, 1000, 1000),
            ("/usr/local/bin/nvidia-smi", b"#!/bin/sh\n", 0o755),
        ]
    )
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {
            "etc/ssh/ssh_host_ed25519_key",
            "home/rig/.ssh/authorized_keys",
            "usr/local/bin/nvidia-smi",
        }
        assert members["home/rig/.ssh/authorized_keys"].uid == 1000
        assert members["etc/ssh/ssh_host_ed25519_key"].mode == 0o600
        assert members["usr/local/bin/nvidia-smi"].mode == 0o755
        assert tar.extractfile("home/rig/.ssh/authorized_keys").read() == b"key\n"
        assert all(m.isfile() for m in members.values())


def test_ssh_argv_checks_host_keys(home):
    from rigctl.lab import ssh_argv

    lab = make_lab(n=2)
    model.save_state(lab)
    argv = ssh_argv("t-unit", "lab-rig-2", ["uname", "-a"])
    assert argv[0].endswith("ssh")
    assert "StrictHostKeyChecking=yes" in argv
    assert f"UserKnownHostsFile={home / 'labs' / 't-unit' / 'known_hosts'}" in argv
    assert argv[argv.index("-i") + 1] == str(home / "labs" / "t-unit" / "id_ed25519")
    assert argv[argv.index("-p") + 1] == "22202"
    assert argv[-4:] == ["--", "rig@127.0.0.1", "uname", "-a"]
    assert not any("StrictHostKeyChecking=no" in a or "accept-new" in a for a in argv)
    with pytest.raises(InputError, match="has no rig 'lab-rig-7'"):
        ssh_argv("t-unit", "lab-rig-7")
    with pytest.raises(InputError, match="no lab named 't-none'"):
        ssh_argv("t-none", "lab-rig-1")


def test_lab_help_does_not_import_the_lab_package():
    code = (
        "import sys; from rigctl.cli import cli; import rigctl.cli.lab_cmd; "
        "assert 'rigctl.lab' not in sys.modules, 'imported'; "
        "assert 'ansible' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lab_commands_are_listed(capsys):
    code, out, _ = run_cli(capsys, "lab", "--help")
    assert code == 0
    for cmd in ("up", "down", "status", "ssh", "restart", "list", "image", "profiles"):
        assert f"  {cmd} " in out


# --- lab up --mirror-dir: a controller directory served inside every rig ---------------


def test_the_lab_mirror_url_is_on_the_rigs_loopback():
    import rigctl.lab as lab_pkg

    assert lab_pkg.LAB_MIRROR_URL == "http://127.0.0.1:8600/"
    assert lab_pkg.LAB_MIRROR_MOUNT == "/srv/rigctl-mirror"
    assert lab_pkg.LAB_MIRROR_UNIT == "rigctl-lab-mirror.service"


def test_the_default_release_is_debian_13_and_debian_12_stays_selectable(capsys):
    code, out, _ = run_cli(capsys, "lab", "up", "--help")
    assert code == 0 and "default trixie, Debian 13" in " ".join(out.split())
    assert "[bookworm|trixie]" in out
    code, out, _ = run_cli(capsys, "lab", "image", "--help")
    assert code == 0 and "[default: trixie]" in out
    assert model.Lab(name="x").release == model.DEFAULT_RELEASE == "trixie"
    assert image.image_tag("trixie", model.DEFAULT_MIRROR).startswith("rigctl-lab:trixie-")
    # trixie's /tmp tmpfs cannot be mounted in a container: the image masks it
    assert "tmp.mount" in image.recipe("trixie", model.DEFAULT_MIRROR)["masked"]


def test_lab_up_help_lists_mirror_dir(capsys):
    code, out, _ = run_cli(capsys, "lab", "up", "--help")
    assert code == 0
    assert "--mirror-dir DIR" in out and "--mirror URL" in out


@pytest.mark.parametrize("kind", ["missing", "file", "empty"])
def test_lab_up_mirror_dir_must_be_an_existing_directory(capsys, tmp_path, monkeypatch, kind):
    # Checked before anything else: no docker CLI is needed to be told.
    monkeypatch.setenv(docker.DOCKER_ENV, str(tmp_path / "no-docker"))
    path = {"missing": tmp_path / "nope", "file": tmp_path / "f", "empty": ""}[kind]
    if kind == "file":
        path.write_text("x")
    code, out, err = run_cli(capsys, "lab", "up", "--name", "t-unit", "--mirror-dir", str(path))
    assert code == EXIT_USAGE, err
    message = {
        "missing": f"mirror directory '{path}' does not exist",
        "file": f"mirror directory '{path}' is not a directory",
        "empty": "--mirror-dir needs a directory",
    }[kind]
    assert f"error: {message}" in err
    assert "  fix: give an existing directory on this machine (`--mirror-dir DIR`)" in err
    assert out == ""
    assert not (model.lab_dir("t-unit")).exists()


def test_mirror_dir_is_resolved_to_an_absolute_path(tmp_path, monkeypatch):
    real = tmp_path / "repo"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    monkeypatch.chdir(tmp_path)
    assert model.check_mirror_dir("repo") == str(real)
    assert model.check_mirror_dir(tmp_path / "link") == str(real)
    colon = tmp_path / "a:b"
    colon.mkdir()
    with pytest.raises(InputError, match="':' in its path"):
        model.check_mirror_dir(colon)


def test_docker_create_argv_mounts_the_mirror_dir_read_only(tmp_path):
    from rigctl.lab import create_argv

    lab = make_lab(n=1)
    plain = create_argv(lab, lab.rigs[0])
    assert not any("/srv/rigctl-mirror" in a or "mirror-dir" in a for a in plain)
    assert plain[-2:] == ["rigctl-lab:bookworm-x", "/lib/systemd/systemd"]

    lab.mirror_dir = str(tmp_path)
    argv = create_argv(lab, lab.rigs[0])
    assert argv[:2] == ["create", "--pull"]
    i = argv.index(f"{tmp_path}:/srv/rigctl-mirror:ro")
    assert argv[i - 1] == "-v"
    assert argv[argv.index(f"io.rigctl.lab.mirror-dir={tmp_path}") - 1] == "--label"
    assert argv[-2:] == ["rigctl-lab:bookworm-x", "/lib/systemd/systemd"]
    assert i < argv.index("rigctl-lab:bookworm-x")
    # Everything else is the same container.
    assert [a for a in argv if a not in plain] == [
        f"io.rigctl.lab.mirror-dir={tmp_path}",
        f"{tmp_path}:/srv/rigctl-mirror:ro",
    ]
    assert argv[argv.index("-p") + 1] == "127.0.0.1:22201:22"


def test_the_mirror_unit_serves_on_loopback_and_is_enabled_for_boot(tmp_path):
    from rigctl.lab.container import _rig_files

    lab = make_lab(n=1)
    paths = [f[0] for f in _rig_files(lab, lab.rigs[0], "ssh-ed25519 AAAA k", False)]
    assert "/etc/systemd/system/rigctl-lab-mirror.service" not in paths

    lab.mirror_dir = str(tmp_path)
    files = {f[0]: f for f in _rig_files(lab, lab.rigs[0], "ssh-ed25519 AAAA k", False)}
    unit = files["/etc/systemd/system/rigctl-lab-mirror.service"]
    assert unit[2:] == (0o644, 0, 0)
    lines = unit[1].decode().splitlines()
    assert (
        "ExecStart=/usr/bin/python3 -m http.server 8600 --bind 127.0.0.1 --directory /srv/rigctl-mirror"
        in lines
    )
    assert "WantedBy=multi-user.target" in lines
    assert "Restart=on-failure" in lines


def test_lab_json_keeps_the_mirror_dir(home, tmp_path):
    lab = make_lab(n=1)
    lab.mirror_dir = str(tmp_path)
    data = lab.to_json()
    assert data["mirror_dir"] == str(tmp_path)
    assert data["mirror_url"] == "http://127.0.0.1:8600/"
    model.save_state(lab)
    assert model.load_state("t-unit").mirror_dir == str(tmp_path)
    # A lab.json from before --mirror-dir: no mirror.
    data.pop("mirror_dir")
    assert Lab.from_json(data).mirror_dir == ""
    assert make_lab().to_json()["mirror_url"] is None


def _container(i: int, mirror_dir: str = "") -> dict:
    return {
        "id": f"id{i}",
        "name": model.container_name("t-unit", i),
        "state": "running",
        "image": "rigctl-lab:bookworm-x",
        "lab": "t-unit",
        "index": i,
        "port": 22200 + i,
        "profile": "4x3090",
        "mirror_dir": mirror_dir,
    }


def test_the_mirror_dir_of_a_lab_is_fixed_when_it_is_created(tmp_path):
    from rigctl.lab.checks import _resolve_mirror_dir

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    new = Lab(name="t-unit")
    assert _resolve_mirror_dir("t-unit", new, {}, str(a)) == str(a)
    assert _resolve_mirror_dir("t-unit", new, {}, None) == ""

    lab = make_lab(n=2)
    lab.mirror_dir = str(a)
    both = {1: _container(1, str(a)), 2: _container(2, str(a))}
    assert _resolve_mirror_dir("t-unit", lab, both, None) == str(a)  # kept
    assert _resolve_mirror_dir("t-unit", lab, both, str(a)) == str(a)
    with pytest.raises(InputError) as exc:
        _resolve_mirror_dir("t-unit", lab, both, str(b))
    assert f"lab 't-unit' serves {a} to its rigs; it cannot serve {b} instead" in exc.value.message
    assert "`rigctl lab down --name t-unit` first" in exc.value.fix
    assert f"leave out --mirror-dir to keep {a}" in exc.value.fix

    # A lab started without one cannot get one in place either.
    plain = make_lab(n=1)
    with pytest.raises(InputError, match="was started without --mirror-dir; it cannot serve"):
        _resolve_mirror_dir("t-unit", plain, {1: _container(1)}, str(a))
    # The containers' bind mounts win over lab.json (e.g. a rewritten lab.json).
    assert _resolve_mirror_dir("t-unit", plain, {1: _container(1, str(a))}, None) == str(a)
    with pytest.raises(InputError, match="serve different mirror directories"):
        _resolve_mirror_dir("t-unit", lab, {1: _container(1, str(a)), 2: _container(2)}, None)
    # Containers removed by hand: lab.json still says which directory they had.
    assert _resolve_mirror_dir("t-unit", lab, {}, None) == str(a)
    # The recorded directory is gone: Docker would make an empty one in its place.
    a.rmdir()
    with pytest.raises(InputError, match="which is gone"):
        _resolve_mirror_dir("t-unit", lab, both, None)


def test_lab_up_with_another_mirror_dir_refuses_before_touching_anything(capsys, tmp_path, monkeypatch):
    from rigctl.lab import lab as lab_mod

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    lab = make_lab(n=1)
    lab.mirror_dir = str(a)
    model.save_state(lab)
    calls = []
    monkeypatch.setattr(lab_mod, "_tool", lambda name: name)
    monkeypatch.setattr(lab_mod.docker, "check_engine", lambda: "docker")
    monkeypatch.setattr(
        lab_mod, "discover", lambda name: (model.load_state(name), {1: _container(1, str(a))})
    )
    monkeypatch.setattr(lab_mod.docker, "run", lambda *a, **k: calls.append(a))
    code, out, err = run_cli(capsys, "lab", "up", "--name", "t-unit", "--mirror-dir", str(b))
    assert code == EXIT_USAGE
    assert f"error: lab 't-unit' serves {a} to its rigs; it cannot serve {b} instead" in err
    assert f"rigctl lab up --name t-unit --mirror-dir {b}" in err
    assert calls == []
    assert model.load_state("t-unit").mirror_dir == str(a)


def test_lab_restart_refuses_when_the_mirror_dir_is_gone(tmp_path):
    from rigctl.lab import lab_restart

    lab = make_lab(n=1)
    lab.mirror_dir = str(tmp_path / "gone")
    model.save_state(lab)
    with pytest.raises(InputError, match="which is gone"):
        lab_restart("t-unit", "lab-rig-1")


def test_status_and_list_show_the_mirror_dir(capsys, tmp_path, monkeypatch):
    from rigctl.cli.lab_cmd import _status_table
    from rigctl.lab import list_labs
    from rigctl.lab import status as lab_mod

    lab = make_lab(n=1)
    lab.mirror_dir = str(tmp_path)
    model.save_state(lab)
    monkeypatch.setattr(lab_mod, "_containers", lambda name=None: [])
    assert list_labs()[0]["mirror_dir"] == str(tmp_path)
    code, out, _ = run_cli(capsys, "lab", "list")
    assert code == 0 and f"mirror={tmp_path}" in out

    row = {
        "rig": "lab-rig-1",
        "container": "c",
        "state": "running",
        "port": 22201,
        "profile": "4x3090",
        "gpu_count": 4,
        "systemd": "running",
        "failed_units": [],
        "ssh": True,
        "mirror": "active",
    }
    st = {
        "name": "t-unit",
        "image": "i",
        "inventory": "/x/inventory.yml",
        "mirror_dir": str(tmp_path),
        "mirror_url": "http://127.0.0.1:8600/",
        "rigs": [row],
    }
    _status_table(st)
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["rig", "container", "port", "profile", "systemd", "ssh", "mirror"]
    assert out[1].split()[-1] == "active"
    assert f"mirror: {tmp_path} at http://127.0.0.1:8600/ inside each rig" in out


def test_image_build_needs_the_archive_keyring(monkeypatch, tmp_path):
    monkeypatch.setattr(image.shutil, "which", lambda name: "/usr/sbin/debootstrap")
    monkeypatch.setenv(image.KEYRING_ENV, str(tmp_path / "missing.gpg"))
    with pytest.raises(InputError, match="archive keyring") as exc:
        image.check_build_prerequisites()
    assert "debian-archive-keyring" in exc.value.fix


def test_debootstrap_checks_signatures(monkeypatch, tmp_path):
    """The debootstrap command line names the keyring and forces the signature check."""
    keyring = tmp_path / "k.gpg"
    keyring.write_bytes(b"x")
    monkeypatch.setenv(image.KEYRING_ENV, str(keyring))
    seen = {}

    def fake_run(cmd, **kw):
        seen["cmd"] = cmd
        raise RuntimeError("stop here")

    monkeypatch.setattr(image, "check_build_prerequisites", lambda: "/usr/sbin/debootstrap")
    monkeypatch.setattr(image.docker, "check_engine", lambda: None)
    monkeypatch.setattr(image.subprocess, "run", fake_run)
    monkeypatch.setenv(image.BUILD_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("RIGCTL_HOME", str(tmp_path / "home"))
    with pytest.raises(RuntimeError):
        image.build_image("bookworm", "http://127.0.0.1:9/debian", "t:1", log=lambda m: None)
    assert f"--keyring={keyring}" in seen["cmd"]
    assert "--force-check-gpg" in seen["cmd"]


def test_image_sshd_penalties_off_only_where_openssh_knows_the_keyword():
    # trixie's OpenSSH 10 penalizes the one source every lab connection comes from;
    # bookworm's 9.2 would refuse to start with the keyword.
    assert "PerSourcePenalties no" in image.sshd_config("trixie").splitlines()
    assert "PerSourcePenalties" not in image.sshd_config("bookworm")
    for release in ("bookworm", "trixie"):
        assert image.recipe(release, "http://m")["sshd"] == image.sshd_config(release)
