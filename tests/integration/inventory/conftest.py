# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs the real ansible-inventory of the project's virtualenv from the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN = os.path.dirname(sys.executable)
GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'golden')


class InventoryRun:
    """ansible-inventory with ANSIBLE_CONFIG at the checkout's ansible.cfg, cwd the checkout."""

    def __init__(self, base_env: dict) -> None:
        self.base_env = base_env

    @staticmethod
    def binary(command: str) -> str:
        return os.path.join(BIN, command)

    def __call__(self, *args: str, env: dict | None = None, cwd: str = CHECKOUT,
                 command: str = 'ansible-inventory') -> subprocess.CompletedProcess:
        full_env = dict(self.base_env)
        full_env.update(env or {})
        return subprocess.run([os.path.join(BIN, command), *args], cwd=cwd, env=full_env,
                              capture_output=True, text=True, check=False, timeout=300)

    def list(self, source: str, env: dict | None = None) -> tuple[dict, str]:
        """``--list`` of one source: (parsed JSON, stderr); fails the test on a non-zero exit."""
        proc = self('-i', source, '--list', env=env)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout), proc.stderr


@pytest.fixture(scope='session')
def inventory_run(tmp_path_factory) -> InventoryRun:
    assert os.path.isdir(os.path.join(CHECKOUT, '.collections', 'ansible_collections', 'eminfra', 'pipeline')), \
        'run make setup first: the collection link .collections/ansible_collections/eminfra/pipeline is missing'
    env = {key: value for key, value in os.environ.items() if not key.startswith(('ANSIBLE_', 'EMINFRA_'))}
    env.update({
        'ANSIBLE_CONFIG': os.path.join(CHECKOUT, 'ansible.cfg'),
        'PATH': BIN + os.pathsep + env.get('PATH', ''),
        'PYTHONDONTWRITEBYTECODE': '1',
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_LOCAL_TEMP': str(tmp_path_factory.mktemp('ansible-tmp')),
        # no state of the checkout may leak into a test
        'EMINFRA_STATE_DIR': str(tmp_path_factory.mktemp('no-state')),
    })
    return InventoryRun(env)


def write_source(directory, outputs, config: str = '', name: str = 'proxmox_dynamic.yml') -> str:
    """An inventory source in ``directory`` reading ``outputs`` (a dict, or raw text) from beside it."""
    os.makedirs(directory, exist_ok=True)
    outputs_path = os.path.join(directory, 'outputs.json')
    if outputs is not None:
        with open(outputs_path, 'w', encoding='utf-8') as handle:
            handle.write(outputs if isinstance(outputs, str) else json.dumps(outputs, indent=2))
    source = os.path.join(directory, name)
    with open(source, 'w', encoding='utf-8') as handle:
        handle.write(f'plugin: eminfra.pipeline.proxmox_dynamic\noutputs_path: {outputs_path}\n{config}')
    return source
