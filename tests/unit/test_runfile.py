"""rigctl.core.runfile: NVIDIA's installer contract (version answer, documented options,
command lines), conflicting packages, refusal messages, stray module copies and the
initramfs entries that are stale. The stand-in installer's own answers are read through
the same functions (it is built in a temp dir and asked, never run as an install)."""

from __future__ import annotations

import subprocess

import pytest

from rigctl.core import runfile
from tests.fixtures import fake_nvidia_runfile

# What NVIDIA's installer answers (format of nvidia-installer --version).
REAL_VERSION = (
    "\nnvidia-installer:  version 550.54.14  (buildmeister@builder)  Thu Feb 22 01:25:25 UTC 2024\n"
    "  The NVIDIA Software Installer for Unix/Linux.\n"
)


def test_version_from_the_installers_answer():
    assert runfile.parse_installer_version(REAL_VERSION) == "550.54.14"
    assert runfile.parse_installer_version(
        "Identification: NVIDIA Accelerated Graphics Driver for Linux-x86_64 565.77\n") == "565.77"
    assert runfile.parse_installer_version("nvidia-installer: version unknown") is None
    assert runfile.parse_installer_version("") is None


def test_no_kernel_modules_spelling_comes_from_the_documented_options():
    documented = "  --no-kernel-modules\n      Install ..."
    assert runfile.no_kernel_modules_option(documented) == "--no-kernel-modules"
    assert runfile.no_kernel_modules_option("  --no-kernel-module\n      Install ...") == "--no-kernel-module"
    assert runfile.no_kernel_modules_option("  --kernel-module-only\n") is None
    argv = runfile.install_argv("/x.run", "  --no-kernel-module\n  --no-x-check\n")
    assert argv == ["sh", "/x.run", "--silent", "--no-kernel-module", "--no-x-check"]
    assert runfile.install_argv("/x.run", "--no-kernel-modules") == ["sh", "/x.run", "--silent",
                                                                    "--no-kernel-modules"]
    with pytest.raises(ValueError, match="does not document --no-kernel-modules"):
        runfile.install_argv("/x.run", "--silent only")
    assert runfile.uninstall_argv() == ["/usr/bin/nvidia-uninstall", "--silent"]


def test_the_stand_in_answers_like_the_contract_says(tmp_path):
    path, sha = fake_nvidia_runfile.build("580.95.05", tmp_path)
    assert path.name == "NVIDIA-Linux-x86_64-580.95.05.run"
    assert runfile.sha256_file(str(path)) == sha and runfile.is_sha256(sha)

    def ask(*args):
        return subprocess.run(["sh", str(path), *args], capture_output=True, text=True, cwd=tmp_path)

    assert runfile.parse_installer_version(ask("--version").stdout) == "580.95.05"
    assert runfile.install_argv(str(path), ask("--advanced-options").stdout)[2:] == [
        "--silent", "--no-kernel-modules", "--no-x-check"]
    assert ask("--check").returncode == 0
    # without --silent or without --no-kernel-modules it refuses (nothing installed)
    assert ask("--no-kernel-modules").returncode == 1
    assert "pass --no-kernel-modules" in ask("--silent").stderr


def test_distribution_driver_packages_conflict_but_not_the_cuda_toolkit():
    installed = ["git", "libnvidia-ml1", "nvidia-smi", "nvidia-open-kernel-dkms", "libcuda1",
                 "nvidia-cuda-toolkit", "nvidia-cuda-dev", "firmware-nvidia-gsp", "cuda-toolkit-12-8",
                 "libnvidia-compute-570", "nvidia-utils-570", "nvidia-modprobe", "libnccl2"]
    assert runfile.conflicting_packages(installed) == [
        "firmware-nvidia-gsp", "libcuda1", "libnvidia-compute-570", "libnvidia-ml1",
        "nvidia-modprobe", "nvidia-open-kernel-dkms", "nvidia-smi", "nvidia-utils-570"]
    assert runfile.conflicting_packages(["git", "cuda-drivers-fabricmanager-x"]) == []


def test_refusals_name_the_problem_and_the_fix():
    msg = runfile.conflict_message("rig-a", ["libcuda1", "nvidia-smi"], "580.95.05")
    assert "rig-a has the distribution's NVIDIA driver packages libcuda1, nvidia-smi installed" in msg
    assert "apt-get purge libcuda1 nvidia-smi" in msg and "rig_driver_source: debian" in msg
    assert "Nothing was changed" in msg
    msg = runfile.sha_mismatch_message("http://m/x.run", "a" * 64, "B" * 64)
    assert f"has sha256 {'a' * 64}, not the pinned rig_driver_runfile_sha256 {'b' * 64}" in msg
    msg = runfile.version_mismatch_message("http://m/x.run", "580.105.08", "580.95.05")
    assert "is driver 580.105.08 (its --version), but rig_driver_version is 580.95.05" in msg
    assert "NVIDIA-Linux-x86_64-580.95.05.run" in msg


