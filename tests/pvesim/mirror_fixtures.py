# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""pytest fixture ``mirror``: the artefact mirror in its own process, one per test session.

Use it from a conftest.py: ``from tests.pvesim.mirror_fixtures import mirror  # noqa: F401``.
The object it yields:

``url``             ``http://127.0.0.1:PORT``
``root``            the mirror's root directory
``files``           {path: {size, sha512}} of the real files, the container template
                    ``CONTAINER_TEMPLATE_PATH`` (index ``url_for(LXC_INDEX_DIR)``)
``artefacts``       {path: size} of the default artefacts (see ``UBUNTU_PATH``, ``TALOS_*``):
                    ``UBUNTU_PATH`` and ``TALOS_QCOW2_PATH`` are what the templates role's
                    defaults fetch with the base URLs ``url_for(UBUNTU_DIR)`` and
                    ``url_for(TALOS_FACTORY_PATH)``
``control(action, **body)``  POST (or GET for ``state``/``log``) to ``/_mirror/<action>``
``fault(path, **spec)``, ``clear(path=None)``, ``reset()``, ``add(path, size)``,
``log()``, ``digest(path)`` and ``url_for(path)``.

Tests that set faults should call ``reset()`` first (the mirror is shared by the session);
``MirrorProcess.start()`` gives a private one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import ssl
import tempfile
import urllib.parse
import urllib.request

import pytest

# The directories are re-exported for the tests.
from tests.pvesim.mirror import (DEFAULT_ARTEFACTS, TALOS_DIR, TALOS_FACTORY_PATH, TALOS_IMAGE_PATH,  # noqa: F401  pylint: disable=unused-import
                                 UBUNTU_DIR, UBUNTU_IMAGE_PATH)

from tests.pvesim.appliance import APLINFO_PATH, CONTAINER_TEMPLATE_PATH, INDEX_DIR as LXC_INDEX_DIR  # noqa: F401  pylint: disable=unused-import

UBUNTU_PATH = UBUNTU_IMAGE_PATH
TALOS_QCOW2_PATH = TALOS_IMAGE_PATH
TALOS_RAW_PATH = f'{TALOS_DIR}/nocloud-amd64.raw.xz'
TALOS_ISO_PATH = f'{TALOS_DIR}/nocloud-amd64.iso'
DEFAULT_SIZES = dict(DEFAULT_ARTEFACTS)

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class MirrorProcess:
    """A running mirror (``python -m tests.pvesim.mirror``) and its control API."""

    def __init__(self, proc: subprocess.Popen, info: dict, tmp: tempfile.TemporaryDirectory | None,
                 ca_path: str | None = None) -> None:
        self.proc = proc
        self.info = info
        self.url = info['url']
        self.root = info['root']
        self.artefacts = {p: v['size'] for p, v in info['artefacts'].items()}
        self.files = info.get('files', {})
        self._tmp = tmp
        # The control API is plain loopback HTTP: never send it through an operator's proxy.
        handlers = [urllib.request.ProxyHandler({})]
        if ca_path:
            handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca_path)))
        self._opener = urllib.request.build_opener(*handlers)

    @classmethod
    def start(cls, root: str | None = None, artefacts: dict[str, int] | None = None,
              extra_args: list[str] | None = None, python: str | None = None,
              ca_path: str | None = None) -> 'MirrorProcess':
        tmp = None
        if root is None:
            tmp = tempfile.TemporaryDirectory(prefix='mirror-')
            root = tmp.name
        argv = [python or sys.executable, '-m', 'tests.pvesim.mirror', '--listen', '127.0.0.1:0',
                '--root', root]
        for path, size in (artefacts or DEFAULT_SIZES).items():
            argv += ['--artefact', f'{path}:{size}']
        argv += extra_args or []
        env = dict(os.environ)
        env['PYTHONPATH'] = os.pathsep.join(filter(None, [_REPO_ROOT, env.get('PYTHONPATH')]))
        proc = subprocess.Popen(argv, cwd=_REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        if not line:
            proc.wait(timeout=10)
            raise RuntimeError(f'mirror did not start (exit {proc.returncode}): {" ".join(argv)}')
        return cls(proc, json.loads(line), tmp, ca_path)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def url_for(self, path: str) -> str:
        return self.url + path

    def control(self, action: str, **body):
        url = f'{self.url}/_mirror/{action}'
        if action in ('state', 'log', 'digest'):
            if body:
                url += '?' + urllib.parse.urlencode(body)
            request = urllib.request.Request(url, method='GET')
        else:
            request = urllib.request.Request(url, data=json.dumps(body).encode(), method='POST',
                                             headers={'Content-Type': 'application/json'})
        with self._opener.open(request, timeout=60) as response:
            return json.loads(response.read())

    def fault(self, path: str, **spec) -> dict:
        return self.control('fault', path=path, **spec)

    def clear(self, path: str | None = None) -> None:
        self.control('clear', **({'path': path} if path else {}))

    def reset(self) -> None:
        self.control('reset')

    def add(self, path: str, size: int) -> dict:
        return self.control('artefact', path=path, size=size)

    def remove(self, path: str) -> None:
        self.control('remove', path=path)

    def log(self) -> list[dict]:
        return self.control('log')

    def digest(self, path: str) -> str:
        return self.control('digest', path=path)['sha256']

    def state(self) -> dict:
        return self.control('state')


@pytest.fixture(scope='session')
def mirror():
    """The artefact mirror, shared by the test session (call ``reset()`` before setting faults)."""
    process = MirrorProcess.start()
    try:
        yield process
    finally:
        process.stop()
