# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
name: run_log
type: aggregate
short_description: Write each pipeline run's task log to C(state/runs/<RUN_ID>/tasks.log)
version_added: 0.1.0
description:
  - Once M(eminfra.pipeline.pipeline_run) has started a run, writes one JSON line per task result to
    C(tasks.log) in the run's directory, beside the run's C(latest.env) copy, C(steps.json) and C(summary.txt).
    Results from before the run started are written when it starts.
  - Each line holds the time, the step (the task's step tag), the task, the host, the status (ok, changed,
    failed, skipped, unreachable), the duration and, for failures only, the message, the failed check and
    the remediation. Nothing else of a result is written, so task output that a module returns is never
    copied; results of C(no_log) tasks are censored by Ansible before any callback sees them.
  - Enable it with C(callbacks_enabled = eminfra.pipeline.run_log) in C(ansible.cfg) or
    E(ANSIBLE_CALLBACKS_ENABLED).
author:
  - EM-Infra maintainers (@eminfra)
requirements:
  - enabled in the callbacks_enabled setting
'''

import datetime
import json
import os
import time

from ansible.plugins.callback import CallbackBase

STEPS = ('proxmox_access', 'templates', 'terraform_apply', 'ansible_inventory', 'ansible_base', 'ansible_docker')
MSG_LIMIT = 2000


class CallbackModule(CallbackBase):
    """Per-run task log under the run's directory."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'eminfra.pipeline.run_log'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None) -> None:
        super().__init__(display=display)
        self._pending: list[dict] = []
        self._path: str | None = None
        self._started: dict[str, float] = {}

    # -------------------------------------------------------------- writing
    def _write(self, entries: list[dict]) -> None:
        if not self._path or not entries:
            return
        try:
            with open(self._path, 'a', encoding='utf-8') as handle:
                for entry in entries:
                    handle.write(json.dumps(entry, sort_keys=True) + '\n')
        except OSError as exc:
            self._display.warning(f'run_log: cannot write {self._path}: {exc.strerror or exc}')
            self._path = None

    def _record(self, result, status: str) -> None:
        task = result._task  # pylint: disable=protected-access
        data = result._result  # pylint: disable=protected-access
        if status == 'ok' and data.get('changed'):
            status = 'changed'
        started = self._started.get(task._uuid)  # pylint: disable=protected-access
        steps = [tag for tag in (task.tags or []) if tag in STEPS]
        entry = {
            'time': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
            'step': steps[0] if steps else '',
            'task': task.get_name(),
            'host': result._host.get_name(),  # pylint: disable=protected-access
            'status': status,
            'duration': round(time.monotonic() - started, 3) if started else None,
        }
        if status in ('failed', 'unreachable'):
            for key in ('msg', 'failed_check', 'remediation'):
                value = data.get(key)
                if value:
                    entry[key] = str(value)[:MSG_LIMIT]
        if (task.action or '').endswith('pipeline_run') and data.get('run_dir') and data.get('plan') is not None \
                and not self._path:
            self._path = os.path.join(data['run_dir'], 'tasks.log')
            self._write(self._pending + [entry])
            self._pending = []
            return
        if self._path:
            self._write([entry])
        else:
            self._pending.append(entry)

    # -------------------------------------------------------------- events
    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        self._started[task._uuid] = time.monotonic()  # pylint: disable=protected-access

    def v2_playbook_on_handler_task_start(self, task) -> None:
        self._started[task._uuid] = time.monotonic()  # pylint: disable=protected-access

    def v2_runner_on_ok(self, result) -> None:
        self._record(result, 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False) -> None:
        self._record(result, 'ignored' if ignore_errors else 'failed')

    def v2_runner_on_skipped(self, result) -> None:
        self._record(result, 'skipped')

    def v2_runner_on_unreachable(self, result) -> None:
        self._record(result, 'unreachable')
