# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of _download's pure parts: names, URLs, checksum specs, SHA256SUMS, Content-Range."""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import ssl
import subprocess
import sys
import urllib.error

import pytest

from ansible_collections.eminfra.pipeline.plugins.module_utils import _download
from ansible_collections.eminfra.pipeline.plugins.module_utils._download import (
    DownloadError, _content_range, check_filename, check_url, classify, digest_from_sums,
    checksum_algorithm, digest_from_aplinfo, filename_from_url, parse_checksum, published_digest)
from ansible_collections.eminfra.pipeline.plugins.module_utils._templates import (
    CONTENT_FOR_TYPE, placement_spec, pve_filename)
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError
from ansible_collections.eminfra.pipeline.plugins.module_utils._state import PROJECT_ROOT_ENV

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))

HEX = 'ab' * 32
OTHER = 'cd' * 32


@pytest.mark.parametrize('name', ['noble-server-cloudimg-amd64.img', 'talos-v1.11.5-nocloud-amd64.iso',
                                  'a_b.tar.zst', 'X1'])
def test_safe_names_pass(name):
    assert check_filename(name) == name


@pytest.mark.parametrize('name, fragment', [
    ('', 'empty'), ('../x.img', 'separator'), ('a/b', 'separator'), ('a\\b', 'separator'), ('..', 'separator'),
    ('a..b', 'separator'), ('x\x00.img', 'control'), ('x\t.img', 'control'), ('x\x7f', 'control'),
    ('.x.img', 'starts with'), ('-rf.img', 'starts with'), ('image (1).img', 'would rewrite'),
    ('ümlaut.img', 'would rewrite'),
])
def test_unsafe_names_are_refused(name, fragment):
    with pytest.raises(DownloadError) as info:
        check_filename(name)
    assert info.value.check == 'template_filename' and fragment in str(info.value)
    assert 'Remediation:' in str(info.value)


def test_rewrite_suggestion_names_what_pve_would_store():
    with pytest.raises(DownloadError) as info:
        check_filename('my image.img')
    assert "'my_image.img'" in str(info.value)


@pytest.mark.parametrize('url', ['http://127.0.0.1/a.img', 'https://cloud-images.ubuntu.com/x/y.img'])
def test_http_urls_pass(url):
    assert check_url(url) == url


@pytest.mark.parametrize('url', ['file:///etc/passwd', 'ftp://h/a', 'http://', '', 'https://u:p@h/a', 'javascript:x'])
def test_other_urls_are_refused(url):
    with pytest.raises(DownloadError) as info:
        check_url(url)
    assert info.value.check == 'template_url'


def test_filename_from_url_unquotes_and_ignores_query():
    assert filename_from_url('http://h/a/b%20c.img?x=1') == 'b c.img'
    assert filename_from_url('http://h/a/') == 'a'


def test_parse_checksum_forms():
    assert parse_checksum(None) is None and parse_checksum('') is None
    assert parse_checksum(f'sha256:{HEX.upper()}') == ('pinned', HEX)
    assert parse_checksum('SHA256:http://h/SHA256SUMS') == ('published', 'http://h/SHA256SUMS')
    for bad in ('md5:abc', HEX, 'sha256:abc', 'sha256:file:///x'):
        with pytest.raises(DownloadError) as info:
            parse_checksum(bad)
        assert info.value.check == 'template_checksum'


def test_sha512_checksum_forms():
    digest = 'ab' * 64
    assert parse_checksum(f'sha512:{digest.upper()}') == ('pinned', digest)
    assert parse_checksum('SHA512:https://h/images/aplinfo-pve-9.dat') == ('published', 'https://h/images/aplinfo-pve-9.dat')
    assert checksum_algorithm('sha512:x') == 'sha512' and checksum_algorithm(f'sha256:{HEX}') == 'sha256'
    assert checksum_algorithm(None) == 'sha256'
    with pytest.raises(DownloadError) as info:
        parse_checksum(f'sha512:{HEX}')  # 64 digits are not a SHA-512 digest
    assert info.value.check == 'template_checksum'


APLINFO = """Package: debian-12-standard
Version: 12.12-1
Type: lxc
Location: system/debian-12-standard_12.12-1_amd64.tar.zst
md5sum: 0123
sha512sum: {other}
Description: Debian 12 Bookworm (standard)
 A small Debian Bookworm system including all standard packages.

Package: ubuntu-24.04-standard
Version: 24.04-2
Type: lxc
OS: ubuntu-24.04
Location: system/ubuntu-24.04-standard_24.04-2_amd64.tar.zst
md5sum: 4567
sha512sum: {digest}
Description: Ubuntu 24.04 Noble (standard)
 Location: system/not-a-field.tar.zst
"""


