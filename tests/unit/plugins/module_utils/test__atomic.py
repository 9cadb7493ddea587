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


# ------------------------------------------------------------------ read_json and file_digest

REMEDIATION = 'run the step again'


def _read_json_error(path, **kwargs):
    from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError
    with pytest.raises(CheckError) as info:
        _atomic.read_json(str(path), 'some_check', REMEDIATION, **kwargs)
    return info.value


def test_read_json_returns_the_document(tmp_path):
    path = tmp_path / 'doc.json'
    path.write_text('{"a": [1, 2]}', encoding='utf-8')
    assert _atomic.read_json(str(path), 'some_check', REMEDIATION) == {'a': [1, 2]}
    path.write_text('[1]', encoding='utf-8')
    assert _atomic.read_json(str(path), 'some_check', REMEDIATION, expect=list) == [1]
    assert _atomic.read_json(str(path), 'some_check', REMEDIATION, expect=None) == [1]


def test_read_json_missing_names_check_file_and_remediation(tmp_path):
    err = _read_json_error(tmp_path / 'none.json', what='the template manifest')
    assert err.check == 'some_check' and err.where == str(tmp_path / 'none.json')
    assert err.detail == 'the template manifest does not exist' and err.remediation == REMEDIATION
    assert str(err) == f'some_check: {tmp_path / "none.json"}: the template manifest does not exist. Remediation: {REMEDIATION}'


def test_read_json_unreadable(tmp_path):
    # A directory where the file should be: open() fails with an OSError other than "not found"
    # (permission bits do not stop root, which the tests may run as).
    err = _read_json_error(tmp_path)
    assert err.check == 'some_check' and err.where == str(tmp_path)
    assert 'cannot be read' in err.detail and err.remediation == REMEDIATION


@pytest.mark.parametrize('content', [b'{"a": ', b'not json', b'\xff\xfe{}', b''])
def test_read_json_invalid(tmp_path, content):
    path = tmp_path / 'doc.json'
    path.write_bytes(content)
    err = _read_json_error(path)
    assert err.check == 'some_check' and err.where == str(path)
    assert err.detail.startswith('not JSON (') and err.remediation == REMEDIATION


@pytest.mark.parametrize('content, kind', [('[]', 'an array'), ('"x"', 'a string'), ('3', 'a number'),
                                           ('null', 'null'), ('true', 'a boolean')])
def test_read_json_wrong_top_level_type(tmp_path, content, kind):
    path = tmp_path / 'doc.json'
    path.write_text(content, encoding='utf-8')
    err = _read_json_error(path)
    assert err.check == 'some_check' and err.where == str(path)
    assert err.detail == f'the top level is {kind}, not an object' and err.remediation == REMEDIATION


def test_file_digest_and_update_digest(tmp_path):
    import hashlib
    data = os.urandom(3 * _atomic.HASH_CHUNK + 17)
    path = tmp_path / 'blob'
    path.write_bytes(data)
    assert _atomic.file_digest(str(path)) == (hashlib.sha256(data).hexdigest(), len(data))
    assert _atomic.file_digest(str(path), 'sha512') == (hashlib.sha512(data).hexdigest(), len(data))
    digest = hashlib.sha256()
    assert _atomic.update_digest(digest, str(path), _atomic.HASH_CHUNK + 5) == _atomic.HASH_CHUNK + 5
    assert digest.hexdigest() == hashlib.sha256(data[:_atomic.HASH_CHUNK + 5]).hexdigest()