def test_a_refusal_says_exactly_what_the_run_changed_before_it():
    before = ["ii  libc6", "ii  curl"]
    assert runfile.changes_before(None, None) == "Nothing was changed."
    assert runfile.changes_before(before, before) == "Nothing was changed."
    assert runfile.changes_before(before, before, lists_refreshed=True) == \
        "Nothing was changed (apt's package lists were refreshed)."
    said = runfile.changes_before(before, before + ["ii  git", "ii  liberror-perl"], True,
                                  "/var/lib/rigctl/nvidia-p2p/git")
    assert said.startswith("Changed before this check: only git was installed to fetch the "
                           "patched source, adding git, liberror-perl (`apt-get purge git "
                           "liberror-perl` removes them); the patched source cache "
                           "/var/lib/rigctl/nvidia-p2p/git was updated; apt's package lists "
                           "were refreshed; the driver is untouched"), said
    assert "Nothing was changed" not in said
    # the refusals carry the sentence they are given
    msg = runfile.sha_mismatch_message("http://m/x.run", "a" * 64, "b" * 64, said)
    assert said in msg and "Nothing was changed" not in msg
    assert said in runfile.conflict_message("rig-a", ["libcuda1"], "580.95.05", said)
    assert said in runfile.version_mismatch_message("http://m/x.run", None, "580.95.05", said)


def test_the_stand_in_persistenced_takes_the_real_command_line(tmp_path):
    fake_nvidia_runfile.build("580.95.05", tmp_path)
    subprocess.run(["sh", str(tmp_path / "NVIDIA-Linux-x86_64-580.95.05.run"), "-x", "--target",
                    str(tmp_path / "x")], check=True, capture_output=True)
    daemon = tmp_path / "x" / "nvidia-persistenced"
    assert fake_nvidia_runfile.MARK in daemon.read_text()  # labelled a stand-in

    def ask(*args):
        return subprocess.run(["sh", str(daemon), *args], capture_output=True, text=True)

    assert ask("--version").stdout.startswith("nvidia-persistenced:  version 580.95.05")
    assert "--user USER" in ask("--help").stdout and "--verbose" in ask("--help").stdout
    got = ask("--frobnicate")
    assert got.returncode == 1 and "Unrecognized option: '--frobnicate'" in got.stderr
    assert ask("--user").returncode == 1


def test_up_to_date_needs_the_record_and_the_installed_answer():
    rec = {"version": "580.95.05", "sha256": "ab" * 32}
    assert runfile.up_to_date(rec, "580.95.05", "AB" * 32, "580.95.05")
    assert not runfile.up_to_date(rec, "580.95.05", "ab" * 32, None)  # uninstalled by hand
    assert not runfile.up_to_date(rec, "580.95.05", "cd" * 32, "580.95.05")  # another file
    assert not runfile.up_to_date(None, "580.95.05", "ab" * 32, "580.95.05")
    assert runfile.file_name("http://m/d/NVIDIA-Linux-x86_64-580.95.05.run?x=1") == \
        "NVIDIA-Linux-x86_64-580.95.05.run"


def test_stray_module_copies_are_the_nvidia_files_that_are_not_the_builds_own():
    k = "/lib/modules/6.12.48+deb13-amd64"
    paths = [f"{k}/updates/dkms/nvidia.ko", f"{k}/updates/dkms/nvidia-uvm.ko.xz",
             f"{k}/updates/dkms/nvidia-current-open.ko", f"{k}/extra/nv/nvidia.ko.zst",
             f"{k}/updates/dkms/other.ko"]
    ours = [f"{k}/updates/dkms/nvidia.ko", f"{k}/updates/dkms/nvidia-uvm.ko.xz"]
    assert runfile.stray_copies(paths, ours) == [f"{k}/extra/nv/nvidia.ko.zst",
                                                 f"{k}/updates/dkms/nvidia-current-open.ko"]
    assert runfile.module_base("nvidia-drm.ko.zst") == "nvidia-drm"
    assert runfile.module_base("nouveau.ko") is None
    assert runfile.module_base("nvidia-fs.ko") is None  # GPUDirect Storage: not the driver
    assert runfile.module_base("nvidia-current-open-uvm.ko") == "nvidia-current-open-uvm"


def test_stale_initramfs_modules():
    listing = "\n".join([
        "usr/lib/modules/6.12.48+deb13-amd64/updates/dkms/nvidia-current-open.ko",
        "usr/lib/modules/6.12.48+deb13-amd64/updates/dkms/nvidia.ko",
        "usr/lib/modules/6.12.48+deb13-amd64/kernel/drivers/gpu/drm/nouveau/nouveau.ko",
        "usr/lib/modules/6.1.0-40-amd64/updates/dkms/nvidia.ko",
        "usr/lib/modules/6.12.48+deb13-amd64/modules.dep",
    ])
    mods = runfile.initramfs_modules(listing, "6.12.48+deb13-amd64")
    assert mods == ["updates/dkms/nvidia-current-open.ko", "updates/dkms/nvidia.ko"]
    # the stock copy is gone from disk; ours was rebuilt after the initramfs was made
    on_disk = {"updates/dkms/nvidia.ko": 200.0}
    assert runfile.stale_initramfs_modules(mods, on_disk, 100.0) == mods
    assert runfile.stale_initramfs_modules(["updates/dkms/nvidia.ko"], on_disk, 300.0) == []