def test_aplinfo_gives_the_sha512sum_of_the_entry_whose_location_is_the_file():
    text = APLINFO.format(other='cd' * 64, digest='AB' * 64)
    assert digest_from_aplinfo(text, 'ubuntu-24.04-standard_24.04-2_amd64.tar.zst', 'u') == 'ab' * 64
    assert published_digest(text, 'debian-12-standard_12.12-1_amd64.tar.zst', 'u', 'sha512') == 'cd' * 64
    with pytest.raises(DownloadError) as info:
        digest_from_aplinfo(text, 'ubuntu-22.04-standard_22.04-1_amd64.tar.zst', 'https://h/aplinfo-pve-9.dat')
    assert info.value.check == 'template_checksum'
    assert 'ubuntu-22.04-standard_22.04-1_amd64.tar.zst is not listed with a sha512sum' in str(info.value)
    assert 'https://h/aplinfo-pve-9.dat' in str(info.value)
    # a continuation line of a description is no field
    with pytest.raises(DownloadError):
        digest_from_aplinfo(text, 'not-a-field.tar.zst', 'u')


def test_sha512sums_file():
    assert published_digest(f"{'ef' * 64}  a.tar.zst\n{'01' * 64} *b.tar.zst\n", 'b.tar.zst', 'u', 'sha512') == '01' * 64


def test_sums_gnu_binary_text_bsd_and_dot_slash():
    text = (f'# comment\n{OTHER} *other.img\n{HEX} *noble.img\n'
            f'{OTHER}  text.img\nSHA256 (bsd.img) = {HEX.upper()}\n{HEX}  ./dotted.img\n')
    assert digest_from_sums(text, 'noble.img', 'u') == HEX
    assert digest_from_sums(text, 'text.img', 'u') == OTHER
    assert digest_from_sums(text, 'bsd.img', 'u') == HEX
    assert digest_from_sums(text, 'dotted.img', 'u') == HEX


def test_sums_missing_and_conflicting_entries():
    with pytest.raises(DownloadError) as info:
        digest_from_sums(f'{HEX} *a.img\n', 'b.img', 'http://h/SHA256SUMS')
    assert 'b.img is not listed' in str(info.value) and 'http://h/SHA256SUMS' in str(info.value)
    with pytest.raises(DownloadError) as info:
        digest_from_sums(f'{HEX} *a.img\n{OTHER} *a.img\n', 'a.img', 'u')
    assert '2 different digests' in str(info.value)
    # A name that only ends like the wanted one is not it.
    with pytest.raises(DownloadError):
        digest_from_sums(f'{HEX} *xa.img\n', 'a.img', 'u')


def test_content_range():
    assert _content_range('bytes 10-19/100') == (10, 19, 100)
    assert _content_range('bytes 0-0/*') == (0, 0, None)
    assert _content_range('items 1-2/3') is None and _content_range(None) is None


def test_pve_filename_per_content(tmp_path):
    qcow = tmp_path / 'noble.img'
    qcow.write_bytes(b'QFI\xfb' + bytes(60))
    raw = tmp_path / 'disk.img'
    raw.write_bytes(bytes(64))
    assert pve_filename({'filename': 'noble.img', 'path': str(qcow)}, 'import', None) == 'noble.qcow2'
    assert pve_filename({'filename': 'disk.img', 'path': str(raw)}, 'import', None) == 'disk.raw'
    assert pve_filename({'filename': 'noble.img', 'path': str(qcow)}, 'iso', None) == 'noble.img'
    assert pve_filename({'filename': 't.iso', 'path': ''}, 'iso', None) == 't.iso'
    assert pve_filename({'filename': 'x', 'path': ''}, 'vztmpl', 'ct.tar.zst') == 'ct.tar.zst'
    for entry, content in (({'filename': 't.raw.xz', 'path': ''}, 'import'), ({'filename': 't.qcow2', 'path': ''}, 'iso'),
                           ({'filename': 't.img', 'path': ''}, 'vztmpl')):
        with pytest.raises(DownloadError) as info:
            pve_filename(entry, content, None)
        assert info.value.check == 'template_placement'


