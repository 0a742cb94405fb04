"""Ctrl-C during a playbook run (rigctl.runner.Interrupt and the strategy plugin
rigctl_stoppable), on a real ansible-playbook run through ansible-runner: a two-host play
on the local connection whose files live in the test's temporary directory (HOME too, so
Ansible's own temporary and control directories stay there). SIGINT is a real signal to
this process, sent once the slow first task has started on both hosts."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

from rigctl.progress import host_result, interrupt_lines
from rigctl.runner import Interrupt, run_playbook

PLAY = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: Slow first task
      ansible.builtin.shell: >-
        touch {{ d }}/started-{{ inventory_hostname }}; sleep 4;
        echo done > {{ d }}/one-{{ inventory_hostname }}
      notify: Note it
    - name: Second task
      ansible.builtin.copy:
        dest: "{{ d }}/two-{{ inventory_hostname }}"
        content: "two\\n"
  handlers:
    - name: Note it
      ansible.builtin.copy:
        dest: "{{ d }}/handler-{{ inventory_hostname }}"
        content: "ran\\n"
"""
HOSTS = ("h1", "h2")


@pytest.fixture
def play(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RIGCTL_HOME", str(tmp_path / "state"))
    d = tmp_path / "out"
    d.mkdir()
    (tmp_path / "play.yml").write_text(PLAY)
    hosts = "".join(f"    {h}: {{ansible_connection: local, ansible_python_interpreter: {sys.executable}}}\n"
                    for h in HOSTS)
    (tmp_path / "inv.yml").write_text("all:\n  hosts:\n" + hosts)

    def run(ctrl_c: int):
        said: list[str] = []

        def poke():
            deadline = time.monotonic() + 60
            while not all((d / f"started-{h}").exists() for h in HOSTS):
                if time.monotonic() > deadline:
                    return
                time.sleep(0.05)
            for _ in range(ctrl_c):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.3)

        thread = threading.Thread(target=poke, daemon=True)
        with Interrupt(say=said.append) as interrupt:
            thread.start()
            result = run_playbook(str(tmp_path / "play.yml"), [str(tmp_path / "inv.yml")],
                                  limit=",".join(HOSTS), extravars={"d": str(d)},
                                  run_root=tmp_path / "runs", interrupt=interrupt)
            thread.join(timeout=10)
        return result, said

    return d, run


def test_first_ctrl_c_lets_the_running_task_finish_then_the_play_stops(play):
    d, run = play
    result, said = run(ctrl_c=1)
    assert said and said[0].startswith("Ctrl-C: the task running on the rigs finishes")
    for h in HOSTS:
        assert (d / f"one-{h}").read_text() == "done\n"  # the task in flight finished
        assert (d / f"handler-{h}").read_text() == "ran\n"  # its notified handler ran
        assert not (d / f"two-{h}").exists()  # the next task never started
    assert result.status == "successful"
    assert result.interrupted["how"] == "stopped"
    assert result.interrupted["stopped_before"] == {"task": "Second task", "role": ""}
    assert result.interrupted["in_flight"] is None
    assert not result.ok
    assert [host_result(result, h) for h in HOSTS] == ["stopped", "stopped"]
    text = "\n".join(interrupt_lines(result, again="rigctl provision fleet"))
    assert "no task was cut" in text and "not run: 'Second task' and every task after it" in text
    assert "h1: left as: partly provisioned: every task that started finished" in text
    assert text.endswith("to finish: rigctl provision fleet")


def test_second_ctrl_c_cancels_and_names_the_task_cut(play):
    d, run = play
    started = time.monotonic()
    result, said = run(ctrl_c=2)
    assert time.monotonic() - started < 30
    assert said[1].startswith("Ctrl-C again: cancelling the run now")
    for h in HOSTS:
        assert not (d / f"one-{h}").exists()  # killed in the middle of its sleep
        assert not (d / f"two-{h}").exists()
    assert result.status == "canceled"
    info = result.interrupted
    assert info["how"] == "cancelled"
    assert info["in_flight"] == {"task": "Slow first task", "role": "", "hosts": list(HOSTS)}
    assert not result.ok and result.as_dict()["interrupted"] == info
    text = "\n".join(interrupt_lines(result))
    assert "cancelled (Ctrl-C twice): ansible-playbook was killed during 'Slow first task'" in text
    assert "h2: left as: unknown: 'Slow first task' was cut on it and may be half done" in text


def test_without_ctrl_c_the_play_runs_to_its_end(play):
    d, run = play
    result, said = run(ctrl_c=0)
    assert said == [] and result.interrupted is None and result.ok
    for h in HOSTS:
        assert (d / f"two-{h}").read_text() == "two\n"


def test_third_ctrl_c_raises_keyboard_interrupt(tmp_path):
    said: list[str] = []
    interrupt = Interrupt(say=said.append)
    stop = interrupt.stop_file(tmp_path)
    assert not stop.exists() and not interrupt.cancelled()
    interrupt.request()
    assert stop.exists() and not interrupt.cancelled()
    (tmp_path / "late").mkdir()
    late = interrupt.stop_file(tmp_path / "late")  # a run that starts after the Ctrl-C
    assert late.exists()  # stops before its first task
    interrupt.request()
    assert interrupt.cancelled()
    with pytest.raises(KeyboardInterrupt):
        interrupt.request()
    assert len(said) == 2
