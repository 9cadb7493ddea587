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
  - It also closes a run that ends in any other way than through the playbook's own C(finish) - a node
    UNREACHABLE outside block/rescue, Ctrl-C (SIGINT), SIGTERM, an error that stops the play - so that
    C(latest.env) never stays C(RUN_STATUS=running) - the step the run was in is recorded as failed
    (C(LAST_STEP_FAILED)) with a check (C(hosts_unreachable), C(run_interrupted) or C(run_incomplete)), the run's
    C(steps.json) and C(summary.txt) are written, the summary is printed and the run lock is released. On
    SIGINT and SIGTERM the run's processes (those carrying E(EMINFRA_RUN_ID), Terraform among them) are
    stopped first, waiting up to 30 seconds, so that the lock is released only when nothing of the run runs.
  - Enable it with C(callbacks_enabled = eminfra.pipeline.run_log) in C(ansible.cfg) or
    E(ANSIBLE_CALLBACKS_ENABLED).
author:
  - EM-Infra maintainers (@eminfra)
requirements:
  - enabled in the callbacks_enabled setting
'''

import atexit
import datetime
import json
import os
import signal
import time

from ansible.plugins.callback import CallbackBase

from ansible_collections.eminfra.pipeline.plugins.module_utils._state import STEPS

try:
    from ansible_collections.eminfra.pipeline.plugins.module_utils import _pipeline
    from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError
    from ansible_collections.eminfra.pipeline.plugins.module_utils._latest_env import LatestEnv
    from ansible_collections.eminfra.pipeline.plugins.module_utils._state import StateLayout
    HAS_PIPELINE = True
except ImportError:  # jsonschema missing: pipeline_run fails first and says so
    HAS_PIPELINE = False

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
        # the run, once pipeline_run has started it: what closing it needs
        self._run: dict = {}
        self._step = ''
        self._records: list = []
        self._unreachable: list[str] = []
        self._signal: str = ''
        self._controller = os.getpid()
        self._handlers: dict = {}
        self._play_step = ''

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
        if entry['step'] or self._play_step:
            self._step = entry['step'] or self._play_step
        records = (data.get('ansible_facts') or {}).get('eminfra_step_records')
        if isinstance(records, list):
            self._records = records
        if status == 'unreachable':
            self._unreachable.append(entry['host'])
        if (task.action or '').endswith('pipeline_run') and data.get('run_dir') and data.get('plan') is not None \
                and not self._path:
            self._start_run(data)
            self._path = os.path.join(data['run_dir'], 'tasks.log')
            self._write(self._pending + [entry])
            self._pending = []
            return
        if self._path:
            self._write([entry])
        else:
            self._pending.append(entry)

    # -------------------------------------------------------------- closing a run that did not finish
    def _start_run(self, data: dict) -> None:
        if not HAS_PIPELINE or not data.get('lock'):
            return  # check mode: no run was started
        self._run = {'run_id': data['run_id'], 'run_dir': data['run_dir'], 'plan': data['plan']}
        atexit.register(self._close_at_exit)
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._handlers[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        previous = self._handlers.get(signum)
        if os.getpid() == self._controller and self._run and not self._signal:
            self._signal = signal.Signals(signum).name
            if signum == signal.SIGTERM:
                # Ansible's own handler ends this process right away: close the run first.
                self._close('run_interrupted', f'the run received {self._signal}', stop=True)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def _close_at_exit(self) -> None:
        if os.getpid() != self._controller:
            return
        if self._signal:
            self._close('run_interrupted', f'the run received {self._signal}', stop=True)
        else:
            self._close('run_incomplete', 'the run stopped before it reached its end')

    def v2_playbook_on_stats(self, stats) -> None:
        if self._unreachable:
            self._close('hosts_unreachable', f'{", ".join(sorted(set(self._unreachable)))}: UNREACHABLE (no SSH '
                        'login); remediation: check that the node runs and accepts the key, then resume with '
                        'ansible-playbook playbooks/site.yml -e eminfra_resume=true')
        elif self._signal:
            self._close('run_interrupted', f'the run received {self._signal}', stop=True)
        else:
            self._close('run_incomplete', 'the run stopped before it reached its end')

    def _close(self, check: str, reason: str, stop: bool = False) -> None:
        """Record the run as failed at the step it was in, write its summary, release its lock."""
        if not self._run:
            return
        run, self._run = self._run, {}
        try:
            layout = StateLayout(os.path.dirname(os.path.dirname(run['run_dir'])))
            record = LatestEnv(layout)
            dummy, current = record.read()
            if current.get('RUN_ID') != run['run_id']:
                return
            if current.get('RUN_STATUS') == 'running':
                if stop:
                    stopped = _pipeline.stop_run_processes(run['run_id'], exclude={self._controller})
                    if stopped['alive']:
                        reason += f'; still running: {", ".join(str(pid) for pid in sorted(stopped["alive"]))}'
                step = self._step or _pipeline.interrupted_step(current, run['run_dir'])
                if current.get('LAST_STEP_FAILED') != step:
                    current = record.run(step=step, step_status='failed', failed_check=check)['values']
                current = record.run(run_status='failed')['values']
                failed = {'step': step, 'status': 'failed', 'failed_check': current.get('LAST_FAILED_CHECK') or check}
                steps = _pipeline.normalise_steps(run['plan'], [r for r in self._records if isinstance(r, dict)
                                                                and r.get('step') != step] + [failed])
                text = _pipeline.render_summary(run['run_id'], 'failed', current.get('DRY_RUN') == 'true', steps, current)
                _pipeline.write_summary(run['run_dir'], {
                    'run_id': run['run_id'], 'status': 'failed', 'dry_run': current.get('DRY_RUN') == 'true',
                    'plan': run['plan'], 'steps': steps, 'last_step_completed': current.get('LAST_STEP_COMPLETED', ''),
                    'last_step_failed': step, 'last_failed_check': failed['failed_check'], 'reason': reason}, text)
                self._display.display(f'{failed["failed_check"]}: run {run["run_id"]} ended at step {step}: {reason}')
                self._display.display(text.rstrip('\n'))
            _pipeline.RunLock(layout.lock).release(run['run_id'])
        except (OSError, CheckError) as exc:
            self._display.warning(f'run_log: could not close run {run["run_id"]}: {exc}')

    # -------------------------------------------------------------- events
    def v2_playbook_on_play_start(self, play) -> None:
        steps = [tag for tag in (play.tags or []) if tag in STEPS]
        self._play_step = steps[0] if steps else ''

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