def test_classify_transport_errors():
    url = 'http://127.0.0.1:1/a.img'
    refused = classify(urllib.error.URLError(ConnectionRefusedError(111, 'refused')), url, True, None)
    assert refused.retryable and refused.check == 'template_download'
    not_found = classify(urllib.error.HTTPError(url, 404, 'Not Found', {}, None), url, True, None)
    assert not not_found.retryable and '404' in str(not_found)
    unavailable = classify(urllib.error.HTTPError(url, 503, 'Unavailable', {}, None), url, True, None)
    assert unavailable.retryable
    loop = classify(urllib.error.HTTPError(url, 302, 'redirect error that would lead to an infinite loop', {}, None),
                    url, True, None)
    assert 'redirect loop' in str(loop) and not loop.retryable
    tls = classify(urllib.error.URLError(ssl.SSLCertVerificationError(1, 'self-signed certificate')), url, True, None)
    assert tls.check == 'template_tls' and not tls.retryable
    dns = classify(urllib.error.URLError(socket.gaierror(-2, 'Name or service not known')), url, True, None)
    assert 'does not resolve' in str(dns) and not dns.retryable
    timeout = classify(socket.timeout('timed out'), url, True, None)
    assert timeout.retryable


def _write_through_pipeline(path, chunks, offset=0, direct=False):
    """Feed ``chunks`` through the hash-and-write pipeline as the reader would; return the digest."""
    digest = hashlib.sha256()
    if direct:
        fd, direct = _download._open_part(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, offset)
    else:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        pipeline = _download._Pipeline(fd, digest, offset, direct)
        for chunk in chunks:
            index = pipeline.take()
            pipeline.buffers[index][:len(chunk)] = chunk
            pipeline.submit(index, len(chunk))
        pipeline.close()
        os.fsync(fd)
    finally:
        os.close(fd)
    return pipeline, digest.hexdigest()


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='sync_file_range is Linux only')
def test_writeback_queues_each_window_and_drops_older_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(_download, 'WRITEBACK_WINDOW', 3 << 20)
    real = _download._sync_file_range()
    assert real is not None
    calls, dropped = [], []

    def recording(fd, offset, length, flags):
        calls.append((offset, length, flags))
        return real(fd, offset, length, flags)

    real_fadvise = os.posix_fadvise

    def fadvise(fd, offset, length, advice):
        dropped.append((offset, length, advice))
        real_fadvise(fd, offset, length, advice)

    monkeypatch.setattr(_download, '_SYNC_FILE_RANGE', [recording])
    monkeypatch.setattr(_download.os, 'posix_fadvise', fadvise)
    path = tmp_path / 'image.part'
    path.write_bytes(b'x' * 100)  # a resumed download appends after the bytes it has
    chunks = [bytes([n]) * (1 << 20) for n in range(10)]
    dummy, digest = _write_through_pipeline(str(path), chunks, offset=100)
    assert path.read_bytes() == b'x' * 100 + b''.join(chunks)
    assert digest == hashlib.sha256(b''.join(chunks)).hexdigest()
    # Windows of 3 MiB from the resume offset on, queued for writing only (no wait flags).
    window = 3 << 20
    assert calls == [(100 + n * window, window, _download.SYNC_FILE_RANGE_WRITE) for n in range(3)]
    assert dropped == [(100, window, os.POSIX_FADV_DONTNEED)]


def test_writeback_failure_leaves_the_download_intact(tmp_path, monkeypatch):
    monkeypatch.setattr(_download, 'WRITEBACK_WINDOW', 1 << 20)
    calls = []

    def failing(fd, offset, length, flags):
        calls.append(offset)
        return -1

    monkeypatch.setattr(_download, '_SYNC_FILE_RANGE', [failing])
    path = tmp_path / 'image.part'
    chunks = [bytes([n]) * (1 << 20) for n in range(4)]
    pipeline, digest = _write_through_pipeline(str(path), chunks)
    assert calls == [0] and pipeline.writeback.func is None
    assert path.read_bytes() == b''.join(chunks)
    assert digest == hashlib.sha256(b''.join(chunks)).hexdigest()


def test_direct_writes_then_buffered_tail(tmp_path, monkeypatch):
    monkeypatch.setattr(_download, 'WRITEBACK_WINDOW', 1 << 20)
    path = str(tmp_path / 'image.part')
    chunks = [bytes([n]) * (1 << 20) for n in range(3)] + [b'tail' * 1000, b'z' * 4096]
    pipeline, digest = _write_through_pipeline(path, chunks, direct=True)
    with open(path, 'rb') as handle:
        assert handle.read() == b''.join(chunks)
    assert digest == hashlib.sha256(b''.join(chunks)).hexdigest()
    # Whether or not this file system takes O_DIRECT, the unaligned tail ends it.
    assert not pipeline.direct and pipeline.writeback is not None
    assert pipeline.offset == sum(len(chunk) for chunk in chunks)


def test_open_part_refuses_direct_at_an_unaligned_resume_offset(tmp_path):
    path = str(tmp_path / 'image.part')
    fd, direct = _download._open_part(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 4097)
    os.close(fd)
    assert direct is False


