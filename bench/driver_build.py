#!/usr/bin/env python3
"""Benchmark: the nvidia_driver role's build of a patched P2P source against a plain
`make modules` of the same tree, and the role's no-op re-run.

On one lab rig (Debian 12 container over SSH on 127.0.0.1) with the Debian kernel headers
and a local stand-in for a P2P fork (tests/fixtures/fake_p2p_fork.sh, built from Debian's
nvidia-open-kernel-source 535.261.03), it measures:

- plain:  `make modules -j$(nproc) SYSSRC=/lib/modules/K/source SYSOUT=/lib/modules/K/build`
          in a fresh checkout of the pinned commit (what people do by hand);
- role:   the first `provision` with flavor p2p (fetch and checks, DKMS add/build/install,
          stock module removal, shadowing check, provenance; the userspace packages are
          installed beforehand so this is the module's cost);
- no-op:  the same `provision` again (nothing changes, nothing is rebuilt).

and prints the ratios role/plain and no-op/plain.

Usage: .venv/bin/python bench/driver_build.py [--keep-lab]
Brings up its own lab ('bench-driver'), removed at the end unless --keep-lab. Traffic goes
only to the lab rig on 127.0.0.1 and, from the rig, to its configured Debian mirror.
Takes about 8 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import BIN, ROOT, sh, tool_env  # puts this checkout on sys.path

from rigctl.runner import run_playbook

LAB = "bench-driver"
VERSION = "535.261.03"
FORK = "/srv/forks/open-gpu-kernel-modules.git"
USERSPACE = ["nvidia-smi", "libcuda1", "libnvidia-ml1", "libnvidia-cfg1", "nvidia-alternative",
             "firmware-nvidia-gsp"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep-lab", action="store_true")
    args = ap.parse_args()
    rigctl = str(BIN / "rigctl")
    sh(rigctl, "lab", "up", "--name", LAB, "--rigs", "1")
    inventory = sh(rigctl, "lab", "inventory", "--name", LAB).strip()
    env = tool_env()
    workdir = Path(tempfile.mkdtemp(prefix="rigctl-bench-driver-"))

    def on_rig(command: str) -> str:
        return sh(str(BIN / "ansible"), "-i", inventory, "lab-rig-1", "-b", "-m", "shell",
                  "-a", command, env=env)

    try:
        print("preparing the rig: kernel headers, userspace, stand-in fork ...", flush=True)
        pins = " ".join(f"{p}={VERSION}-*" for p in USERSPACE)
        on_rig("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
               f"--no-install-recommends linux-headers-amd64 git xz-utils make gcc {pins}")
        sh(str(BIN / "ansible"), "-i", inventory, "lab-rig-1", "-b", "-m", "script", "-a",
           f"{ROOT}/tests/fixtures/fake_p2p_fork.sh {VERSION} {FORK}", env=env)
        commit = on_rig(f"git --git-dir={FORK} rev-parse {VERSION}-p2p").split()[-1]
        kernel = on_rig("ls /lib/modules | head -1").split()[-1]

        print(f"plain make modules for {kernel} ...", flush=True)
        out = on_rig(
            f"rm -rf /tmp/plain && git clone -q {FORK} /tmp/plain && cd /tmp/plain && "
            f"git checkout -q {commit} && s=$(date +%s%N) && "
            f"make -s modules -j$(nproc) SYSSRC=/lib/modules/{kernel}/source "
            f"SYSOUT=/lib/modules/{kernel}/build >/tmp/plain.log 2>&1 && "
            "e=$(date +%s%N) && echo PLAIN $(( (e - s) / 1000000 )) && ls kernel-open/nvidia.ko")
        plain = int(next(ln.split()[1] for ln in out.splitlines() if ln.startswith("PLAIN"))) / 1000

        inv_dir = workdir / "inv"
        (inv_dir / "group_vars").mkdir(parents=True)
        shutil.copy(inventory, inv_dir / "inventory.yml")
        (inv_dir / "group_vars" / "rigs.yml").write_text(
            f'rig_driver_flavor: p2p\nrig_driver_version: "{VERSION}"\nrig_driver_source: debian\n'
            f"rig_p2p_source:\n  url: file://{FORK}\n  branch: {VERSION}-p2p\n  commit: {commit}\n")

        print("role: first provision (builds the patched module) ...", flush=True)
        start = time.perf_counter()
        first = run_playbook("provision.yml", [str(inv_dir)], kind="bench")
        role = time.perf_counter() - start
        if not first.ok:
            print("first provision failed:", [f.as_dict() for f in first.failures], file=sys.stderr)
            return 1
        print("role: no-op re-run ...", flush=True)
        start = time.perf_counter()
        again = run_playbook("provision.yml", [str(inv_dir)], kind="bench")
        noop = time.perf_counter() - start
        changed = sum(h.changed for h in again.hosts.values())
        if not again.ok or changed:
            raise SystemExit(f"re-run not a no-op: ok={again.ok} changed={changed}")

        print(f"{'what':<46} {'seconds':>8} {'/ plain':>8}")
        print(f"{'plain make modules (same tree, same kernel)':<46} {plain:>8.1f} {1:>8.2f}")
        print(f"{'role: first provision, flavor p2p':<46} {role:>8.1f} {role / plain:>8.2f}")
        print(f"{'role: no-op re-run':<46} {noop:>8.1f} {noop / plain:>8.3f}")
        print(f"({os.cpu_count()} CPU cores on the controller; the rig shares them)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if not args.keep_lab:
            sh(rigctl, "lab", "down", "--name", LAB)
    return 0


if __name__ == "__main__":
    sys.exit(main())
