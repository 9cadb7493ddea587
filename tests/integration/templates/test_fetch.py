# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""template_fetch's download logic against the artefact mirror, over real HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess

import pytest

from ansible_collections.eminfra.pipeline.plugins.module_utils import _manifest
from ansible_collections.eminfra.pipeline.plugins.module_utils._contracts import MANIFEST_SCHEMA, schema_errors
from ansible_collections.eminfra.pipeline.plugins.module_utils._download import DownloadError
from ansible_collections.eminfra.pipeline.plugins.module_utils._templates import run
from tests.pvesim.mirror_fixtures import (APLINFO_PATH, CONTAINER_TEMPLATE_PATH, TALOS_ISO_PATH, TALOS_RAW_PATH, UBUNTU_DIR,
                                          UBUNTU_PATH)


def no_sleep(seconds):
    """Backoff is behaviour under test, not wall time."""
    del seconds


def ubuntu_params(mirror, dest_dir, **extra):
    params = {'name': 'ubuntu', 'type': 'vm', 'url': mirror.url_for(UBUNTU_PATH),
              'checksum': f'sha256:{mirror.url_for(UBUNTU_DIR)}/SHA256SUMS', 'dest_dir': str(dest_dir),
              'retries': 0, 'timeout': 10}
    params.update(extra)
    return params


def talos_params(mirror, dest_dir, **extra):
    params = {'name': 'talos', 'type': 'iso', 'url': mirror.url_for(TALOS_ISO_PATH), 'dest_dir': str(dest_dir),
              'retries': 0, 'timeout': 10}
    params.update(extra)
    return params


def sha256_file(path) -> str:
    with open(path, 'rb') as handle:
        return hashlib.file_digest(handle, 'sha256').hexdigest()


def snapshot(path):
    return open(path, 'rb').read() if os.path.exists(path) else None


def artefact_requests(mirror, path):
    return [entry for entry in mirror.log() if entry['path'].split('?')[0] == path]


def test_download_verified_by_sha256sums_then_idempotent(clean_mirror, tmp_path):
    first = run(ubuntu_params(clean_mirror, tmp_path))
    size = clean_mirror.artefacts[UBUNTU_PATH]
    assert first['changed'] is True and first['action'] == 'fetch'
    assert first['checksum_source'] == 'published'
    assert first['bytes_transferred'] == size == first['size']
    assert first['sha256'] == sha256_file(tmp_path / 'noble-server-cloudimg-amd64.img') == clean_mirror.digest(UBUNTU_PATH)
    assert not list(tmp_path.glob('*.part*')) and not list(tmp_path.glob('*.progress'))

    manifest = _manifest.load(str(tmp_path / 'manifest.json'))
    entry = manifest['ubuntu']
    assert entry['checksum_source'] == 'published' and entry['size'] == size
    assert entry['path'] == str(tmp_path / 'noble-server-cloudimg-amd64.img')
    assert manifest['schema_version'] == 1
    # Only ubuntu so far: valid as a partial manifest, and the full contract names what is missing.
    assert schema_errors(manifest, MANIFEST_SCHEMA) == [('talos', 'missing required key')]

    clean_mirror.reset()
    before = snapshot(tmp_path / 'manifest.json')
    second = run(ubuntu_params(clean_mirror, tmp_path))
    assert second['changed'] is False and second['bytes_transferred'] == 0 and second['action'] == 'none'
    assert snapshot(tmp_path / 'manifest.json') == before
    assert clean_mirror.log() == []  # not even the SHA256SUMS file was asked for

    third = run(talos_params(clean_mirror, tmp_path))
    assert third['checksum_source'] == 'first_fetch'
    complete = json.loads((tmp_path / 'manifest.json').read_text())
    assert schema_errors(complete, MANIFEST_SCHEMA) == []
    _manifest.validate_complete(complete)


