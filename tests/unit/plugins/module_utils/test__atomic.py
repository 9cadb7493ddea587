# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.eminfra.pipeline.plugins.module_utils import _atomic
from ansible_collections.eminfra.pipeline.plugins.module_utils._atomic import (
    atomic_write,
    read_bytes,
    write_if_changed,
)


@pytest.fixture
def wide_umask():
    old = os.umask(0o000)
    yield
    os.umask(old)


def test_writes_content_and_mode_regardless_of_umask(tmp_path, wide_umask):
    path = tmp_path / 'deep' / 'er' / 'proxmox.env'
    atomic_write(str(path), 'A=1\n', mode=0o600)
    assert path.read_text() == 'A=1\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(path.parent)) == ['proxmox.env']


def test_mode_is_set_before_rename_and_file_and_directory_are_synced(tmp_path, monkeypatch):
    path = tmp_path / 'latest.env'
    path.write_text('old\n')
    events = []
    real_fsync = os.fsync
    real_replace = os.replace

    def fsync(fd):
        kind = 'dir' if stat.S_ISDIR(os.fstat(fd).st_mode) else 'file'
        events.append(('fsync', kind))
        real_fsync(fd)

    def replace(src, dst):
        events.append(('replace', os.path.dirname(src) == os.path.dirname(dst), stat.S_IMODE(os.stat(src).st_mode),
                       open(src, 'rb').read()))
        real_replace(src, dst)

    monkeypatch.setattr(_atomic.os, 'fsync', fsync)
    monkeypatch.setattr(_atomic.os, 'replace', replace)
    atomic_write(str(path), b'new\n', mode=0o640)
    assert events == [('fsync', 'file'), ('replace', True, 0o640, b'new\n'), ('fsync', 'dir')]
    assert path.read_bytes() == b'new\n'


def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / 'manifest.json'
    path.write_text('{"old": true}\n')

    def broken_replace(src, dst):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(_atomic.os, 'replace', broken_replace)
    with pytest.raises(OSError):
        atomic_write(str(path), '{"new": true}\n')
    assert path.read_text() == '{"old": true}\n'
    assert os.listdir(tmp_path) == ['manifest.json']


def test_write_if_changed(tmp_path):
    path = tmp_path / 'outputs.json'
    assert write_if_changed(str(path), '{}\n') is True
    assert write_if_changed(str(path), '{}\n') is False
    assert write_if_changed(str(path), '{}\n', mode=0o600) is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert write_if_changed(str(path), '[]\n', mode=0o600) is True
    assert path.read_text() == '[]\n'


def test_read_bytes(tmp_path):
    assert read_bytes(str(tmp_path / 'missing')) is None
    (tmp_path / 'present').write_bytes(b'\x00x')
    assert read_bytes(str(tmp_path / 'present')) == b'\x00x'