def test_direct_write_refused_falls_back_to_the_page_cache(tmp_path, monkeypatch):
    probe = str(tmp_path / 'probe')
    fd, direct = _download._open_part(probe, os.O_WRONLY | os.O_CREAT, 0)
    os.close(fd)
    if not direct:
        pytest.skip('this file system does not take O_DIRECT')
    real_write = os.write
    refused = []

    def write(fd, data):
        if not refused:
            refused.append(len(data))
            raise OSError(errno.EINVAL, 'Invalid argument')
        return real_write(fd, data)

    monkeypatch.setattr(_download.os, 'write', write)
    path = str(tmp_path / 'image.part')
    chunks = [bytes([n]) * (1 << 20) for n in range(3)]
    pipeline, digest = _write_through_pipeline(path, chunks, direct=True)
    assert refused == [1 << 20] and not pipeline.direct
    with open(path, 'rb') as handle:
        assert handle.read() == b''.join(chunks)
    assert digest == hashlib.sha256(b''.join(chunks)).hexdigest()


def test_placement_without_a_storage_takes_the_intents_template_storage(monkeypatch):
    monkeypatch.setenv(PROJECT_ROOT_ENV, ROOT)
    assert placement_spec({'proxmox': None}) is None
    spec = placement_spec({'proxmox': {'storage': None, 'intent_file': None, 'method': 'auto'}})
    assert spec['storage'] == 'local'  # inventory/dev/cluster.yaml: cluster.proxmox.template_storage
    assert spec['storage_from'] == 'inventory/dev/cluster.yaml: cluster.proxmox.template_storage'
    assert spec['method'] == 'auto'
    named = placement_spec({'proxmox': {'storage': 'tank', 'intent_file': '/no/such/file.yaml'}})
    assert named['storage'] == 'tank' and named['storage_from'] == 'proxmox.storage'  # the intent is not read


def test_placement_reads_the_named_intent_and_refuses_a_missing_or_broken_one(tmp_path, monkeypatch):
    monkeypatch.setenv(PROJECT_ROOT_ENV, str(tmp_path))
    with open(os.path.join(ROOT, 'inventory', 'dev', 'cluster.yaml'), encoding='utf-8') as handle:
        text = handle.read()
    (tmp_path / 'other.yaml').write_text(text.replace('template_storage: local', 'template_storage: images-nfs'))
    spec = placement_spec({'proxmox': {'intent_file': 'other.yaml'}})  # relative: from the project root
    assert spec['storage'] == 'images-nfs' and spec['storage_from'] == 'other.yaml: cluster.proxmox.template_storage'
    with pytest.raises(CheckError) as info:
        placement_spec({'proxmox': {}})  # inventory/dev/cluster.yaml does not exist under this root
    assert info.value.check == 'intent_valid' and 'does not exist' in str(info.value)
    assert 'templates_proxmox_storage' in str(info.value)
    (tmp_path / 'broken.yaml').write_text(text.replace('    template_storage: local\n', ''))
    with pytest.raises(CheckError) as info:
        placement_spec({'proxmox': {'intent_file': 'broken.yaml'}})
    assert info.value.check == 'intent_valid' and 'template_storage' in str(info.value)


def test_disk_image_types_are_placed_as_import_content():
    # Terraform creates the VM disks with import-from the placed volume: import or images only.
    for kind in ('vm', 'qcow2', 'img', 'raw'):
        assert CONTENT_FOR_TYPE[kind] == 'import'
    assert CONTENT_FOR_TYPE['iso'] == 'iso'


def test_a_download_has_one_writer(tmp_path):
    """A second writer of the same artefact waits for the first, then fails naming its pid."""
    dest = str(tmp_path / 'ubuntu.img')
    code = ('import fcntl, os, sys, time; fd = os.open(sys.argv[1] + ".part.lock", os.O_RDWR | os.O_CREAT); '
            'fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode()); print(1, flush=True); time.sleep(60)')
    holder = subprocess.Popen([sys.executable, '-c', code, dest], stdout=subprocess.PIPE)
    try:
        holder.stdout.readline()
        with pytest.raises(_download.DownloadError) as err:
            with _download.writer_lock(dest, wait=0.3):
                pass
        assert err.value.check == 'template_download' and f'pid {holder.pid}' in str(err.value)
        assert f'{dest}.part' in str(err.value)
    finally:
        holder.kill()
        holder.wait()
    with _download.writer_lock(dest, wait=0.3):  # the holder is gone: the flock went with it
        assert open(f'{dest}.part.lock', encoding='ascii').read().strip() == str(os.getpid())
    assert not os.path.exists(f'{dest}.part.lock')  # nothing is left behind
