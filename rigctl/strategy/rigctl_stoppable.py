"""Ansible strategy plugin ``rigctl_stoppable``: the linear strategy, stoppable between tasks.

rigctl's CLI runs its playbooks with this strategy (``ANSIBLE_STRATEGY``) and names a stop
file in ``RIGCTL_STOP_FILE`` (see rigctl.runner.Interrupt). Ctrl-C reaches rigctl, not
ansible-playbook (ansible-runner runs it in a pty of its own); on the first one rigctl
creates the stop file. From then on no new task starts: the task running on the rigs
finishes (the linear strategy waits for every rig's result before it moves on, so this
hook runs only when no task is in flight), every later task of the play is skipped, and
the handlers the finished tasks notified still run, so no change is left half applied.
The first task skipped is written to ``<stop file>.json``. Without the stop file it is
the linear strategy exactly (``--step`` included).

Loaded by ansible-playbook from ``ANSIBLE_STRATEGY_PLUGINS``, never imported by rigctl.
"""

from __future__ import annotations

import json
import os

from ansible.playbook.handler import Handler
from ansible.plugins.strategy.linear import StrategyModule as LinearStrategy
from ansible.utils.display import Display

STOP_FILE_ENV = "RIGCTL_STOP_FILE"

display = Display()


class StrategyModule(LinearStrategy):
    def __init__(self, tqm):
        super().__init__(tqm)
        self._rigctl_stop_file = os.environ.get(STOP_FILE_ENV) or None
        self._rigctl_user_step = bool(self._step)
        self._rigctl_skipped = 0
        # The linear strategy asks _take_step before it queues a task for the first rig.
        self._step = True

    def _rigctl_stop_requested(self) -> bool:
        return bool(self._rigctl_stop_file) and os.path.exists(self._rigctl_stop_file)

    def _take_step(self, task, host=None):
        if self._rigctl_stop_requested() and not isinstance(task, Handler):
            if not self._rigctl_skipped:
                self._rigctl_record(task)
            self._rigctl_skipped += 1
            return False
        if not self._rigctl_user_step:
            return True
        ret = super()._take_step(task, host)
        if not self._step:  # the user answered "continue": no more questions
            self._rigctl_user_step = False
            self._step = True
        return ret

    def _rigctl_record(self, task) -> None:
        role = task._role.get_name(include_role_fqcn=False) if task._role else ""
        name = task.name or task.action
        display.warning(f"rigctl: stop requested (Ctrl-C): no new task starts; the rest of the "
                        f"play is skipped from {name!r}{f' (role {role})' if role else ''} on; "
                        "handlers already notified still run")
        path = f"{self._rigctl_stop_file}.json"
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump({"task": name, "role": role}, f)
        os.replace(tmp, path)
