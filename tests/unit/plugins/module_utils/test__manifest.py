# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of _manifest: partial and complete validation, atomic updates, presence checks."""

from __future__ import annotations

import hashlib
import json
import os
import re

import pytest

from ansible_collections.eminfra.pipeline.plugins.module_utils import _manifest
from ansible_collections.eminfra.pipeline.plugins.module_utils._contracts import TIMESTAMP_PATTERN, ContractError


def entry(path='/s/cache/templates/a.img', **extra):
    base = {'type': 'vm', 'source': 'http://h/a.img', 'filename': os.path.basename(path), 'path': path,
            'sha256': '0' * 64, 'size': 3, 'fetched_at': '2026-11-22T00:00:00+00:00', 'checksum_source': 'published'}
    base.update(extra)
    return base


def test_partial_manifest_is_valid_and_complete_needs_both():
    data = _manifest.with_entry(None, 'ubuntu', entry())
    assert re.match(TIMESTAMP_PATTERN, data['generated_at']) and data['generated_at'].endswith('+00:00')
    assert data['schema_version'] == 1
    _manifest.validate_partial(data)
    with pytest.raises(ContractError) as info:
        _manifest.validate_complete(data)
    assert str(info.value).startswith('templates_present') and 'talos: missing required key' in str(info.value)
    data = _manifest.with_entry(data, 'talos', entry('/s/t.iso', type='iso', checksum_source='first_fetch'))
    _manifest.validate_complete(data)


@pytest.mark.parametrize('bad, field', [
    ({'type': 'floppy'}, 'ubuntu.type'),
    ({'filename': 'a b.img'}, 'ubuntu.filename'),
    ({'sha256': 'xyz'}, 'ubuntu.sha256'),
    ({'checksum_source': 'guessed'}, 'ubuntu.checksum_source'),
    ({'fetched_at': '2026-11-22T00:00:00'}, 'ubuntu.fetched_at'),
    ({'proxmox_volid': 'no-colon'}, 'ubuntu.proxmox_volid'),
])
def test_bad_entries_are_refused_naming_the_field(bad, field, tmp_path):
    data = _manifest.with_entry(None, 'ubuntu', entry(**bad))
    path = str(tmp_path / 'manifest.json')
    with pytest.raises(ContractError) as info:
        _manifest.write(path, data)
    assert str(info.value).startswith('manifest_valid') and field in str(info.value)
    assert not os.path.exists(path)


def test_write_is_atomic_ordered_and_loads_back(tmp_path):
    path = str(tmp_path / 'manifest.json')
    data = _manifest.with_entry(None, 'ubuntu', entry())
    _manifest.write(path, data)
    text = open(path, encoding='utf-8').read()
    assert list(json.loads(text))[:2] == ['generated_at', 'schema_version']
    assert _manifest.load(path) == data
    assert os.listdir(tmp_path) == ['manifest.json']
    assert oct(os.stat(path).st_mode & 0o777) == '0o644'


def test_load_missing_and_broken(tmp_path):
    assert _manifest.load(str(tmp_path / 'none.json')) is None
    broken = tmp_path / 'broken.json'
    broken.write_text('{"generated_at": ')
    with pytest.raises(ContractError) as info:
        _manifest.load(str(broken))
    assert str(info.value).startswith('manifest_valid') and 'not JSON' in str(info.value) and str(broken) in str(info.value)


def test_same_artefact_ignores_fetch_time():
    assert _manifest.same_artefact(entry(), entry(fetched_at='2027-01-01T00:00:00Z'))
    assert not _manifest.same_artefact(entry(), entry(sha256='1' * 64))
    assert not _manifest.same_artefact(None, entry())


def test_file_matches_trusts_size_and_mtime_and_rehashes_otherwise(tmp_path):
    path = tmp_path / 'a.img'
    path.write_bytes(b'abc')
    digest = hashlib.sha256(b'abc').hexdigest()
    calls = []

    def hasher(p):
        calls.append(p)
        return hashlib.sha256(open(p, 'rb').read()).hexdigest(), os.path.getsize(p)

    recorded = entry(str(path), sha256=digest, size=3, mtime_ns=os.stat(path).st_mtime_ns)
    assert _manifest.file_matches(recorded, str(path), False, hasher) == (True, 'size and mtime match the manifest')
    assert calls == []
    assert _manifest.file_matches(recorded, str(path), True, hasher) == (True, 'sha256 re-checked')
    os.utime(path, ns=(1, 1))
    assert _manifest.file_matches(recorded, str(path), False, hasher)[0] is True and len(calls) == 2
    path.write_bytes(b'abd')
    ok, why = _manifest.file_matches(recorded, str(path), False, hasher)
    assert not ok and 'differs from the recorded' in why
    path.write_bytes(b'abcd')
    assert _manifest.file_matches(recorded, str(path), False, hasher) == (False, 'size 4 differs from the recorded 3')
    os.unlink(path)
    assert _manifest.file_matches(recorded, str(path), False, hasher) == (False, 'missing')
