# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Run ansible-playbook and ansible-doc from tests, the way an operator runs them.

``run_playbook(path, state_dir=...)`` runs the virtualenv's ansible-playbook with the
checkout's ansible.cfg, cwd at the checkout root, and returns rc, stdout, stderr and every
task result as parsed JSON (``.results``; ``.task('name')`` for one task's results).
"""

from __future__ import annotations

import configparser
import dataclasses
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
CALLBACKS = os.path.join(ROOT, 'tests', 'tools', 'callback_plugins')


def with_results_callback(env: dict[str, str]) -> None:
    """Enable the tests' result recorder beside the callbacks the run would have anyway.

    ANSIBLE_CALLBACKS_ENABLED replaces ansible.cfg's callbacks_enabled, so the configured ones
    (the per-run task log) are read from the config the run uses and kept."""
    if 'ANSIBLE_CALLBACKS_ENABLED' in env:
        configured = env['ANSIBLE_CALLBACKS_ENABLED']
    else:
        parser = configparser.ConfigParser()
        parser.read(env.get('ANSIBLE_CONFIG') or os.path.join(ROOT, 'ansible.cfg'))
        configured = parser.get('defaults', 'callbacks_enabled', fallback='')
    enabled = [name.strip() for name in configured.split(',') if name.strip()]
    env['ANSIBLE_CALLBACKS_ENABLED'] = ','.join(enabled + ['eminfra_results'])
    env['ANSIBLE_CALLBACK_PLUGINS'] = os.pathsep.join(filter(None, [CALLBACKS, env.get('ANSIBLE_CALLBACK_PLUGINS')]))


@dataclasses.dataclass
class AnsibleRun:
    argv: list[str]
    rc: int
    stdout: str
    stderr: str
    results: list[dict]

    def task(self, name: str) -> list[dict]:
        """The results (host, status, result) of the tasks named ``name``."""
        return [entry for entry in self.results if entry['task'] == name]

    def result(self, name: str) -> dict:
        """The one result of the task named ``name``."""
        found = self.task(name)
        assert len(found) == 1, f'{len(found)} results for task {name!r}:\n{self.output}'
        return found[0]['result']

    @property
    def output(self) -> str:
        return f'$ {" ".join(self.argv)}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}'


def checkout_env() -> dict[str, str]:
    """This environment, set to run the virtualenv's Ansible on the checkout as an operator would."""
    env = dict(os.environ)
    env['PATH'] = BIN + os.pathsep + env.get('PATH', '')
    env['ANSIBLE_CONFIG'] = os.path.join(ROOT, 'ansible.cfg')
    # The checkout's ansible.cfg resolves eminfra.pipeline to the checkout itself; a collections
    # path inherited from a test runner (molecule sets one) would run an installed copy instead.
    env.pop('ANSIBLE_COLLECTIONS_PATH', None)
    env.pop('ANSIBLE_COLLECTIONS_PATHS', None)
    env['EMINFRA_PROJECT_ROOT'] = ROOT
    env.setdefault('ANSIBLE_LOCAL_TEMP', os.path.join(tempfile.gettempdir(), 'eminfra-ansible-local'))
    return env


def ansible_env(state_dir: str | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = checkout_env()
    env.setdefault('ANSIBLE_NOCOLOR', '1')
    if state_dir is not None:
        env['EMINFRA_STATE_DIR'] = str(state_dir)
    env.update(extra or {})
    return env


def run_playbook(playbook: str, *args: str, state_dir: str | None = None, env: dict[str, str] | None = None,
                 cwd: str = ROOT, timeout: float = 900) -> AnsibleRun:
    """Run ``ansible-playbook playbook args...``; ``state_dir`` becomes EMINFRA_STATE_DIR."""
    run_env = ansible_env(state_dir, env)
    with tempfile.NamedTemporaryFile(prefix='eminfra-results-', suffix='.jsonl') as results:
        run_env['EMINFRA_TEST_RESULTS'] = results.name
        with_results_callback(run_env)
        argv = [os.path.join(BIN, 'ansible-playbook'), str(playbook), *args]
        proc = subprocess.run(argv, cwd=cwd, env=run_env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        with open(results.name, encoding='utf-8') as handle:
            parsed = [json.loads(line) for line in handle if line.strip()]
    return AnsibleRun(argv, proc.returncode, proc.stdout, proc.stderr, parsed)


def run_tool(tool: str, *args: str, env: dict[str, str] | None = None, cwd: str = ROOT,
             timeout: float = 300) -> AnsibleRun:
    """Run another ansible command (ansible-doc, ansible-inventory, ansible-galaxy ...)."""
    argv = [os.path.join(BIN, tool), *args]
    proc = subprocess.run(argv, cwd=cwd, env=ansible_env(extra=env), capture_output=True, text=True,
                          timeout=timeout, check=False)
    return AnsibleRun(argv, proc.returncode, proc.stdout, proc.stderr, [])


def run_doc(name: str, *args: str, env: dict[str, str] | None = None) -> AnsibleRun:
    """``ansible-doc [args] name``."""
    return run_tool('ansible-doc', *args, name, env=env)


def without_unsafe(value):
    """ansible-inventory --list output without its ``__ansible_unsafe`` markers (on data from an
    API or a plugin; a static YAML inventory's values are trusted and carry none)."""
    if isinstance(value, dict):
        if set(value) == {'__ansible_unsafe'}:
            return value['__ansible_unsafe']
        return {key: without_unsafe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_unsafe(item) for item in value]
    return value