def test_drop_at_half_then_next_run_resumes_only_the_rest(clean_mirror, tmp_path):
    size = clean_mirror.artefacts[UBUNTU_PATH]
    half = size // 2
    clean_mirror.fault(UBUNTU_PATH, drop_after=half)
    with pytest.raises(DownloadError) as info:
        run(ubuntu_params(clean_mirror, tmp_path))
    assert info.value.check == 'template_download'
    assert 'short body' in str(info.value) or 'connection' in str(info.value)
    assert not (tmp_path / 'noble-server-cloudimg-amd64.img').exists()
    assert (tmp_path / 'noble-server-cloudimg-amd64.img.part').stat().st_size == half
    meta = json.loads((tmp_path / 'noble-server-cloudimg-amd64.img.part.meta').read_text())
    assert meta['etag'] == clean_mirror.state()['artefacts'][UBUNTU_PATH]['etag']
    assert not (tmp_path / 'manifest.json').exists()

    result = run(ubuntu_params(clean_mirror, tmp_path))
    assert result['resumed'] is True
    assert result['bytes_transferred'] == size - half
    assert result['sha256'] == clean_mirror.digest(UBUNTU_PATH) == sha256_file(tmp_path / 'noble-server-cloudimg-amd64.img')
    ranged = [e for e in artefact_requests(clean_mirror, UBUNTU_PATH) if e['range']]
    assert ranged[-1]['range'] == f'bytes={half}-' and ranged[-1]['if_range'] == meta['etag']
    assert ranged[-1]['status'] == 206 and ranged[-1]['sent'] == size - half
    assert not list(tmp_path.glob('*.part*'))


