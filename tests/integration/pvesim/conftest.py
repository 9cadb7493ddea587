# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for the simulator's own tests: the shared ``pvesim`` fixtures plus clients."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import time

import pytest
import requests
from proxmoxer import ProxmoxAPI

from tests.pvesim import fixtures as _pvesim_fixtures

# the shared fixtures, made visible to the tests in this directory
pvesim = _pvesim_fixtures.pvesim
pvesim_fresh = _pvesim_fixtures.pvesim_fresh

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', '..', 'shared',
                           'pve-api', 'pve-api-schema.json')


def proxmox(sim, token: str = 'full') -> ProxmoxAPI:
    """The real proxmoxer client with certificate verification against the simulator's CA."""
    api = sim.client(token)
    assert isinstance(api, ProxmoxAPI)
    return api


def raw(sim, method: str, path: str, token: str | None = 'full', header: str | None = None, **kw) -> requests.Response:
    """A plain HTTPS request (for status lines and bodies proxmoxer hides)."""
    headers = kw.pop('headers', {})
    if header is not None:
        headers['Authorization'] = header
    elif token:
        tokenid, secret = sim.token(token)
        headers['Authorization'] = f'PVEAPIToken={tokenid}={secret}'
    return requests.request(method, f'{sim.api_url}{path}', headers=headers, verify=sim.ca_path, timeout=30, **kw)


def wait_task(api, upid: str, node: str = 'pve', timeout: float = 30) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = api.nodes(node).tasks(upid).status.get()
        if status['status'] == 'stopped':
            return status
        time.sleep(0.05)
    raise AssertionError(f'task {upid} still running after {timeout}s')


class FileServer:
    """A small threaded HTTP server on loopback serving files from a directory."""

    def __init__(self, root: str) -> None:
        def handler(*args, **kwargs):
            return _QuietHandler(*args, directory=root, **kwargs)
        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
        self.httpd.daemon_threads = True
        self.root = root
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
        self.thread.start()
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'

    def add(self, name: str, data: bytes) -> tuple[str, str]:
        with open(os.path.join(self.root, name), 'wb') as handle:
            handle.write(data)
        return f'{self.url}/{name}', hashlib.sha256(data).hexdigest()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002
        pass


@pytest.fixture
def file_server(tmp_path):
    root = tmp_path / 'www'
    root.mkdir()
    server = FileServer(str(root))
    yield server
    server.close()


@pytest.fixture(autouse=True)
def no_simulator_tracebacks(request):
    """Fail any test during which the shared simulator hit an internal error (a traceback in
    its log): a simulator bug must never pass for server behaviour."""
    if 'pvesim' not in request.fixturenames and 'pvesim_fresh' not in request.fixturenames:
        yield
        return
    sim = request.getfixturevalue('pvesim')
    before = os.path.getsize(sim.log_path) if sim.log_path and os.path.exists(sim.log_path) else 0
    yield
    if sim.log_path and os.path.exists(sim.log_path):
        with open(sim.log_path, encoding='utf-8', errors='replace') as handle:
            handle.seek(before)
            new = handle.read()
        assert 'Traceback' not in new, f'simulator error during the test:\n{new[-3000:]}'
