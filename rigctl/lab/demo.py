"""The lab demo (`scripts/lab-demo`): the main job of rigctl on two simulated rigs.

Two lab rigs (a 4x3090 workstation and a 2x4090 desktop) get a realistic inventory: the
stock open NVIDIA driver from Debian non-free built by DKMS, persistence, power limits
(270 W on every 3090 with one per-GPU override; 400 W and exclusive-process compute mode
on the 4090s). Then, with the real CLI: `inventory check`, `provision fleet` (both rigs in
one run, their driver builds in parallel), `facts`, `verify` (green), a drift made by hand
(`nvidia-smi -pl` on one GPU) that `verify` catches naming the GPU, a re-provision that
repairs exactly that and changes nothing else, and `verify` green again.

Every step is timed; the total is printed at the end. Any step that fails unexpectedly
stops the demo with exit 1 (the verify after the drift must fail: exit 1 naming the GPU).
`--quick` leaves the driver unmanaged (no kernel headers, no DKMS build): a short tour.

    python -m rigctl.lab.demo [--quick] [--name demo] [--fresh] [--down]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_NAME = "demo"
PROFILES = ("4x3090", "2x4090")
RIGS = ("lab-rig-1", "lab-rig-2")
GROUPS = {"lab-rig-1": "workstation", "lab-rig-2": "desktop"}
# Debian 12 and its non-free driver: the one the lab rigs really build (as Molecule's
# nvidia_driver_open scenario does). Not the lab's default Debian 13: its stock
# nvidia-open-kernel-dkms 550.163.01-2 does not build on trixie's current kernel
# 6.12.117+deb13 (pci_resize_resource changed), so the demo names its release.
RELEASE = "bookworm"
RELEASE_NAME = "Debian 12"
DRIVER_VERSION = "535.261.03"
HEADERS_PACKAGE = "linux-headers-amd64"
# The drift: GPU 1 of the workstation set to 300 W by hand (the inventory says 270 W).
DRIFT_RIG = "lab-rig-1"
DRIFT_GPU = 1
DRIFT_BUS = "0000:21:00.0"
DRIFT_WATTS = 300
POWER_W = 270
OVERRIDE_BUS = "0000:41:00.0"
OVERRIDE_W = 250
INVENTORY_DIR = "demo-inventory"


class DemoFailed(Exception):
    pass


# --- the inventory the demo writes ---------------------------------------------------------


def inventory_files(lab_inventory_text: str, quick: bool = False) -> dict[str, str]:
    """The demo inventory directory: relative path -> text. `hosts.yml` is the lab's own
    inventory (connection settings, written by `rigctl lab up`); the demo adds the rigs'
    groups and their group/host variables, as an owner would for real rigs."""
    if quick:
        driver = (
            "# --quick: the driver stays unmanaged (no kernel headers, no DKMS build).\n"
            "rig_driver_version: null\n"
        )
    else:
        driver = (
            "# The stock open kernel modules and the userspace at exactly this version, from\n"
            "# Debian non-free, built by DKMS for every kernel with headers, pinned and held.\n"
            "rig_driver_flavor: open\n"
            f'rig_driver_version: "{DRIVER_VERSION}"\n'
            "rig_driver_source: debian\n"
        )
    return {
        "hosts.yml": lab_inventory_text,
        "groups.yml": (
            "# The demo's rigs by kind; hosts.yml (from `rigctl lab up`) says how to reach them.\n"
            "all:\n"
            "  children:\n"
            "    rigs:\n"
            "      children:\n"
            "        workstation:             # 4x RTX 3090 (group_vars/workstation.yml)\n"
            "          hosts:\n"
            "            lab-rig-1:\n"
            "        desktop:                 # 2x RTX 4090 (group_vars/desktop.yml)\n"
            "          hosts:\n"
            "            lab-rig-2:\n"
        ),
        "group_vars/rigs.yml": (
            "---\n"
            "# Every rig of the demo (the roles become root where they need to).\n"
            + driver
            + "# nvidia-persistenced at boot: the power limits stay applied between jobs.\n"
            "rig_persistence_mode: true\n"
            "# Report a needed reboot, never reboot by itself.\n"
            "rig_reboot_policy: never\n"
            "# CUDA and NCCL stay unmanaged in the demo (the toolkit is gigabytes).\n"
            "rig_cuda_version: null\n"
            "rig_nccl_version: null\n"
        ),
        "group_vars/workstation.yml": (
            "---\n"
            "# The 4x3090 workstation: 270 W of the 3090's 350 W on every card (cooler, inside\n"
            "# the PSU budget); host_vars/lab-rig-1.yml lowers one card further.\n"
            "rig_gpu_count: 4\n"
            f"rig_power_limit_w: {POWER_W}\n"
        ),
        "group_vars/desktop.yml": (
            "---\n"
            "# The 2x4090 desktop: 400 W of 450 W, one process at a time per GPU.\n"
            "rig_gpu_count: 2\n"
            "rig_power_limit_w: 400\n"
            "rig_compute_mode: exclusive_process\n"
        ),
        "host_vars/lab-rig-1.yml": (
            "---\n"
            "# The card above the PSU runs hot: 250 W (quote bus ids: YAML reads them as numbers).\n"
            "rig_power_limit_overrides:\n"
            f'  "{OVERRIDE_BUS}": {OVERRIDE_W}\n'
        ),
    }


def write_inventory(dest: Path, lab_inventory: Path, quick: bool = False) -> Path:
    """Write the demo inventory directory at dest (replacing an older one)."""
    if dest.exists():
        shutil.rmtree(dest)
    for rel, text in inventory_files(lab_inventory.read_text(), quick).items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return dest


# --- reading what the CLI printed ---------------------------------------------------------


def changed_tasks(summary_text: str) -> list[tuple[str, str]]:
    """(host, task) of every `changed: HOST: TASK` line of a plain run summary."""
    out = []
    for line in summary_text.splitlines():
        if line.startswith("changed: "):
            host, _, task = line[len("changed: ") :].partition(": ")
            out.append((host, task))
    return out


def drift_caught(verify_text: str) -> bool:
    """True when the verify output fails the power-limit check on the drifted GPU, with
    its expected/found/fix lines."""
    lines = verify_text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"FAIL {DRIFT_RIG} ") and "power limit" in line:
            block = "\n".join(lines[i : i + 4])
            # found: GPU 1 (0000:21:00.0): 300.0 W, want 270 W (rig_power_limit_w)
            bus = re.escape(DRIFT_BUS)
            want = re.compile(rf"GPU {DRIFT_GPU} \((0000)?{bus}\): {DRIFT_WATTS}(\.0+)? W, want {POWER_W} W")
            return bool(want.search(block)) and "expected:" in block and "fix:" in block
    return False


def fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# --- the demo ------------------------------------------------------------------------------


@dataclass
class Demo:
    name: str = DEFAULT_NAME
    quick: bool = False
    fresh: bool = False
    down: bool = False
    out: object = field(default=sys.stdout)
    started: float = field(default_factory=time.monotonic)
    timings: list = field(default_factory=list)

    def __post_init__(self):
        exe = Path(sys.executable).parent / "rigctl"
        self.rigctl = [str(exe)] if exe.exists() else [sys.executable, "-m", "rigctl"]

    # output
    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def clock(self) -> str:
        return fmt_duration(time.monotonic() - self.started)

    def cmd(self, *args: str, expect: int = 0, capture: bool = False) -> tuple[int, str]:
        """Run `rigctl ARGS`, showing the command; its stderr (progress) goes straight to
        the terminal. capture: stdout is also collected (and still shown)."""
        argv = [*self.rigctl, *args]
        self.say(f"$ rigctl {shlex.join(args)}")
        if not capture:
            rc = subprocess.run(argv).returncode
            text = ""
        else:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, bufsize=1)
            chunks = []
            for line in proc.stdout:
                chunks.append(line)
                print(line, end="", file=self.out, flush=True)
            rc = proc.wait()
            text = "".join(chunks)
        if rc != expect:
            raise DemoFailed(f"`rigctl {shlex.join(args)}` exited {rc} (expected {expect})")
        return rc, text

    def step(self, title: str, fn, note: str | None = None):
        n = len(self.timings) + 1
        self.say()
        self.say(f"=== [{self.clock()}] step {n}: {title}")
        if note:
            for line in note.splitlines():
                self.say(f"    {line}")
        t0 = time.monotonic()
        try:
            result = fn()
        finally:
            self.timings.append((title, time.monotonic() - t0))
        self.say(f"--- step {n} done in {fmt_duration(self.timings[-1][1])}")
        return result

    # the steps
    def lab_up(self):
        if self.fresh:
            self.cmd("lab", "down", "--name", self.name)
        self.cmd("lab", "up", "--name", self.name, "--profiles", ",".join(PROFILES), "--release", RELEASE)

    def write_inventory(self) -> Path:
        from rigctl.lab import inventory_path, lab_dir

        dest = write_inventory(lab_dir(self.name) / INVENTORY_DIR, inventory_path(self.name), self.quick)
        self.inv = str(dest)
        self.say(f"wrote {dest}/ (removed by `rigctl lab down --name {self.name}`):")
        for rel, text in inventory_files("", self.quick).items():
            if rel == "hosts.yml":
                self.say("  hosts.yml  (a copy of the lab inventory: addresses, lab key, known_hosts)")
                continue
            self.say(f"  {rel}")
            for line in text.splitlines():
                if line.strip() and line != "---":
                    self.say(f"    | {line}")
        return dest

    def headers(self):
        from rigctl.lab import ssh_argv

        script = (
            "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -qq; "
            f"apt-get install -y -qq --no-install-recommends {HEADERS_PACKAGE} >/dev/null; "
            f"dpkg-query -W -f '${{Version}}' {HEADERS_PACKAGE}"
        )
        procs = {}
        for rig in RIGS:
            argv = ssh_argv(self.name, rig, ["sudo", "sh", "-c", shlex.quote(script)])
            self.say(f"$ rigctl lab ssh --name {self.name} {rig} -- sudo apt-get install {HEADERS_PACKAGE}")
            procs[rig] = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        results = {}

        def wait(rig, proc):
            text = proc.stdout.read()
            results[rig] = (proc.wait(), text)

        threads = [threading.Thread(target=wait, args=item, daemon=True) for item in procs.items()]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        while True:
            for t in threads:
                t.join(timeout=15 / len(threads))
            busy = [r for r, p in procs.items() if p.poll() is None]
            if not busy:
                break
            self.say(f"    still installing on {', '.join(busy)} ({fmt_duration(time.monotonic() - t0)})")
        for t in threads:
            t.join()
        for rig in RIGS:
            rc, text = results[rig]
            if rc != 0:
                raise DemoFailed(f"installing {HEADERS_PACKAGE} on {rig} failed (exit {rc}):\n{text.strip()}")
            self.say(f"    {rig}: {HEADERS_PACKAGE} {text.strip().splitlines()[-1]}")

    def provision(self, capture: bool = False) -> str:
        return self.cmd("provision", "fleet", "-i", self.inv, capture=capture)[1]

    def verify_green(self):
        self.cmd("verify", "-i", self.inv)

    def drift(self):
        from rigctl.lab import ssh_argv

        argv = ssh_argv(
            self.name, DRIFT_RIG, ["sudo", "nvidia-smi", "-i", str(DRIFT_GPU), "-pl", str(DRIFT_WATTS)]
        )
        self.say(
            f"$ rigctl lab ssh --name {self.name} {DRIFT_RIG} -- "
            f"sudo nvidia-smi -i {DRIFT_GPU} -pl {DRIFT_WATTS}"
        )
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout.strip().splitlines():
            self.say(f"    {line}")
        if proc.returncode != 0:
            raise DemoFailed(f"nvidia-smi -pl on {DRIFT_RIG} failed (exit {proc.returncode})")

    def verify_drift(self):
        _rc, text = self.cmd("verify", "-i", self.inv, expect=1, capture=True)
        if not drift_caught(text):
            raise DemoFailed(
                f"verify failed, but not with the power-limit check naming GPU {DRIFT_GPU} ({DRIFT_BUS}) "
                f"of {DRIFT_RIG} at {DRIFT_WATTS} W"
            )
        self.say(f"==> as expected: verify exits 1 and names GPU {DRIFT_GPU} ({DRIFT_BUS}) of {DRIFT_RIG}")

    def repair(self):
        text = self.provision(capture=True)
        changes = changed_tasks(text)
        others = [(h, t) for h, t in changes if h != DRIFT_RIG]
        if not changes:
            raise DemoFailed(f"the re-provision changed nothing: the drift on {DRIFT_RIG} was not repaired")
        if others:
            raise DemoFailed(
                "the re-provision changed more than the drift: " + "; ".join(f"{h}: {t}" for h, t in others)
            )
        self.say(f"==> the re-provision changed only {DRIFT_RIG}: " + "; ".join(t for _h, t in changes))

    def run(self) -> int:
        long_note = (
            "Both rigs in one run (Ansible forks). Each builds NVIDIA's open kernel modules\n"
            f"{DRIVER_VERSION} with DKMS for Debian's kernel: on 2 CPU cores that takes several\n"
            "minutes; the progress lines show the build still running with its elapsed time."
        )
        try:
            self.say(
                f"rigctl lab demo{' (--quick: driver unmanaged)' if self.quick else ''}: two simulated rigs "
                f"({', '.join(f'{r} {p}' for r, p in zip(RIGS, PROFILES, strict=True))}), lab {self.name!r}"
            )
            self.step(
                f"bring up the lab ({RELEASE_NAME} systemd containers, SSH on 127.0.0.1)",
                self.lab_up,
                "The first run builds the lab image (one to two minutes); later runs reuse it.",
            )
            self.step("write the demo inventory", self.write_inventory)
            self.step(
                "check the inventory (contacts no host)",
                lambda: self.cmd("inventory", "check", "-i", self.inv),
            )
            if not self.quick:
                self.step(
                    f"give both rigs Debian's kernel headers ({HEADERS_PACKAGE})",
                    self.headers,
                    "A lab rig is a container running this machine's kernel; like a fresh Debian\n"
                    "install it gets the headers of Debian's kernel, which the driver builds for.",
                )
            self.step(
                "provision both rigs",
                self.provision,
                long_note
                if not self.quick
                else "Both rigs in one run (Ansible forks); driver unmanaged (--quick).",
            )
            self.step("facts (read only)", lambda: self.cmd("facts", "-i", self.inv))
            self.step("verify: every check against the inventory", self.verify_green)
            self.step(
                f"drift by hand: GPU {DRIFT_GPU} of {DRIFT_RIG} to {DRIFT_WATTS} W "
                f"(the inventory says {POWER_W} W)",
                self.drift,
            )
            self.step("verify catches the drift (exit 1 expected)", self.verify_drift)
            self.step("re-provision: repairs exactly the drift", self.repair)
            self.step("verify: green again", self.verify_green)
            self.report()
        except DemoFailed as exc:
            self.say()
            self.say(f"demo FAILED at step {len(self.timings)} after {self.clock()}: {exc}")
            return 1
        finally:
            if self.down:
                self.cmd_quiet_down()
        return 0

    def report(self) -> None:
        self.say()
        self.say(f"demo finished in {self.clock()}:")
        width = max(len(t) for t, _ in self.timings)
        for title, secs in self.timings:
            self.say(f"  {title.ljust(width)}  {fmt_duration(secs):>6}")
        self.say()
        if self.down:
            self.say(f"Removing the lab (--down): `rigctl lab down --name {self.name}`.")
        else:
            self.say(
                f"The lab is still up: `rigctl lab ssh --name {self.name} lab-rig-1` logs in, "
                f"`rigctl verify -i {self.inv}` checks again, "
                f"`rigctl lab down --name {self.name}` removes it."
            )

    def cmd_quiet_down(self):
        subprocess.run([*self.rigctl, "lab", "down", "--name", self.name], stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lab-demo", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="leave the driver unmanaged: no kernel headers, no DKMS build"
    )
    ap.add_argument(
        "--name", default=os.environ.get("RIGCTL_DEMO_LAB", DEFAULT_NAME), help="lab name (default demo)"
    )
    ap.add_argument(
        "--fresh", action="store_true", help="remove the demo lab first (a re-run otherwise reuses it)"
    )
    ap.add_argument("--down", action="store_true", help="remove the demo lab at the end")
    args = ap.parse_args(argv)
    return Demo(name=args.name, quick=args.quick, fresh=args.fresh, down=args.down).run()


if __name__ == "__main__":
    sys.exit(main())
