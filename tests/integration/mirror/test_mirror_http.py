# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The artefact mirror's HTTP behaviour, over real sockets."""

from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
import sys
import time
import urllib.parse

import pytest

from tests.pvesim.api.base import _assert_file_validity
from tests.pvesim.mirror import QCOW2_VIRTUAL_SIZE, Artefact, parse_range, parse_size
from tests.pvesim.mirror_fixtures import (TALOS_DIR, TALOS_ISO_PATH, TALOS_QCOW2_PATH, TALOS_RAW_PATH, UBUNTU_DIR,
                                          UBUNTU_PATH, MirrorProcess)
from tests.pvesim.state import image_virtual_size


def request(mirror, method, path, headers=None):
    """(status, headers dict, body bytes, error) for one request on a fresh connection."""
    parts = urllib.parse.urlsplit(mirror.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        try:
            body = resp.read()
            error = None
        except http.client.IncompleteRead as exc:
            body, error = exc.partial, exc
        return resp.status, hdrs, body, error
    finally:
        conn.close()


def sums_digest(mirror, directory, name, form='SHA256SUMS'):
    dummy, dummy, body, dummy = request(mirror, 'GET', f'{directory}/{form}')
    for line in body.decode().splitlines():
        if name in line:
            return line
    return None


def test_head_reports_size_etag_last_modified_and_ranges(clean_mirror):
    status, headers, body, dummy = request(clean_mirror, 'HEAD', UBUNTU_PATH)
    assert status == 200
    assert body == b''
    assert int(headers['content-length']) == clean_mirror.artefacts[UBUNTU_PATH]
    assert headers['accept-ranges'] == 'bytes'
    assert headers['etag'].startswith('"') and headers['etag'].endswith('"')
    assert headers['last-modified'].endswith('GMT')


def test_full_body_matches_published_sha256sums_in_all_three_forms(clean_mirror):
    status, headers, body, dummy = request(clean_mirror, 'GET', UBUNTU_PATH)
    assert status == 200
    assert len(body) == int(headers['content-length'])
    digest = hashlib.sha256(body).hexdigest()
    name = UBUNTU_PATH.rsplit('/', 1)[1]
    assert sums_digest(clean_mirror, UBUNTU_DIR, name) == f'{digest} *{name}'
    assert sums_digest(clean_mirror, UBUNTU_DIR, name, 'sha256sum.txt') == f'{digest}  {name}'
    assert sums_digest(clean_mirror, UBUNTU_DIR, name, 'SHA256SUMS.bsd') == f'SHA256 ({name}) = {digest}'
    assert clean_mirror.digest(UBUNTU_PATH) == digest


def test_images_are_shaped_like_what_they_stand_for(clean_mirror):
    for path in (UBUNTU_PATH, TALOS_QCOW2_PATH):
        dummy, dummy, head, dummy = request(clean_mirror, 'GET', path, {'Range': 'bytes=0-511'})
        assert head[:4] == b'QFI\xfb' and head[4:8] == b'\x00\x00\x00\x03'
        assert head[8:20] == bytes(12)  # no backing file
        assert int.from_bytes(head[20:24], 'big') == 16  # 64 KiB clusters
    dummy, dummy, head, dummy = request(clean_mirror, 'GET', TALOS_RAW_PATH, {'Range': 'bytes=0-5'})
    assert head == b'\xfd7zXZ\x00'
    dummy, dummy, head, dummy = request(clean_mirror, 'GET', TALOS_ISO_PATH, {'Range': 'bytes=32769-32773'})
    assert head == b'CD001'
    sums = request(clean_mirror, 'GET', f'{TALOS_DIR}/SHA256SUMS')[2].decode()
    assert 'nocloud-amd64.raw.xz' in sums and 'nocloud-amd64.iso' in sums and 'nocloud-amd64.qcow2' in sums


def test_default_images_are_qcow2_disks_proxmox_accepts_and_a_node_disk_holds(clean_mirror, tmp_path):
    """The images the templates role fetches by default pass the simulator's check of an untrusted
    qcow2 file, and declare a virtual size a 20 GiB node disk holds and the file fits in."""
    for path, name in ((UBUNTU_PATH, 'noble-server-cloudimg-amd64.qcow2'), (TALOS_QCOW2_PATH, 'talos.qcow2')):
        body = request(clean_mirror, 'GET', path)[2]
        assert len(body) == clean_mirror.artefacts[path]
        target = tmp_path / name
        target.write_bytes(body)
        _assert_file_validity(str(target), 'qcow2')
        assert image_virtual_size(str(target)) == QCOW2_VIRTUAL_SIZE
        assert len(body) <= QCOW2_VIRTUAL_SIZE <= 20 << 30
    # The published checksum line of the Ubuntu image, as Ubuntu writes it.
    name = UBUNTU_PATH.rsplit('/', 1)[1]
    assert sums_digest(clean_mirror, UBUNTU_DIR, name) == f'{clean_mirror.digest(UBUNTU_PATH)} *{name}'


def test_a_qcow2_larger_than_the_default_virtual_size_declares_its_own_size():
    big = Artefact('/x/big.qcow2', QCOW2_VIRTUAL_SIZE + 5)
    header = big.block(0)[:32]
    assert int.from_bytes(header[24:32], 'big') == QCOW2_VIRTUAL_SIZE + (1 << 20)
    small = Artefact('/x/small.img', 4096)
    assert int.from_bytes(small.block(0)[24:32], 'big') == QCOW2_VIRTUAL_SIZE


def test_ranges_206_suffix_open_and_416(clean_mirror):
    size = clean_mirror.artefacts[UBUNTU_PATH]
    full = request(clean_mirror, 'GET', UBUNTU_PATH)[2]
    start = (1 << 20) - 5  # across a block boundary
    status, headers, body, dummy = request(clean_mirror, 'GET', UBUNTU_PATH, {'Range': f'bytes={start}-{start + 9}'})
    assert status == 206
    assert headers['content-range'] == f'bytes {start}-{start + 9}/{size}'
    assert body == full[start:start + 10]
    status, headers, body, dummy = request(clean_mirror, 'GET', UBUNTU_PATH, {'Range': 'bytes=-100'})
    assert status == 206 and body == full[-100:]
    status, headers, body, dummy = request(clean_mirror, 'GET', UBUNTU_PATH, {'Range': f'bytes={size - 3}-'})
    assert status == 206 and body == full[-3:]
    status, headers, body, dummy = request(clean_mirror, 'GET', UBUNTU_PATH, {'Range': f'bytes={size}-'})
    assert status == 416
    assert headers['content-range'] == f'bytes */{size}'


def test_if_range_honours_matching_etag_and_date_and_restarts_otherwise(clean_mirror):
    dummy, headers, dummy, dummy = request(clean_mirror, 'HEAD', UBUNTU_PATH)
    etag, modified = headers['etag'], headers['last-modified']
    status = request(clean_mirror, 'GET', UBUNTU_PATH, {'Range': 'bytes=10-19', 'If-Range': etag})[0]
    assert status == 206
    status = request(clean_mirror, 'GET', UBUNTU_PATH, {'Range': 'bytes=10-19', 'If-Range': modified})[0]
    assert status == 206
    status, headers, body, dummy = request(clean_mirror, 'GET', UBUNTU_PATH,
                                           {'Range': 'bytes=10-19', 'If-Range': '"stale-etag"'})
    assert status == 200 and len(body) == clean_mirror.artefacts[UBUNTU_PATH]


def test_new_version_changes_bytes_etag_and_sums(clean_mirror):
    path = '/scratch/versioned/file.img'
    first = clean_mirror.add(path, 4096)
    digest1 = clean_mirror.digest(path)
    second = clean_mirror.add(path, 4096)
    assert second['version'] == first['version'] + 1
    assert second['etag'] != first['etag']
    body = request(clean_mirror, 'GET', path)[2]
    assert hashlib.sha256(body).hexdigest() == clean_mirror.digest(path) != digest1
    status = request(clean_mirror, 'GET', path, {'Range': 'bytes=1-', 'If-Range': first['etag']})[0]
    assert status == 200
    clean_mirror.remove(path)
    assert request(clean_mirror, 'GET', path)[0] == 404


def test_drop_once_then_serves_whole(clean_mirror):
    clean_mirror.fault(UBUNTU_PATH, drop_after=100_000)
    status, headers, body, error = request(clean_mirror, 'GET', UBUNTU_PATH)
    assert status == 200 and error is not None
    assert len(body) == 100_000 < int(headers['content-length'])
    status, dummy, body, error = request(clean_mirror, 'GET', UBUNTU_PATH)
    assert error is None and len(body) == clean_mirror.artefacts[UBUNTU_PATH]
    entries = [e for e in clean_mirror.log() if e['path'] == UBUNTU_PATH]
    assert [e['dropped'] for e in entries] == [True, False]
    assert entries[0]['sent'] == 100_000


def test_drop_always(clean_mirror):
    clean_mirror.fault(TALOS_RAW_PATH, drop_after=5000, drop_times=0)
    for dummy in range(3):
        body, error = request(clean_mirror, 'GET', TALOS_RAW_PATH)[2:]
        assert error is not None and len(body) == 5000


def test_wrong_body_same_length_different_digest(clean_mirror):
    clean_mirror.fault(TALOS_RAW_PATH, wrong_body=True)
    status, headers, body, error = request(clean_mirror, 'GET', TALOS_RAW_PATH)
    assert status == 200 and error is None and len(body) == int(headers['content-length'])
    assert hashlib.sha256(body).hexdigest() != clean_mirror.digest(TALOS_RAW_PATH)


def test_ignore_range_answers_200_with_whole_body(clean_mirror):
    clean_mirror.fault(TALOS_ISO_PATH, ignore_range=True)
    status, headers, body, dummy = request(clean_mirror, 'GET', TALOS_ISO_PATH, {'Range': 'bytes=100-'})
    assert status == 200 and 'content-range' not in headers
    assert len(body) == clean_mirror.artefacts[TALOS_ISO_PATH]


def test_status_redirects_and_5xx_n_times(clean_mirror):
    clean_mirror.fault(UBUNTU_PATH, status=404)
    assert request(clean_mirror, 'GET', UBUNTU_PATH)[0] == 404
    clean_mirror.clear(UBUNTU_PATH)
    clean_mirror.fault(UBUNTU_PATH, redirect_loop=True)
    status, headers, dummy, dummy = request(clean_mirror, 'GET', UBUNTU_PATH)
    assert status == 302
    hop = headers['location']
    status, headers, dummy, dummy = request(clean_mirror, 'GET', hop)
    assert status == 302 and headers['location'] != hop
    clean_mirror.clear(UBUNTU_PATH)
    clean_mirror.fault(UBUNTU_PATH, error_status=503, error_times=2)
    assert [request(clean_mirror, 'HEAD', UBUNTU_PATH)[0] for dummy in range(3)] == [503, 503, 200]
    clean_mirror.fault(UBUNTU_PATH, redirect_to=TALOS_ISO_PATH)
    status, headers, dummy, dummy = request(clean_mirror, 'GET', UBUNTU_PATH)
    assert status == 302 and headers['location'] == TALOS_ISO_PATH
    assert request(clean_mirror, 'GET', '/no/such/file.img')[0] == 404


def test_throttle_limits_rate(clean_mirror):
    path = '/scratch/slow.raw'
    clean_mirror.add(path, 200_000)
    clean_mirror.fault(path, throttle=400_000)
    began = time.monotonic()
    body = request(clean_mirror, 'GET', path)[2]
    elapsed = time.monotonic() - began
    assert len(body) == 200_000
    # Throttling is behaviour, not speed: 200 kB at 400 kB/s cannot arrive in under 0.4 s.
    assert elapsed >= 0.4


def test_omit_from_sums(clean_mirror):
    clean_mirror.fault(TALOS_ISO_PATH, omit_from_sums=True)
    sums = request(clean_mirror, 'GET', f'{TALOS_DIR}/SHA256SUMS')[2].decode()
    assert 'nocloud-amd64.iso' not in sums and 'nocloud-amd64.raw.xz' in sums


def test_control_rejects_unknown_fault(clean_mirror):
    with pytest.raises(Exception) as info:
        clean_mirror.fault(UBUNTU_PATH, explode=True)
    assert '400' in str(info.value)


def test_static_files_under_root_are_served(clean_mirror, tmp_path):
    dummy = tmp_path
    target = f'{clean_mirror.root}/static/SHA256SUMS'
    import os
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, 'w', encoding='utf-8') as handle:
        handle.write('0' * 64 + ' *hand-written.img\n')
    assert request(clean_mirror, 'GET', '/static/SHA256SUMS')[2] == b'0' * 64 + b' *hand-written.img\n'
    assert request(clean_mirror, 'GET', '/.mirror-digests.json')[0] == 404


