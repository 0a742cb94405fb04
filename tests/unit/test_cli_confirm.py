"""`fleet update --confirm`'s question between batches (fleet_cmd.confirm_between_batches)
under the rollout's own SIGINT handler (fleet.update.Stop), in a child Python process with
a real stdin pipe: a yes goes on; Ctrl-C at the question (a real SIGINT) and EOF on stdin
are a no that stops the rollout, instead of a question that waits forever."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHILD = """\
import json
from rigctl.cli.fleet_cmd import confirm_between_batches
from rigctl.fleet.update import Stop
with Stop() as stop:
    answer = confirm_between_batches(stop)("continue with lab-rig-2?")
print(json.dumps({"answer": answer, "requested": stop.requested, "reason": stop.reason}))
"""


def _start():
    return subprocess.Popen([sys.executable, "-c", CHILD], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_prompt(proc, timeout=30) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while "[y/N]" not in seen:
        assert time.monotonic() < deadline, f"no question within {timeout} s: {seen!r}"
        ready, _, _ = select.select([proc.stderr], [], [], 0.5)
        if ready:
            seen += os.read(proc.stderr.fileno(), 4096).decode()
    return seen


def _finish(proc, stdin=None):
    out, err = proc.communicate(stdin, timeout=30)
    return json.loads(out), err


def test_yes_goes_on():
    proc = _start()
    _wait_for_prompt(proc)
    proc.stdin.write("y\n")
    proc.stdin.flush()
    data, _ = _finish(proc)
    assert data == {"answer": True, "requested": False, "reason": None}


def test_ctrl_c_at_the_question_is_a_no_that_stops():
    proc = _start()
    prompt = _wait_for_prompt(proc)
    assert "continue with lab-rig-2? [y/N]" in prompt
    proc.send_signal(signal.SIGINT)  # stdin stays open: only the Ctrl-C can end the question
    data, err = _finish(proc)
    assert proc.returncode == 0
    assert data == {"answer": False, "requested": True, "reason": "interrupted (Ctrl-C)"}
    assert "Ctrl-C at the question: not confirmed, the rollout stops here" in err


def test_eof_on_stdin_is_a_no():
    proc = _start()
    _wait_for_prompt(proc)
    data, err = _finish(proc, stdin="")  # communicate closes stdin: EOF
    assert data == {"answer": False, "requested": False, "reason": None}
    assert "no answer (stdin closed): not confirmed" in err
