# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""tests/setup/install-community-proxmox.sh on a copy of the setup directory, offline: with a
package wheel already in .cache/ansible-dist/ at the pinned sha256 it unpacks only the collection,
checks its version and every file against FILES.json, and does nothing on a second run; a file
that does not match its checksum, or another collection version, stops it with the reason."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
PREFIX = 'ansible_collections/community/proxmox/'


def _wheel(version: str = '1.4.0', tamper: bool = False) -> bytes:
    plugin = b'# inventory plugin\n'
    files = {'files': [{'name': 'plugins/inventory/proxmox.py', 'ftype': 'file',
                        'chksum_sha256': hashlib.sha256(plugin).hexdigest()}]}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as archive:
        archive.writestr(PREFIX + 'MANIFEST.json', json.dumps({'collection_info': {'version': version}}))
        archive.writestr(PREFIX + 'FILES.json', json.dumps(files))
        archive.writestr(PREFIX + 'plugins/inventory/proxmox.py', plugin + (b'x' if tamper else b''))
        archive.writestr('ansible_collections/community/general/README.md', 'not wanted')
    return buffer.getvalue()


def _setup(tmp_path, wheel: bytes, collection_version: str = '1.4.0') -> str:
    root = tmp_path / 'checkout'
    shutil.copytree(os.path.join(ROOT, 'tests', 'setup'), root / 'tests' / 'setup')
    digest = hashlib.sha256(wheel).hexdigest()
    (root / 'tests' / 'setup' / 'community-proxmox.env').write_text(
        f'ANSIBLE_DIST_VERSION=12.3.0\nANSIBLE_DIST_SHA256={digest}\nCOMMUNITY_PROXMOX_VERSION={collection_version}\n',
        encoding='utf-8')
    (root / '.cache' / 'ansible-dist').mkdir(parents=True)
    (root / '.cache' / 'ansible-dist' / 'ansible-12.3.0-py3-none-any.whl').write_bytes(wheel)
    return str(root)


def _run(root: str) -> subprocess.CompletedProcess:
    venv = os.path.dirname(os.path.dirname(sys.executable))
    return subprocess.run([os.path.join(root, 'tests', 'setup', 'install-community-proxmox.sh'), venv],
                          capture_output=True, text=True, timeout=120, check=False)


def test_unpacks_only_the_pinned_collection(tmp_path):
    root = _setup(tmp_path, _wheel())
    result = _run(root)
    assert result.returncode == 0, result.stderr
    dest = os.path.join(root, '.cache', 'collections', 'ansible_collections', 'community')
    assert os.listdir(dest) == ['proxmox']  # no community.general, no staging directory left
    unpacked = sorted(os.path.relpath(os.path.join(d, f), os.path.join(dest, 'proxmox'))
                      for d, dummy, fs in os.walk(os.path.join(dest, 'proxmox')) for f in fs)
    assert unpacked == ['.pinned', 'FILES.json', 'MANIFEST.json', 'plugins/inventory/proxmox.py']
    assert 'community.proxmox 1.4.0 in' in result.stderr
    again = _run(root)
    assert again.returncode == 0 and again.stderr == ''  # pinned version present: nothing to do


@pytest.mark.parametrize('wheel, collection_version, message', [
    (_wheel(tamper=True), '1.4.0', 'plugins/inventory/proxmox.py does not match the checksum in FILES.json'),
    (_wheel(version='1.3.0'), '1.4.0', 'the wheel holds community.proxmox 1.3.0, the pin says 1.4.0'),
])
def test_refuses_a_wrong_collection(tmp_path, wheel, collection_version, message):
    root = _setup(tmp_path, wheel, collection_version)
    result = _run(root)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    # nothing unpacked, no staging directory left behind
    assert os.listdir(os.path.join(root, '.cache', 'collections', 'ansible_collections', 'community')) == []
