"""The differential test of `rigctl inventory check` against Ansible's own reading of
inventories: every malformed inventory of tests/fixtures/bad_inventories/ goes through
`ansible-inventory --list` and through `rigctl inventory check`.

Each case says in its first lines what is wrong, which line rigctl must name (``# Line: N``,
``# Line: group_vars/rigs.yml:N`` for a case that is a directory, or ``none`` for a file that
is wrong as a whole) and what Ansible does with it (``# Ansible: rejects|warns|accepts``):

- ``rejects``: Ansible's YAML inventory plugin refuses the file. ansible-inventory runs with
  rigctl's own settings (`rigctl.runner.ansible_env()`: the project's ansible.cfg) plus
  ``ANSIBLE_INVENTORY_ENABLED=yaml`` and ``ANSIBLE_INVENTORY_UNPARSED_FAILED=True``, so the
  refusal is an exit status; with rigctl's settings alone it is a warning and a run on no
  hosts.
- ``warns``: Ansible reads the inventory, prints a warning and skips or renames something.
- ``accepts``: Ansible reads it without a word; the run fails at the first connection (a
  port that is a word, a user that is a number, ``ansible_become: sudo``) or runs on the
  wrong hosts (``hosts: rig-a rig-b`` is one host).

Whatever Ansible does, rigctl refuses every case: exit 2, an error naming file:line with a
fix, no traceback, and nothing contacted (ssh, scp, sftp and the ansible programs are traps
on PATH; no run directory is created). Every process runs with a temporary HOME, on a copy
of the corpus, with proxies pointing at a closed local port.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from rigctl import inventory as inv_mod
from rigctl import runner

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fixtures" / "bad_inventories"
ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"
TRAPPED = ("ssh", "scp", "sftp", "sshpass", "ansible", "ansible-playbook", "ansible-inventory",
           "ansible-runner")
VERDICTS = ("rejects", "warns", "accepts")


@dataclass(frozen=True)
class Case:
    name: str
    source: str  # what -i gets, relative to the corpus: a file or a directory
    header: str  # the file with the "# Line:" / "# Ansible:" lines
    where: str  # the file rigctl must name, relative to the corpus
    line: int | None  # the line it must name (None: the file as a whole)
    ansible: str

    def __str__(self) -> str:
        return self.name


def _cases() -> list[Case]:
    out = []
    for entry in sorted(CORPUS.iterdir()):
        if entry.is_dir():
            header = entry / "hosts.yml"
        elif entry.suffix == ".yml":
            header = entry
        else:
            continue
        text = header.read_text()
        line = re.search(r"^# Line: (.+)$", text, re.M)
        verdict = re.search(r"^# Ansible: (\w+)", text, re.M)
        assert line and verdict, f"{header}: needs '# Line:' and '# Ansible:' lines"
        spec = line.group(1).strip()
        where, number = header.relative_to(CORPUS).as_posix(), None
        m = re.match(r"^(?:(\S+):)?(\d+)$", spec)
        if m:
            if m.group(1):
                where = f"{entry.name}/{m.group(1)}"
            number = int(m.group(2))
        else:
            assert spec.startswith("none"), f"{header}: bad '# Line: {spec}'"
        out.append(Case(entry.stem if entry.is_file() else entry.name,
                        entry.name, header.relative_to(CORPUS).as_posix(), where, number,
                        verdict.group(1)))
    return out


CASES = _cases()


@dataclass
class Outcome:
    ansible_rc: int
    ansible_err: str
    rigctl_rc: int
    rigctl_out: str


# Each tool runs every case through its console script's own entry point in a fork of one
# process that imported it once: every case is a run of its own, without paying the start-up
# (Ansible's imports and plugin routing are ~0.35 s of CPU a process, its run ~0.04 s).
_EACH_IN_A_FORK = r"""
import json, os, sys, traceback, warnings
tool, cwd, logs, args = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
if tool == "ansible-inventory":
    from ansible.cli.inventory import main
    from ansible.plugins.loader import init_plugin_loader, inventory_loader
    warnings.filterwarnings("ignore", message="AnsibleCollectionFinder has already been configured")
    init_plugin_loader()
    inventory_loader.get("yaml")
    argv = lambda src: ["ansible-inventory", "--list", "-i", src]
    out_fd = os.open(os.devnull, os.O_WRONLY)
else:
    from rigctl.cli import main
    import rigctl.inventory.loader, rigctl.inventory.validate
    argv = lambda src: ["inventory", "check", "-i", src]
    out_fd = None
codes = []
for i, src in enumerate(args):
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            os.chdir(cwd)
            log = os.open(os.path.join(logs, f"{i}.log"), os.O_WRONLY | os.O_CREAT, 0o600)
            os.dup2(log if out_fd is None else out_fd, 1)
            os.dup2(log, 2)
            main(argv(src))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
