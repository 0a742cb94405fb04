"""The CUDA toolkit, one test per fact a rig owner cares about: the release asked for is
what `nvcc` says in a login shell, the driver runs it, the environment reaches shells and
services without overriding a user's own settings, extra toolkits sit side by side, and the
rig probe is built by that nvcc from the shipped source (and, on real GPUs, moves data
correctly between every GPU pair).

Rigs whose inventory leaves rig_cuda_version null are not managed: these checks skip."""

from __future__ import annotations

import hashlib
import json
import shlex

import pytest

from rigctl import paths
from rigctl.core import cuda, probe
from rigctl.verify.checks import expect, reads_gpu, skip_unless_real_gpu


@pytest.fixture
def want(rig_vars) -> dict:
    if rig_vars.get("rig_cuda_version") is None:
        pytest.skip("rig_cuda_version is null: CUDA is not managed on this rig")
    return rig_vars


def _login(host, command: str, env: str = ""):
    """Run ``command`` in a login shell of the SSH user (what a person gets)."""
    return host.run(f"{env} bash -lc {shlex.quote(command)}")


def test_cuda_nvcc_in_login_shells_is_the_release_asked_for(host, want):
    res = _login(host, "command -v nvcc && nvcc --version")
    try:
        found = cuda.parse_nvcc_version(res.stdout)
    except ValueError:
        found = None
    expect(
        res.rc == 0 and found == want["rig_cuda_version"],
        "`nvcc` in a login shell is the CUDA release asked for (rig_cuda_version)",
        expected=want["rig_cuda_version"],
        found=found or (res.stdout + res.stderr).strip()[-200:] or "nvcc not on PATH",
        fix="run `rigctl provision host HOST` (role cuda); /etc/profile.d/rigctl-cuda.sh puts it on PATH",
    )


@reads_gpu
def test_cuda_driver_runs_the_toolkit(host, want):
    args = {"phase": "check", "version": want["rig_cuda_version"],
            "extra_versions": want.get("rig_cuda_extra_versions") or [],
            "source": want["rig_cuda_source"],
            "allow_minor_compat": bool(want.get("rig_cuda_minor_version_compat"))}
    result = host.ansible("cuda_toolkit", json.dumps(args), become=True, check=False)
    expect(
        not result.get("failed"),
        "the installed NVIDIA driver runs every CUDA toolkit on the rig",
        expected="supported (driver at least the toolkit's own, or minor version compatibility accepted)",
        found=result.get("msg") or {s["cuda"]: s["mode"] for s in result.get("support", [])},
        fix=result.get("fix") or "install a newer driver or choose an older CUDA release",
    )


def test_cuda_home_in_login_shells_without_overriding_the_user(host, want):
    res = _login(host, 'printf "%s\\n" "$CUDA_HOME"')
    mine = _login(host, 'printf "%s\\n" "$CUDA_HOME"', env="CUDA_HOME=/opt/my-cuda")
    home = res.stdout.strip()
    expect(
        bool(home) and host.file(f"{home}/bin/nvcc").exists and mine.stdout.strip() == "/opt/my-cuda",
        "CUDA_HOME is set for login shells, and a CUDA_HOME the user sets wins",
        expected="CUDA_HOME with bin/nvcc; /opt/my-cuda kept when the user sets it",
        found={"CUDA_HOME": home or "unset", "user's own": mine.stdout.strip()},
        fix="run `rigctl provision host HOST`; do not edit /etc/profile.d/rigctl-cuda.sh",
    )


def test_cuda_path_entry_is_not_duplicated(host, want):
    res = _login(host, 'printf "%s\\n" "$PATH"')
    entries = res.stdout.strip().split(":")
    dupes = sorted({e for e in entries if entries.count(e) > 1 and "cuda" in e})
    expect(
        not dupes,
        "the toolkit's bin directory is on PATH once (the profile script adds, never repeats)",
        expected="no repeated CUDA entry",
        found=res.stdout.strip(),
        fix="check ~/.profile and ~/.bashrc for a second CUDA PATH entry",
    )


def test_cuda_service_environment_file(host, want):
    f = host.file("/etc/rigctl/cuda.env")
    values = {}
    if f.exists:
        for line in f.content_string.splitlines():
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                values[key] = value
    home = values.get("CUDA_HOME", "")
    expect(
        bool(home) and host.file(f"{home}/bin/nvcc").exists
        and f"{home}/bin" in values.get("PATH", "").split(":") + ["/usr/bin"],
        "services get the toolkit through EnvironmentFile=/etc/rigctl/cuda.env",
        expected="CUDA_HOME with bin/nvcc, its bin directory on PATH",
        found=values or "no /etc/rigctl/cuda.env",
        fix="run `rigctl provision host HOST` (role cuda)",
    )


