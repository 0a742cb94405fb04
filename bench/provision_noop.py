#!/usr/bin/env python3
"""Benchmark: a no-op `provision` re-run on 1 and on 8 lab rigs, against the Ansible floor.

The floor is `ansible -m ping` over the same hosts, same inventory, same ansible.cfg
(pipelining, ControlPersist): what any playbook costs at least. The figure that matters is
the ratio: how much more than touching each host once does an already-converged rig cost.

Usage: .venv/bin/python bench/provision_noop.py [--rigs 1,8] [--repeat 3] [--keep-lab]
Brings up its own lab ('bench'), which it removes at the end unless --keep-lab.
Traffic goes only to the lab rigs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from _common import BIN, sh, tool_env  # puts this checkout on sys.path

from rigctl.runner import run_playbook

LAB = "bench"


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rigs", default="1,8")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep-lab", action="store_true")
    args = ap.parse_args()
    sizes = [int(x) for x in args.rigs.split(",")]
    rigctl = str(BIN / "rigctl")
    sh(rigctl, "lab", "up", "--name", LAB, "--rigs", str(max(sizes)))
    inventory = sh(rigctl, "lab", "inventory", "--name", LAB).strip()
    env = tool_env()
    try:
        # Converge once (the first run may change things), then measure re-runs.
        first = run_playbook("provision.yml", [inventory], kind="bench")
        if not first.ok:
            print("first provision failed:", [f.as_dict() for f in first.failures], file=sys.stderr)
            return 1
        rows = []
        for n in sizes:
            limit = ",".join(f"lab-rig-{i}" for i in range(1, n + 1))

            def ping(limit=limit):
                sh(str(BIN / "ansible"), "-i", inventory, limit, "-m", "ping", "-o", env=env)

            def provision(limit=limit):
                result = run_playbook("provision.yml", [inventory], limit=limit, kind="bench")
                changed = sum(h.changed for h in result.hosts.values())
                if not result.ok or changed:
                    raise SystemExit(f"re-run not a no-op: ok={result.ok} changed={changed}")

            ping()  # warm the SSH master connections, like a fleet that was just touched
            floor = statistics.median(timed(ping, args.repeat))
            noop = statistics.median(timed(provision, args.repeat))
            rows.append((n, floor, noop, noop / floor))
        print(f"{'rigs':>4}  {'ansible ping (s)':>16}  {'provision no-op (s)':>19}  {'ratio':>6}")
        for n, floor, noop, ratio in rows:
            print(f"{n:>4}  {floor:>16.2f}  {noop:>19.2f}  {ratio:>6.2f}")
        print(f"(median of {args.repeat} runs each; {os.cpu_count()} CPU cores on the controller)")
    finally:
        if not args.keep_lab:
            sh(rigctl, "lab", "down", "--name", LAB)
    return 0


if __name__ == "__main__":
    sys.exit(main())
