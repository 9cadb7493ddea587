# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pytest fixtures for pvesim. Import them into a conftest.py::

    from tests.pvesim import fixtures
    pvesim = fixtures.pvesim
    pvesim_fresh = fixtures.pvesim_fresh

``pvesim`` (session scope) runs the real CLI (``python -m tests.pvesim``) as a subprocess on
127.0.0.1 with a free port and no authentication delay, and stops it at the end of the session.
``pvesim_fresh`` (function scope) resets it to the default scenario before the test.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class PveSim:
    """A running simulator: where it listens, its CA, its env files and its control API."""

    url: str
    ca_path: str
    env_files: dict[str, str]
    data_dir: str
    control_url: str
    process: subprocess.Popen | None = None
    log_path: str | None = None  # the simulator's stderr (tracebacks of simulator bugs land here)
    _context: ssl.SSLContext | None = field(default=None, repr=False)

    @property
    def api_url(self) -> str:
        return f'{self.url}/api2/json'

    @property
    def host(self) -> str:
        return self.url.split('://', 1)[1]

    def env(self, token: str = 'full') -> dict[str, str]:
        """The key/value pairs of one token's env file (parsed with the project's reader)."""
        from ansible_collections.eminfra.pipeline.plugins.module_utils._envfile import read_env_file
        return read_env_file(self.env_files[token])

    def token(self, name: str = 'full') -> tuple[str, str]:
        """(token id, secret) of one of the env-file tokens."""
        values = self.env(name)
        return values['PROXMOX_TOKEN_ID'], values['PROXMOX_TOKEN_SECRET']

    def control(self, action: str, **kw) -> object:
        """POST ``kw`` as JSON to ``/_sim/<action>``; return its ``data``."""
        if self._context is None:
            self._context = ssl.create_default_context(cafile=self.ca_path)
        request = urllib.request.Request(f'{self.control_url}{action}', data=json.dumps(kw).encode(),
                                         headers={'Content-Type': 'application/json'}, method='POST')
        with urllib.request.urlopen(request, context=self._context, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())['data']

    def reset(self) -> None:
        self.control('reset')


def start(tmp_dir: str, scenario: str | None = None, extra: list[str] | None = None) -> PveSim:
    """Start ``python -m tests.pvesim`` and wait for its JSON line."""
    env_dir = os.path.join(tmp_dir, 'env')
    data_dir = os.path.join(tmp_dir, 'data')
    argv = [sys.executable, '-m', 'tests.pvesim', '--listen', '127.0.0.1:0', '--write-env', env_dir,
            '--data-dir', data_dir, '--auth-delay', '0', '--task-duration', '0.05',
            '--agent-delay', '0.5', '--agent-linklocal', '0.3']
    if scenario:
        argv += ['--scenario', scenario]
    argv += extra or []
    os.makedirs(tmp_dir, exist_ok=True)
    log_path = os.path.join(tmp_dir, 'pvesim.log')
    # stderr goes to a file: a pipe nobody reads would block the server once it fills
    with open(log_path, 'ab') as log:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
    line = process.stdout.readline()
    if not line:
        process.wait(10)
        with open(log_path, encoding='utf-8', errors='replace') as handle:
            raise RuntimeError(f'pvesim did not start: {handle.read()}')
    info = json.loads(line)
    return PveSim(info['url'], info['ca'], info['env_files'], info['data_dir'], info['control'], process,
                  log_path=log_path)


def stop(sim: PveSim) -> None:
    if sim.process and sim.process.poll() is None:
        sim.process.send_signal(signal.SIGTERM)
        try:
            sim.process.wait(15)
        except subprocess.TimeoutExpired:
            sim.process.kill()
            sim.process.wait(5)
    if sim.process and sim.process.stdout:
        sim.process.stdout.close()


@pytest.fixture(scope='session')
def pvesim(tmp_path_factory):
    sim = start(str(tmp_path_factory.mktemp('pvesim')))
    yield sim
    stop(sim)


@pytest.fixture
def pvesim_fresh(pvesim):
    pvesim.reset()
    yield pvesim