def test_cuda_runtime_library_is_found_by_the_dynamic_linker(host, want):
    res = host.run("/sbin/ldconfig -p")
    found = [ln.split("=>")[-1].strip() for ln in res.stdout.splitlines() if "libcudart.so" in ln]
    expect(
        bool(found),
        "the CUDA runtime library is in the dynamic linker's cache (every process finds it)",
        expected="libcudart.so.*",
        found=found or "not in ldconfig -p",
        fix="run `rigctl provision host HOST` (it writes /etc/ld.so.conf.d/rigctl-cuda.conf, runs ldconfig)",
    )


def test_cuda_extra_toolkits_side_by_side(host, want):
    extra = want.get("rig_cuda_extra_versions") or []
    if not extra:
        pytest.skip("no rig_cuda_extra_versions")
    found = {}
    for release in extra:
        nvcc = cuda.toolkit_nvcc(want["rig_cuda_source"], release)
        res = host.run(f"{nvcc} --version")
        try:
            found[release] = cuda.parse_nvcc_version(res.stdout)
        except ValueError:
            found[release] = None
    default_home = cuda.toolkit_home(want["rig_cuda_source"], want["rig_cuda_version"])
    link = host.run("readlink -f /usr/local/cuda").stdout.strip()
    expect(
        all(found[r] == r for r in extra) and link == host.run(f"readlink -f {default_home}").stdout.strip(),
        "the extra toolkits are installed beside the default, which /usr/local/cuda points at",
        expected={r: r for r in extra} | {"/usr/local/cuda": default_home},
        found=found | {"/usr/local/cuda": link},
        fix="run `rigctl provision host HOST`",
    )


@pytest.fixture
def probe_record(host, want) -> dict:
    f = host.file(probe.PROBE_BUILD_RECORD_PATH)
    try:
        return json.loads(f.content_string) if f.exists else {}
    except ValueError:
        return {}


def test_cuda_probe_built_from_the_shipped_source(host, want, probe_record):
    shipped = (paths.ansible_dir() / "roles" / "cuda" / "files" / probe.PROBE_SOURCE).read_bytes()
    on_rig = host.file(probe.PROBE_SOURCE_PATH)
    binary = host.file(probe.PROBE_BINARY_PATH)
    expect(
        binary.exists and binary.mode & 0o111 and on_rig.exists
        and on_rig.sha256sum == hashlib.sha256(shipped).hexdigest()
        and probe_record.get("source_sha256") == on_rig.sha256sum,
        "the rig probe is compiled from the source this rigctl ships",
        expected={"binary": probe.PROBE_BINARY_PATH, "source sha256": hashlib.sha256(shipped).hexdigest()},
        found={"binary": binary.exists, "source on rig": on_rig.sha256sum if on_rig.exists else None,
               "built from": probe_record.get("source_sha256")},
        fix="run `rigctl provision host HOST` (role cuda compiles it)",
    )


def test_cuda_probe_built_by_the_default_nvcc(host, want, probe_record):
    nvcc = probe_record.get("nvcc") or "nvcc"
    res = host.run(f"{nvcc} --version")
    line = res.stdout.strip().splitlines()[-1] if res.rc == 0 and res.stdout.strip() else None
    expect(
        probe_record.get("toolkit_version") == want["rig_cuda_version"] and line is not None
        and probe_record.get("nvcc_version") == line,
        "the probe was built by the default toolkit's nvcc as it is now",
        expected={"toolkit": want["rig_cuda_version"], "nvcc": line},
        found={"toolkit": probe_record.get("toolkit_version"), "nvcc": probe_record.get("nvcc_version")},
        fix="run `rigctl provision host HOST`: it rebuilds the probe when nvcc changed",
    )


def test_cuda_probe_moves_data_between_every_gpu_pair(host, want, rig_facts, probe_record):
    skip_unless_real_gpu(rig_facts, "running the probe")
    # Under a timeout: a broken P2P path can hang a copy instead of failing it.
    res = host.run(f"timeout 600 {probe.PROBE_BINARY_PATH} --size-mib 64 --iterations 5")
    try:
        parsed = probe.parse_probe_output(res.stdout)
        verdict = probe.evaluate_probe(parsed, expect_p2p=want.get("rig_driver_flavor") == "p2p" or None)
    except ValueError as exc:
        verdict = {"ok": False, "text": f"unparsable probe output: {exc}; stderr: {res.stderr[-300:]}"}
    expect(
        verdict["ok"],
        "data copied host<->GPU and between every GPU pair arrives intact (and over P2P on a p2p rig)",
        expected="every device, host transfer and pair ok",
        found=verdict["text"],
        fix="see rigctl-probe's output on the rig; broken P2P: check ACS/IOMMU (rigctl verify hw checks)",
    )
