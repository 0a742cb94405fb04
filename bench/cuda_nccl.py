#!/usr/bin/env python3
"""Benchmark: `rigctl provision host` with CUDA and NCCL on one lab rig, first run and
no-op re-run, against doing the same by hand.

One lab rig (Debian 12 container over SSH on 127.0.0.1, profile 4x3090-p2p) serving a
local signed NCCL repository on its own loopback (tests/fixtures/apt_mirror.py, from the
real libnccl.so of PyPI's nvidia-nccl-cu11 wheel; run scripts/test once or set
RIGCTL_TEST_NCCL_WHEEL). It measures:

- by hand: `apt-get install nvidia-cuda-toolkit libnccl2 libnccl-dev` and one nvcc compile
           of the probe, on a second, fresh rig (what people do without rigctl);
- rigctl:  the first `rigctl provision host` (facts, checks, toolkit from Debian non-free,
           NCCL from the signed mirror, environment, nccl.conf, probe compile);
- no-op:   the same command again (must report 0 changed).

and prints the ratios to the by-hand time. Usage: .venv/bin/python bench/cuda_nccl.py
[--keep-lab]. Brings up its own lab ('bench-cuda'), removed at the end unless --keep-lab.
Takes about 6 minutes on 2 cores (two toolkit installs of ~1.6 GB from the Debian mirror).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import yaml
from _common import BIN, ROOT, sh, tool_env  # puts this checkout on sys.path

from tests.fixtures import apt_mirror

LAB = "bench-cuda"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep-lab", action="store_true")
    args = ap.parse_args()
    rigctl = str(BIN / "rigctl")
    work = Path(tempfile.mkdtemp(prefix="rigctl-bench-cuda-"))
    debs = apt_mirror.build_nccl_debs(apt_mirror.find_nccl_wheel(ROOT))
    mirror = apt_mirror.build_mirror(work / "mirror" / "nccl", debs, "signed")
    sh(rigctl, "lab", "up", "--name", LAB, "--profiles", "4x3090-p2p,4x3090-p2p",
       "--mirror-dir", str(work / "mirror"))
    inventory = Path(sh(rigctl, "lab", "inventory", "--name", LAB).strip())
    env = tool_env()
    try:
        inv = yaml.safe_load(inventory.read_text())
        lab_vars = inv["all"]["children"]["rigs"]["children"]["lab"]["vars"]
        lab_vars.update({
            "rig_cuda_version": "11.8", "rig_cuda_source": "debian",
            "rig_nccl_version": "2.21.5", "rig_nccl_source": "mirror",
            "rig_nccl_mirror_url": "http://127.0.0.1:8600/nccl/",
            "rig_nccl_mirror_key_url": "http://127.0.0.1:8600/nccl/" + mirror["key_file"],
            "rig_nccl_mirror_key_fingerprint": mirror["fingerprint"],
        })
        bench_inv = work / "inventory.yml"
        bench_inv.write_text(yaml.safe_dump(inv))

        print("by hand on lab-rig-2: apt-get install the toolkit and NCCL, compile the probe ...", flush=True)
        key = f"http://127.0.0.1:8600/nccl/{mirror['key_file']}"
        src = ROOT / "roles" / "cuda" / "files" / "rigctl-probe.cu"
        sh(str(BIN / "ansible"), "-i", str(inventory), "lab-rig-2", "-b", "-m", "copy", "-a",
           f"src={src} dest=/root/rigctl-probe.cu", env=env)
        start = time.monotonic()
        sh(str(BIN / "ansible"), "-i", str(inventory), "lab-rig-2", "-b", "-m", "shell", "-a",
           "set -e; python3 -c \"import urllib.request; urllib.request.urlretrieve('" + key
           + "', '/etc/apt/keyrings/nccl.asc')\"; printf 'Types: deb\\nURIs: "
           "http://127.0.0.1:8600/nccl/\\nSuites: /\\nSigned-By: /etc/apt/keyrings/nccl.asc\\n' "
           "> /etc/apt/sources.list.d/nccl.sources; apt-get update -qq; "
           "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
           "nvidia-cuda-toolkit libnccl2 libnccl-dev >/dev/null; "
           "nvcc -O2 -ccbin /usr/lib/nvidia-cuda-toolkit/bin -gencode arch=compute_86,code=sm_86 "
           "-o /root/rigctl-probe /root/rigctl-probe.cu", env=env)
        by_hand = time.monotonic() - start

        print("rigctl provision host lab-rig-1 (first run) ...", flush=True)
        start = time.monotonic()
        first = subprocess.run([rigctl, "provision", "host", "lab-rig-1", "-i", str(bench_inv), "--json"],
                               capture_output=True, text=True, env=env)
        t_first = time.monotonic() - start
        if first.returncode != 0:
            raise SystemExit(f"first provision failed:\n{first.stdout[-3000:]}\n{first.stderr[-3000:]}")
        print("rigctl provision host lab-rig-1 (re-run) ...", flush=True)
        start = time.monotonic()
        again = subprocess.run([rigctl, "provision", "host", "lab-rig-1", "-i", str(bench_inv), "--json"],
                               capture_output=True, text=True, env=env)
        t_again = time.monotonic() - start
        result = json.loads(again.stdout)
        changed = sum(h.get("changed", 0) for h in result.get("hosts", {}).values()) \
            if isinstance(result.get("hosts"), dict) else result
        if again.returncode != 0 or changed:
            raise SystemExit(f"re-run not a no-op: rc={again.returncode} changed={changed}")
        print()
        print(f"{'what':<52} {'seconds':>8} {'/ by hand':>10}")
        print(f"{'by hand: apt-get install + one nvcc compile':<52} {by_hand:>8.1f} {1.0:>10.2f}")
        print(f"{'rigctl provision host, first run':<52} {t_first:>8.1f} {t_first / by_hand:>10.2f}")
        print(f"{'rigctl provision host, re-run (0 changed)':<52} {t_again:>8.1f} {t_again / by_hand:>10.2f}")
    finally:
        if not args.keep_lab:
            subprocess.run([rigctl, "lab", "down", "--name", LAB], capture_output=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