def test_drop_is_retried_and_resumed_within_one_run(clean_mirror, tmp_path):
    size = clean_mirror.artefacts[TALOS_RAW_PATH]
    clean_mirror.fault(TALOS_RAW_PATH, drop_after=size // 3, drop_times=2)
    result = run(talos_params(clean_mirror, tmp_path, url=clean_mirror.url_for(TALOS_RAW_PATH), type='raw',
                              retries=3), sleep=no_sleep)
    assert result['resumed'] is True and result['attempts'] == 3
    assert result['bytes_transferred'] == size
    assert result['sha256'] == clean_mirror.digest(TALOS_RAW_PATH)


def test_server_ignoring_range_restarts_cleanly(clean_mirror, tmp_path):
    size = clean_mirror.artefacts[UBUNTU_PATH]
    clean_mirror.fault(UBUNTU_PATH, drop_after=size // 4)
    with pytest.raises(DownloadError):
        run(ubuntu_params(clean_mirror, tmp_path))
    clean_mirror.fault(UBUNTU_PATH, ignore_range=True)
    result = run(ubuntu_params(clean_mirror, tmp_path))
    assert result['resumed'] is False and result['restarted'] is True
    assert result['bytes_transferred'] == size
    assert result['sha256'] == clean_mirror.digest(UBUNTU_PATH)


def test_changed_upstream_etag_restarts_instead_of_splicing(clean_mirror, tmp_path):
    path = '/scratch/etag/changing.qcow2'
    clean_mirror.add(path, 3 << 20)
    clean_mirror.fault(path, drop_after=1 << 20)
    params = {'name': 'other', 'type': 'qcow2', 'url': clean_mirror.url_for(path), 'dest_dir': str(tmp_path),
              'retries': 0}
    with pytest.raises(DownloadError):
        run(dict(params))
    clean_mirror.add(path, 3 << 20)  # a new version: new bytes and ETag
    result = run(dict(params))
    assert result['restarted'] is True and result['resumed'] is False
    assert result['sha256'] == clean_mirror.digest(path)


def test_first_fetch_records_digest_and_later_runs_verify_against_it(clean_mirror, tmp_path):
    first = run(talos_params(clean_mirror, tmp_path))
    assert first['checksum_source'] == 'first_fetch'
    manifest_before = snapshot(tmp_path / 'manifest.json')
    clean_mirror.fault(TALOS_ISO_PATH, wrong_body=True)
    with pytest.raises(DownloadError) as info:
        run(talos_params(clean_mirror, tmp_path, force=True))
    message = str(info.value)
    assert message.startswith('template_checksum')
    assert first['sha256'] in message and 'first fetch' in message
    assert snapshot(tmp_path / 'manifest.json') == manifest_before
    assert sha256_file(tmp_path / 'nocloud-amd64.iso') == first['sha256']  # the good copy stays


def test_pinned_checksum(clean_mirror, tmp_path):
    digest = clean_mirror.digest(TALOS_RAW_PATH)
    result = run(talos_params(clean_mirror, tmp_path, url=clean_mirror.url_for(TALOS_RAW_PATH), type='raw',
                              checksum=f'sha256:{digest.upper()}'))
    assert result['checksum_source'] == 'pinned' and result['sha256'] == digest


def test_lost_manifest_adopts_the_verified_file_without_transfer(clean_mirror, tmp_path):
    run(ubuntu_params(clean_mirror, tmp_path))
    os.unlink(tmp_path / 'manifest.json')
    clean_mirror.reset()
    result = run(ubuntu_params(clean_mirror, tmp_path))
    assert result['action'] == 'adopt' and result['bytes_transferred'] == 0 and result['changed'] is True
    assert [e['path'] for e in clean_mirror.log()] == [f'{UBUNTU_DIR}/SHA256SUMS']


def test_tampered_file_on_disk_is_fetched_again(clean_mirror, tmp_path):
    run(ubuntu_params(clean_mirror, tmp_path))
    image = tmp_path / 'noble-server-cloudimg-amd64.img'
    with open(image, 'r+b') as handle:
        handle.seek(100)
        handle.write(b'X')
    result = run(ubuntu_params(clean_mirror, tmp_path))
    assert result['action'] == 'fetch' and 'sha256' in result['reason']
    assert sha256_file(image) == clean_mirror.digest(UBUNTU_PATH)


def test_check_mode_reports_without_fetching(clean_mirror, tmp_path):
    result = run(ubuntu_params(clean_mirror, tmp_path), check_mode=True)
    assert result['changed'] is True and result['action'] == 'fetch'
    assert 'would fetch' in result['msg'] and result['bytes_transferred'] == 0
    assert list(tmp_path.iterdir()) == [] and clean_mirror.log() == []
    run(ubuntu_params(clean_mirror, tmp_path))
    again = run(ubuntu_params(clean_mirror, tmp_path), check_mode=True)
    assert again['changed'] is False


# ------------------------------------------------------------------------------- failures
@pytest.fixture
def recorded_talos(clean_mirror, tmp_path):
    """A manifest that already records talos: failures must leave it byte for byte."""
    run(talos_params(clean_mirror, tmp_path))
    clean_mirror.reset()
    return snapshot(tmp_path / 'manifest.json')


@pytest.mark.parametrize('case', ['wrong_checksum', 'short_body', 'not_found', 'redirect_loop',
                                  'missing_sums_entry', 'server_error'])
def test_failures_are_clear_and_leave_nothing(case, clean_mirror, tmp_path, recorded_talos):
    params = ubuntu_params(clean_mirror, tmp_path)
    expected = {
        'wrong_checksum': ('template_checksum', 'sha256 mismatch: expected'),
        'short_body': ('template_download', 'short body'),
        'not_found': ('template_download', '404'),
        'redirect_loop': ('template_download', 'redirect loop'),
        'missing_sums_entry': ('template_checksum', 'noble-server-cloudimg-amd64.img is not listed'),
        'server_error': ('template_download', '503'),
    }[case]
    if case == 'wrong_checksum':
        clean_mirror.fault(UBUNTU_PATH, wrong_body=True)
    elif case == 'short_body':
        clean_mirror.fault(UBUNTU_PATH, drop_after=12345, drop_times=0)
        params['retries'] = 2
    elif case == 'not_found':
        clean_mirror.fault(UBUNTU_PATH, status=404)
    elif case == 'redirect_loop':
        clean_mirror.fault(UBUNTU_PATH, redirect_loop=True)
    elif case == 'missing_sums_entry':
        clean_mirror.fault(UBUNTU_PATH, omit_from_sums=True)
    elif case == 'server_error':
        clean_mirror.fault(UBUNTU_PATH, error_status=503, error_times=10)
        params['retries'] = 2
    with pytest.raises(DownloadError) as info:
        run(params, sleep=no_sleep)
    message = str(info.value)
    assert message.startswith(expected[0]) and expected[1] in message
    assert 'Remediation:' in message
    assert not (tmp_path / 'noble-server-cloudimg-amd64.img').exists()
    assert snapshot(tmp_path / 'manifest.json') == recorded_talos
    if case == 'wrong_checksum':
        assert clean_mirror.digest(UBUNTU_PATH) in message  # expected digest named
        actual = re.search(r'got ([0-9a-f]{64})', message)
        assert actual and actual.group(1) != clean_mirror.digest(UBUNTU_PATH)  # and the actual one
        assert not list(tmp_path.glob('noble*'))  # the bytes are discarded
    if case in ('short_body', 'server_error'):
        assert len(artefact_requests(clean_mirror, UBUNTU_PATH)) == 3  # one try and two retries


def test_self_signed_tls_is_refused_then_trusted_with_ca_path(tls_mirror, tmp_path):
    server, cert = tls_mirror
    params = {'name': 'other', 'type': 'qcow2', 'url': server.url_for('/tls/image.qcow2'), 'dest_dir': str(tmp_path),
              'retries': 2}
    with pytest.raises(DownloadError) as info:
        run(dict(params), sleep=no_sleep)
    message = str(info.value)
    assert message.startswith('template_tls') and 'ca_path' in message
    assert 'certificate' in message
    assert list(tmp_path.iterdir()) == []
    assert len(server.log()) == 0  # refused at the handshake, never retried
    result = run(dict(params, ca_path=cert))
    assert result['sha256'] == server.digest('/tls/image.qcow2')


@pytest.mark.parametrize('filename, fragment', [
    ('../escape.img', 'path separator'),
    ('a/b.img', 'path separator'),
    ('evil\n.img', 'control characters'),
    ('image name.img', 'Proxmox VE would rewrite'),
    ('.hidden.img', 'starts with'),
])
def test_unsafe_file_names_are_refused(filename, fragment, clean_mirror, tmp_path, recorded_talos):
    with pytest.raises(DownloadError) as info:
        run(ubuntu_params(clean_mirror, tmp_path, filename=filename))
    assert str(info.value).startswith('template_filename') and fragment in str(info.value)
    assert snapshot(tmp_path / 'manifest.json') == recorded_talos
    assert not (tmp_path.parent / 'escape.img').exists()
    assert artefact_requests(clean_mirror, UBUNTU_PATH) == []


def test_traversal_in_url_path_is_refused(clean_mirror, tmp_path, recorded_talos):
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(DownloadError) as info:
        run(ubuntu_params(clean_mirror, tmp_path, url=clean_mirror.url + '/ubuntu/%2e%2e'))
    assert str(info.value).startswith('template_filename')
    # Refused before the artefact is requested: nothing written in (or above) dest_dir, manifest unchanged.
    assert not [entry for entry in clean_mirror.log() if entry['path'].startswith('/ubuntu/%2e%2e')]
    assert sorted(os.listdir(tmp_path)) == before
    assert snapshot(tmp_path / 'manifest.json') == recorded_talos


@pytest.mark.parametrize('url', ['file:///etc/passwd', 'ftp://127.0.0.1/a.img', 'http://user:pw@127.0.0.1/a.img'])
def test_non_http_urls_are_refused(url, tmp_path):
    with pytest.raises(DownloadError) as info:
        run({'name': 'x', 'type': 'img', 'url': url, 'dest_dir': str(tmp_path)})
    assert str(info.value).startswith('template_url')


def test_progress_file_is_written_while_downloading(clean_mirror, tmp_path):
    path = '/scratch/progress/slow.raw'
    clean_mirror.add(path, 3 << 20)
    clean_mirror.fault(path, throttle=2 << 20)
    progress = tmp_path / 'progress.json'
    seen = []
    import threading
    import time

    def watch():
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not seen:
            if progress.exists():
                try:
                    seen.append(json.loads(progress.read_text()))
                except ValueError:
                    pass
            time.sleep(0.05)
    watcher = threading.Thread(target=watch)
    watcher.start()
    run({'name': 'other', 'type': 'raw', 'url': clean_mirror.url_for(path), 'dest_dir': str(tmp_path),
         'progress_file': str(progress)})
    watcher.join()
    assert seen and seen[0]['total'] == 3 << 20 and 0 <= seen[0]['bytes'] <= 3 << 20
    assert set(seen[0]) >= {'bytes', 'total', 'rate', 'percent'}
    assert not progress.exists()


def test_corrupt_manifest_is_refused_with_check_id(clean_mirror, tmp_path):
    (tmp_path / 'manifest.json').write_text('{"generated_at": "yesterday", "ubuntu": {}}')
    with pytest.raises(Exception) as info:
        run(ubuntu_params(clean_mirror, tmp_path))
    message = str(info.value)
    assert message.startswith('manifest_valid') and 'generated_at' in message and 'ubuntu.type' in message


def container_params(mirror, dest_dir, **extra):
    params = {'name': 'ubuntu_lxc', 'type': 'lxc', 'url': mirror.url_for(CONTAINER_TEMPLATE_PATH),
              'checksum': f'sha512:{mirror.url_for(APLINFO_PATH)}', 'dest_dir': str(dest_dir), 'retries': 0,
              'timeout': 10}
    params.update(extra)
    return params


def test_container_template_verified_by_the_appliance_index_sha512sum(clean_mirror, tmp_path):
    """The index publishes a sha512sum per template: the fetch verifies it, records it beside the
    sha256, and the file is a real zstd-compressed tar."""
    first = run(container_params(clean_mirror, tmp_path))
    published = clean_mirror.files[CONTAINER_TEMPLATE_PATH]
    path = tmp_path / 'ubuntu-24.04-standard_24.04-2_amd64.tar.zst'
    assert first['action'] == 'fetch' and first['checksum_source'] == 'published'
    assert first['artefact']['sha512'] == published['sha512'] == hashlib.sha512(path.read_bytes()).hexdigest()
    assert first['artefact']['sha256'] == sha256_file(path)
    listing = subprocess.run(['tar', '--zstd', '-tf', str(path)], capture_output=True, text=True, check=True).stdout
    assert './etc/os-release' in listing.splitlines()

    clean_mirror.reset()
    again = run(container_params(clean_mirror, tmp_path))
    assert again['changed'] is False and again['action'] == 'none' and clean_mirror.log() == []

    # A pinned SHA-512 that differs: fetched again, refused, nothing left behind.
    path.unlink()
    with pytest.raises(DownloadError) as info:
        run(container_params(clean_mirror, tmp_path, checksum='sha512:' + 'ab' * 64))
    assert info.value.check == 'template_checksum'
    assert f"sha512 mismatch: expected {'ab' * 64} (the pinned checksum), got {published['sha512']}" in str(info.value)
    assert not path.exists() and not list(tmp_path.glob('*.part*'))


def test_container_template_not_needed_without_a_container(clean_mirror, tmp_path):
    nodes = tmp_path / 'nodes.yaml'
    nodes.write_text('nodes:\n  - {name: u, role: utility, os: ubuntu, guest: vm, vmid: 100, cores: 1, memory: 512,'
                     ' disk: 1, ipv4: 10.0.0.2, groups: [base]}\n'
                     '  - {name: c, role: utility, os: ubuntu, guest: lxc, enabled: false, vmid: 101, cores: 1,'
                     ' memory: 512, disk: 1, ipv4: 10.0.0.3, groups: [base]}\n')
    result = run(container_params(clean_mirror, tmp_path / 'cache', needed_by='containers', intent_nodes_file=str(nodes)))
    assert result['changed'] is False and result['action'] == 'not_needed' and result['artefact'] is None
    assert clean_mirror.log() == [] and not (tmp_path / 'cache').exists()

    nodes.write_text(nodes.read_text().replace('enabled: false, ', ''))
    result = run(container_params(clean_mirror, tmp_path / 'cache', needed_by='containers', intent_nodes_file=str(nodes)))
    assert result['action'] == 'fetch' and result['artefact']['type'] == 'lxc'