print(json.dumps(codes))
"""


def _each(tool: str, cwd: Path, logs: Path, args: list[str], env: dict) -> subprocess.Popen:
    logs.mkdir()
    return subprocess.Popen([sys.executable, "-c", _EACH_IN_A_FORK, tool, str(cwd), str(logs),
                             *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _results(proc: subprocess.Popen, logs: Path) -> list[tuple[int, str]]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return [(rc, (logs / f"{i}.log").read_text()) for i, rc in enumerate(json.loads(out))]


def _trap_bin(base: Path) -> Path:
    trap = base / "trap-bin"
    trap.mkdir()
    for name in TRAPPED:
        p = trap / name
        p.write_text(f'#!/bin/sh\necho "{name} $*" >> "{base}/contacted"\nexit 99\n')
        p.chmod(0o755)
    return trap


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Both tools over every case, on a copy of the corpus:
    (copy dir, temp base, {case name: Outcome})."""
    if not ANSIBLE_INVENTORY.exists():
        pytest.skip("ansible-inventory is not installed next to this Python")
    base = tmp_path_factory.mktemp("corpus")
    work = base / "bad_inventories"
    shutil.copytree(CORPUS, work)
    home = base / "home"
    home.mkdir()
    trap = _trap_bin(base)
    closed = "http://127.0.0.1:9"
    common = {"HOME": str(home), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "TMPDIR": str(base),
              "http_proxy": closed, "https_proxy": closed, "HTTP_PROXY": closed,
              "HTTPS_PROXY": closed, "no_proxy": ""}
    ansible = dict(common, **runner.ansible_env())
    ansible.update(ANSIBLE_HOME=str(home / ".ansible"),
                   ANSIBLE_LOCAL_TEMP=str(home / ".ansible" / "tmp"),
                   ANSIBLE_INVENTORY_ENABLED="yaml", ANSIBLE_INVENTORY_UNPARSED_FAILED="True",
                   ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="True")
    rigctl = dict(common, PATH=f"{trap}{os.pathsep}{os.environ.get('PATH', '')}",
                  PYTHONPATH=str(ROOT), RIGCTL_HOME=str(base / "state"))
    ansible_run = _each("ansible-inventory", work, base / "ansible-logs",
                        [c.source for c in CASES], ansible)
    rigctl_run = _each("rigctl", base, base / "rigctl-logs",
                       [str(work / c.source) for c in CASES], rigctl)
    outcomes = {}
    for case, (arc, aerr), (rrc, rout) in zip(CASES, _results(ansible_run, base / "ansible-logs"),
                                              _results(rigctl_run, base / "rigctl-logs"), strict=True):
        outcomes[case.name] = Outcome(arc, aerr, rrc, rout)
    return work, base, outcomes


def _verdict(o: Outcome) -> str:
    if o.ansible_rc != 0:
        return "rejects"
    return "warns" if "[WARNING]" in o.ansible_err else "accepts"


def test_corpus_size_and_what_ansible_does(corpus):
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)
    assert {c.ansible for c in CASES} <= set(VERDICTS)
    counts = {v: sum(c.ansible == v for c in CASES) for v in VERDICTS}
    assert all(counts.values()), counts  # refused, warned about, and taken silently


@pytest.mark.parametrize("case", CASES, ids=str)
def test_ansible_does_what_the_case_says(corpus, case):
    _, _, outcomes = corpus
    o = outcomes[case.name]
    assert _verdict(o) == case.ansible, o.ansible_err[-2000:]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_rigctl_refuses_naming_the_line_and_the_fix(corpus, case):
    work, _, outcomes = corpus
    o = outcomes[case.name]
    assert o.rigctl_rc == 2, o.rigctl_out
    assert "Traceback" not in o.rigctl_out
    where = str(work / case.where)
    lines = o.rigctl_out.splitlines()
    if case.line is None:
        named = [ln for ln in lines if ln.startswith(f"{where}:")]
    else:
        named = [ln for ln in lines if ln.startswith(f"{where}:{case.line}:")]
    assert named, f"no error at {case.where}:{case.line}:\n{o.rigctl_out}"
    # the same problem, structured: an error with a fix
    problems = inv_mod.check(inv_mod.load([str(work / case.source)], strict=False))
    errors = [p for p in problems if p.severity == "error" and p.file == where
              and (case.line is None or p.line == case.line)]
    assert errors, problems
    assert all(p.fix and p.fix.strip() for p in errors), errors


def test_nothing_was_contacted(corpus):
    _, base, outcomes = corpus
    assert len(outcomes) == len(CASES)
    assert not (base / "contacted").exists(), (base / "contacted").read_text()
    assert not (base / "state" / "runs").exists()