def test_cli_prints_one_json_line_and_refuses_non_loopback(tmp_path):
    proc = MirrorProcess.start(root=str(tmp_path), artefacts={'/x/a.qcow2': 1000})
    try:
        assert proc.url.startswith('http://127.0.0.1:')
        assert proc.artefacts == {'/x/a.qcow2': 1000}
        assert proc.info['control'] == proc.url + '/_mirror/'
    finally:
        proc.stop()
    result = subprocess.run([sys.executable, '-m', 'tests.pvesim.mirror', '--listen', '0.0.0.0:0',
                             '--root', str(tmp_path)], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode != 0 and 'loopback' in result.stderr


def test_generation_is_deterministic_and_range_consistent():
    one = Artefact('/a/b.img', 3 * (1 << 20) + 7)
    two = Artefact('/a/b.img', 3 * (1 << 20) + 7)
    assert one.sha256() == two.sha256()
    whole = b''.join(one.iter_range(0, one.size))
    assert len(whole) == one.size
    assert b''.join(one.iter_range(1000, 2_500_000)) == whole[1000:2_500_000]
    assert json.dumps(parse_range('bytes=5-', 10)) == '[5, 10]'
    assert parse_range('bytes=0-1,4-5', 10) is None
    assert parse_range('bytes=20-', 10) == 'unsatisfiable'
    assert parse_size('16M') == 16 << 20 and parse_size('1G') == 1 << 30
