# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Test-only callback: appends every task result as one JSON line to $EMINFRA_TEST_RESULTS.

ansible-core ships no JSON stdout callback; this one runs beside the default output, so tests
read structured results and people still read the usual play output.
"""

from __future__ import annotations

DOCUMENTATION = r'''
name: eminfra_results
type: notification
short_description: Write each task result as a JSON line to a file (tests only)
description:
  - Appends C({"task", "host", "status", "result"}) per task result to the file named by the
    E(EMINFRA_TEST_RESULTS) environment variable.
'''

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'notification'
    CALLBACK_NAME = 'eminfra_results'
    CALLBACK_NEEDS_ENABLED = True

    def _record(self, status: str, result) -> None:
        path = os.environ.get('EMINFRA_TEST_RESULTS')
        if not path:
            return
        data = getattr(result, 'result', None)
        if data is None:
            data = result._result  # pylint: disable=protected-access
        entry = {
            'task': result.task_name,
            'host': result.host.get_name() if hasattr(result, 'host') else result._host.get_name(),  # pylint: disable=protected-access
            'status': status,
            'result': json.loads(self._dump_results(data, indent=None, keep_invocation=True)),
        }
        with open(path, 'a', encoding='utf-8') as handle:
            handle.write(json.dumps(entry, sort_keys=True) + '\n')

    def v2_runner_on_ok(self, result) -> None:
        self._record('ok', result)

    def v2_runner_on_failed(self, result, ignore_errors=False) -> None:
        self._record('failed', result)

    def v2_runner_on_skipped(self, result) -> None:
        self._record('skipped', result)

    def v2_runner_on_unreachable(self, result) -> None:
        self._record('unreachable', result)
