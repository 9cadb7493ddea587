# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Verified, resumable artefact downloads: the templates step's HTTP transport.

This is a private module_utils file of eminfra.pipeline; its API may change at any time.

The step itself (what to fetch, the manifest, placement on Proxmox storage) is ``_templates``;
this file knows URLs, checksum specs, bytes and files only.

``fetch()`` streams a URL into ``<dest>.part`` and hashes it in the same pass: the socket is
read into 1 MiB buffers by the calling thread while one thread hashes and another writes, so
the slowest of network, SHA-256 and disk sets the pace instead of their sum. The writes go to
the disk as they come (O_DIRECT where the file system takes it, else early writeback), so the
fsync that must precede recording the file is short. A broken
connection keeps the ``.part`` file; the next attempt (or the next run) asks for the rest with
``Range`` guarded by ``If-Range`` (the ETag or Last-Modified kept in ``<dest>.part.meta``), and
starts again cleanly when the server answers 200 instead of 206. Connection errors and 5xx
answers are retried with exponential backoff; 4xx answers, TLS failures and redirect loops are
not. Nothing is moved into place here: ``finish()`` does that only when the digest matches,
and ``discard()`` removes the bytes when it does not.

Only the standard library is used (urllib over http.client): it honours the operator's proxy
environment, and with large ``readinto`` calls it moves GiB files at the speed of the disk.
"""

from __future__ import annotations

import errno
import fcntl
import json
import mmap
import os
import queue
import re
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import hashlib
from dataclasses import asdict, dataclass, field
from http import client as http_client

from ansible_collections.eminfra.pipeline.plugins.module_utils._atomic import atomic_write, fsync_dir, update_digest
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError

CHUNK = 1 << 20
PIPELINE_BUFFERS = 8
# Writeback of the file is started every WRITEBACK_WINDOW bytes, so that the final fsync finds
# little left to write.
WRITEBACK_WINDOW = 8 << 20
# Windows this far behind the newest are dropped from the page cache (written back by then).
WRITEBACK_LAG = 2
SYNC_FILE_RANGE_WRITE = 2
# O_DIRECT writes need buffers, lengths and file offsets aligned to the device's block size.
DIRECT_ALIGN = 4096
MAX_REDIRECTS = 10
PROGRESS_INTERVAL = 0.5
USER_AGENT = 'eminfra.pipeline-template_fetch/1'
SHA256_RE = re.compile(r'^[0-9a-fA-F]{64}$')
SHA512_RE = re.compile(r'^[0-9a-fA-F]{128}$')
_DIGEST_RE = {'sha256': SHA256_RE, 'sha512': SHA512_RE}
# PVE renames upload/download targets with s/[^a-zA-Z0-9_.-]/_/g: only names it keeps are safe.
SAFE_NAME_RE = re.compile(r'^[A-Za-z0-9_.-]+$')
_GNU_LINE = re.compile(r'^([0-9a-fA-F]{64}) ([ *])(.+)$')
_BSD_LINE = re.compile(r'^SHA256 \((.+)\) = ([0-9a-fA-F]{64})$')


class DownloadError(CheckError):
    """A failed fetch; ``retryable`` marks transport failures worth another attempt."""

    def __init__(self, check: str, detail: str, where: str | None = None,
                 remediation: str | None = None, retryable: bool = False) -> None:
        super().__init__(check, detail, where=where, remediation=remediation)
        self.retryable = retryable


# ---------------------------------------------------------------------------------- validation
def check_filename(name: str, where: str = 'filename') -> str:
    """Refuse names that could leave the directory or that Proxmox would rewrite."""
    if not name:
        raise DownloadError('template_filename', 'the file name is empty', where=where,
                            remediation='set filename to a plain name such as noble-server-cloudimg-amd64.img')
    if '/' in name or '\\' in name or name in ('.', '..') or '..' in name:
        raise DownloadError('template_filename', f'{name!r} contains a path separator or ".."', where=where,
                            remediation='set filename to a plain file name; the directory is dest_dir')
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise DownloadError('template_filename', f'{name!r} contains control characters', where=where,
                            remediation='set filename to letters, digits, ".", "_" and "-" only')
    if name.startswith(('.', '-')):
        raise DownloadError('template_filename', f'{name!r} starts with "{name[0]}"', where=where,
                            remediation='set filename to a name that starts with a letter or digit')
    if not SAFE_NAME_RE.match(name):
        rewritten = re.sub(r'[^a-zA-Z0-9_.-]', '_', name)
        raise DownloadError('template_filename', f'{name!r} has characters Proxmox VE would rewrite '
                            f'(it would store it as {rewritten!r})', where=where,
                            remediation=f'set filename to {rewritten!r} or another name of letters, digits, '
                            '".", "_" and "-"')
    return name


def check_url(url: str, where: str = 'url') -> str:
    parts = urllib.parse.urlsplit(url or '')
    if parts.scheme not in ('http', 'https') or not parts.netloc:
        raise DownloadError('template_url', f'{url!r} is not an http(s) URL', where=where,
                            remediation='give an http:// or https:// URL of the image')
    if parts.username or parts.password:
        raise DownloadError('template_url', 'the URL carries credentials', where=where,
                            remediation='remove user:password@ from the URL; artefact sources are public')
    return url


def filename_from_url(url: str) -> str:
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    return path.rstrip('/').rsplit('/', 1)[-1]


def checksum_algorithm(spec: str | None) -> str:
    """The digest a checksum spec names: ``sha256`` (also without a spec) or ``sha512``."""
    algo = (spec or '').partition(':')[0].lower()
    return algo if algo in _DIGEST_RE else 'sha256'


def parse_checksum(spec: str | None) -> tuple[str, str] | None:
    """``sha256:HEX`` -> ('pinned', hex); ``sha256:URL`` -> ('published', url); None -> None.

    ``sha512:`` works the same way (``checksum_algorithm`` tells which); its URL may also be a
    Proxmox VE appliance index (``aplinfo*.dat``), which publishes a ``sha512sum`` per template.
    """
    if not spec:
        return None
    algo, sep, value = spec.partition(':')
    if not sep or algo.lower() not in _DIGEST_RE:
        raise DownloadError('template_checksum', f'{spec!r} is not sha256:HEX or sha256:URL', where='checksum',
                            remediation='write sha256:<64 hex digits> or sha256:https://.../SHA256SUMS '
                            '(sha512: takes 128 hex digits, a SHA512SUMS file or an appliance index aplinfo.dat)')
    value = value.strip()
    if _DIGEST_RE[algo.lower()].match(value):
        return 'pinned', value.lower()
    if value.startswith(('http://', 'https://')):
        check_url(value, where='checksum')
        return 'published', value
    raise DownloadError('template_checksum', f'{value[:80]!r} is neither 64 hex digits nor an http(s) URL',
                        where='checksum', remediation='write sha256:<64 hex digits> or sha256:https://.../SHA256SUMS')


def digest_from_sums(text: str, filename: str, source: str) -> str:
    """The digest of ``filename`` in a SHA256SUMS file (GNU text/binary or BSD lines)."""
    found: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith('#'):
            continue
        match = _GNU_LINE.match(line)
        if match:
            name = match.group(3)
            if name.startswith('./'):
                name = name[2:]
            if name == filename:
                found.append(match.group(1).lower())
            continue
        match = _BSD_LINE.match(line)
        if match and match.group(1) == filename:
            found.append(match.group(2).lower())
    return _one_digest(found, filename, source, 'sha256', 'is not listed',
                       'check that the checksum URL belongs to the same release directory as the image URL, or ')


def digest_from_aplinfo(text: str, filename: str, source: str) -> str:
    """The ``sha512sum`` of the template ``filename`` in a Proxmox VE appliance index.

    The index (``aplinfo.dat``, ``aplinfo-pve-9.dat``) is a list of stanzas of ``Key: value``
    lines separated by blank lines; a template's stanza names its file in ``Location`` (relative
    to the index) and publishes ``md5sum`` and ``sha512sum``.
    """
    found: list[str] = []
    for stanza in re.split(r'\n\s*\n', text.replace('\r\n', '\n')):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] in (' ', '\t') or ':' not in line:
                continue
            key, dummy, value = line.partition(':')
            fields[key.strip().lower()] = value.strip()
        if fields.get('location', '').rsplit('/', 1)[-1] == filename and 'sha512sum' in fields:
            found.append(fields['sha512sum'].lower())
    found = [digest for digest in found if SHA512_RE.match(digest)]
    return _one_digest(found, filename, source, 'sha512', 'is not listed with a sha512sum',
                       'check that the template URL is the Location of an entry of this appliance index '
                       '(same version), or ')


def published_digest(text: str, filename: str, source: str, algo: str = 'sha256') -> str:
    """The digest of ``filename`` in a published checksum file of the given algorithm."""
    if algo == 'sha256':
        return digest_from_sums(text, filename, source)
    if re.search(r'^sha512sum:', text, re.IGNORECASE | re.MULTILINE):
        return digest_from_aplinfo(text, filename, source)
    found = []
    for raw in text.splitlines():
        parts = raw.strip().split(None, 1)
        if len(parts) == 2 and SHA512_RE.match(parts[0]) and parts[1].lstrip('*').removeprefix('./') == filename:
            found.append(parts[0].lower())
    return _one_digest(found, filename, source, 'sha512', 'is not listed', '')


def _one_digest(found: list[str], filename: str, source: str, algo: str, missing: str, hint: str) -> str:
    """The one digest a checksum file lists for ``filename``: none or several different ones are refused."""
    if not found:
        raise DownloadError('template_checksum', f'{filename} {missing}', where=source,
                            remediation=f'{hint}pin the digest with checksum: {algo}:<hex>')
    if len(set(found)) > 1:
        raise DownloadError('template_checksum', f'{filename} is listed with {len(set(found))} different digests',
                            where=source, remediation=f'pin the digest with checksum: {algo}:<hex>')
    return found[0]


# ---------------------------------------------------------------------------------- transport
def _ssl_context(validate_certs: bool, ca_path: str | None) -> ssl.SSLContext:
    if not validate_certs:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=ca_path) if ca_path else ssl.create_default_context()


class _Redirects(urllib.request.HTTPRedirectHandler):
    max_redirections = MAX_REDIRECTS
    max_repeats = 3


def build_opener(validate_certs: bool = True, ca_path: str | None = None) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.HTTPSHandler(context=_ssl_context(validate_certs, ca_path)),
                                       _Redirects())


def _is_tls_error(exc: BaseException) -> ssl.SSLError | None:
    seen = set()
    item: BaseException | None = exc
    while item is not None and id(item) not in seen:
        seen.add(id(item))
        if isinstance(item, ssl.SSLError):
            return item
        item = getattr(item, 'reason', None) if isinstance(getattr(item, 'reason', None), BaseException) \
            else (item.__cause__ or item.__context__)
    return None


def classify(exc: BaseException, url: str, validate_certs: bool, ca_path: str | None) -> DownloadError:
    """A transport exception as an operator-facing DownloadError."""
    where = f'GET {url}'
    if isinstance(exc, DownloadError):
        return exc
    if isinstance(exc, urllib.error.HTTPError):
        code = exc.code
        if 300 <= code < 400:
            return DownloadError('template_download', f'too many redirects or a redirect loop ({code}: {exc.reason})',
                                 where=where, remediation='open the URL in a browser or with `curl -IL`; point url at '
                                 'the final location of the file')
        if code >= 500:
            return DownloadError('template_download', f'the server answered {code} {exc.reason}', where=where,
                                 remediation='the mirror is failing; retry later or use another mirror', retryable=True)
        return DownloadError('template_download', f'the server answered {code} {exc.reason}', where=where,
                             remediation='check the URL (release directory, version, file name); '
                             'dated release directories are removed upstream after a while')
    tls = _is_tls_error(exc)
    if tls is not None:
        reason = getattr(tls, 'verify_message', None) or getattr(tls, 'reason', None) or str(tls)
        return DownloadError('template_tls', f'TLS verification failed ({reason})', where=where,
                             remediation=('give ca_path the PEM of the CA that signed the server certificate'
                                          if not ca_path else f'{ca_path} does not vouch for this certificate; '
                                          'give ca_path the right CA') + ', or set validate_certs: false only for '
                             'a mirror you trust (the checksum still guards the content)')
    if isinstance(exc, (socket.timeout, TimeoutError)) or isinstance(getattr(exc, 'reason', None), socket.timeout):
        return DownloadError('template_download', 'no data within the timeout', where=where,
                             remediation='check the network path to the mirror or raise timeout', retryable=True)
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, socket.gaierror):
        return DownloadError('template_download', f'the host name does not resolve ({exc.reason})', where=where,
                             remediation='fix the host name in the URL or the DNS of this machine')
    if isinstance(exc, (urllib.error.URLError, OSError, http_client.HTTPException)):
        reason = getattr(exc, 'reason', None) or exc
        return DownloadError('template_download', f'connection failed ({type(exc).__name__}: {reason})', where=where,
                             remediation='check the network path to the mirror; the next run resumes the download',
                             retryable=True)
    return DownloadError('template_download', f'unexpected {type(exc).__name__}: {exc}', where=where,
                         remediation='retry; report the error if it persists')


def fetch_text(url: str, timeout: float = 30.0, validate_certs: bool = True, ca_path: str | None = None,
               retries: int = 3, backoff: float = 1.0, sleep=time.sleep, limit: int = 4 << 20) -> str:
    """A small text resource (a SHA256SUMS file), with retries on transport errors."""
    opener = build_opener(validate_certs, ca_path)
    attempt = 0
    while True:
        attempt += 1
        try:
            request = urllib.request.Request(url, headers={'User-Agent': USER_AGENT})
            with opener.open(request, timeout=timeout) as response:
                data = response.read(limit + 1)
            if len(data) > limit:
                raise DownloadError('template_checksum', f'the checksum file is larger than {limit} bytes',
                                    where=url, remediation='point checksum at a SHA256SUMS file')
            return data.decode('utf-8', errors='replace')
        except Exception as exc:  # noqa: BLE001 - classified
            error = classify(exc, url, validate_certs, ca_path)
        if not error.retryable or attempt > retries:
            raise error
        sleep(min(30.0, backoff * 2 ** (attempt - 1)))


# ---------------------------------------------------------------------------------- streaming
@dataclass
class FetchResult:
    path: str
    sha256: str
    size: int
    bytes_transferred: int = 0
    resumed: bool = False
    restarted: bool = False
    attempts: int = 0
    elapsed: float = 0.0
    etag: str | None = None
    events: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


_SYNC_FILE_RANGE: list = []


def _sync_file_range():
    """Linux ``sync_file_range(2)`` through ctypes (the os module lacks it), or None elsewhere."""
    if not _SYNC_FILE_RANGE:
        func = None
        if sys.platform.startswith('linux'):
            try:
                import ctypes  # pylint: disable=import-outside-toplevel
                func = ctypes.CDLL(None, use_errno=True).sync_file_range
                func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
                func.restype = ctypes.c_int
            except (ImportError, OSError, AttributeError):
                func = None
        _SYNC_FILE_RANGE.append(func)
    return _SYNC_FILE_RANGE[0]


class _Writeback:
    """Write the file back window by window while the download goes on, and keep it out of the cache.

    Left alone, the kernel keeps a GiB of dirty pages until the final fsync, which then writes
    them all while nothing else happens, and the download fills the page cache with a file
    nobody reads again (the digest is computed on the way in). So each completed window of
    WRITEBACK_WINDOW bytes is queued for writing with ``sync_file_range(SYNC_FILE_RANGE_WRITE)``,
    and the window WRITEBACK_LAG steps older, written by then, is dropped from the cache with
    ``posix_fadvise(POSIX_FADV_DONTNEED)``. Neither call waits for the disk or collects write
    errors (the WAIT flags of sync_file_range would consume an error that fsync must report),
    so the fsync before the file may be recorded still sees every error and stays the one
    guarantee of durability. Where sync_file_range is missing or either call fails this does
    nothing.
    """

    def __init__(self, fd: int, offset: int) -> None:
        self.fd = fd
        self.start = offset
        self.end = offset
        self.windows: list[tuple[int, int]] = []
        self.func = _sync_file_range()

    def wrote(self, count: int) -> None:
        self.end += count
        if self.func is None or self.end - self.start < WRITEBACK_WINDOW:
            return
        window = (self.start, self.end - self.start)
        self.start = self.end
        try:
            if self.func(self.fd, window[0], window[1], SYNC_FILE_RANGE_WRITE) != 0:
                raise OSError('sync_file_range failed')
            self.windows.append(window)
            if len(self.windows) > WRITEBACK_LAG:
                offset, length = self.windows.pop(0)
                os.posix_fadvise(self.fd, offset, length, os.POSIX_FADV_DONTNEED)
        except (OSError, AttributeError):
            self.func = None


def _open_part(part: str, mode: int, offset: int) -> tuple[int, bool]:
    """Open the ``.part`` file with O_DIRECT where the file system allows it; return (fd, direct).

    Direct writes go from the (page-aligned) buffers to the disk without a copy into the page
    cache and without the kernel's writeback work, which on a busy machine is CPU the download
    does not have to spend; they still need the fsync for the file's size and the disk's cache.
    """
    flags = mode | getattr(os, 'O_CLOEXEC', 0)
    direct = getattr(os, 'O_DIRECT', 0)
    if direct and offset % DIRECT_ALIGN == 0:
        try:
            return os.open(part, flags | direct, 0o644), True
        except OSError:
            pass  # e.g. EINVAL: the file system does not support it
    return os.open(part, flags, 0o644), False


class _Pipeline:
    """Hash and write the buffers the reader fills, each in its own thread, in order.

    With ``direct`` the file was opened with O_DIRECT: full buffers at aligned offsets are
    written directly; the first write that is not aligned (the tail of the file, a short read)
    turns O_DIRECT off and the rest goes through the page cache with ``_Writeback``.
    """

    def __init__(self, fd: int, digest, offset: int = 0, direct: bool = False) -> None:
        self.fd = fd
        self.digest = digest
        self.offset = offset
        self.direct = direct
        self.writeback = None if direct else _Writeback(fd, offset)
        # Anonymous maps are page-aligned, as O_DIRECT wants.
        self.buffers = [mmap.mmap(-1, CHUNK) for dummy in range(PIPELINE_BUFFERS)]
        self.free: queue.Queue = queue.Queue()
        for index in range(PIPELINE_BUFFERS):
            self.free.put(index)
        self.pending = [0] * PIPELINE_BUFFERS
        self.lock = threading.Lock()
        self.hash_q: queue.Queue = queue.Queue()
        self.write_q: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.threads = [threading.Thread(target=self._run, args=(self.hash_q, self._hash), daemon=True),
                        threading.Thread(target=self._run, args=(self.write_q, self._write), daemon=True)]
        for thread in self.threads:
            thread.start()

    def _hash(self, view: memoryview) -> None:
        self.digest.update(view)

    def _buffered(self) -> None:
        fcntl.fcntl(self.fd, fcntl.F_SETFL, fcntl.fcntl(self.fd, fcntl.F_GETFL) & ~os.O_DIRECT)
        self.direct = False
        self.writeback = _Writeback(self.fd, self.offset)

    def _write(self, view: memoryview) -> None:
        # A buffer returns to the reader only after this write (and its hash) are done, so a
        # direct write never sees its buffer change under it.
        while view:
            if self.direct and (len(view) % DIRECT_ALIGN or self.offset % DIRECT_ALIGN):
                self._buffered()
            try:
                written = os.write(self.fd, view)
            except OSError as exc:
                if not self.direct or exc.errno != errno.EINVAL:
                    raise
                # Some file systems open with O_DIRECT and refuse the write: go through the cache.
                self._buffered()
                continue
            self.offset += written
            if self.writeback is not None:
                self.writeback.wrote(written)
            view = view[written:]

    def _run(self, work_q: queue.Queue, work) -> None:
        while True:
            item = work_q.get()
            if item is None:
                return
            index, length = item
            try:
                if self.error is None:
                    work(memoryview(self.buffers[index])[:length])
            except BaseException as exc:  # noqa: BLE001 - handed to the reader
                self.error = exc
            with self.lock:
                self.pending[index] -= 1
                done = self.pending[index] == 0
            if done:
                self.free.put(index)

    def take(self) -> int:
        if self.error is not None:
            raise self.error
        return self.free.get()

    def submit(self, index: int, length: int) -> None:
        if length == 0:
            self.free.put(index)
            return
        with self.lock:
            self.pending[index] = 2
        self.hash_q.put((index, length))
        self.write_q.put((index, length))

    def close(self) -> None:
        self.hash_q.put(None)
        self.write_q.put(None)
        for thread in self.threads:
            thread.join()
        if self.error is not None:
            raise self.error


class Progress:
    """Writes ``{bytes, total, rate, ...}`` JSON to a file at most twice a second."""

    def __init__(self, path: str | None, url: str, clock=time.monotonic) -> None:
        self.path = path
        self.url = url
        self.clock = clock
        self.started = clock()
        self.last = 0.0
        self.base = 0

    def update(self, done: int, total: int | None, force: bool = False, state: str = 'downloading') -> None:
        if not self.path:
            return
        now = self.clock()
        if not force and now - self.last < PROGRESS_INTERVAL:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-6)
        rate = int((done - self.base) / elapsed)
        data = {'bytes': done, 'total': total, 'rate': rate, 'url': self.url, 'state': state,
                'percent': round(100.0 * done / total, 1) if total else None,
                'elapsed': round(elapsed, 1)}
        try:
            atomic_write(self.path, json.dumps(data, sort_keys=True) + '\n', mode=0o644)
        except OSError:
            pass  # progress is for the operator's eyes; never fail a download over it

    def remove(self) -> None:
        if self.path:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def _read_meta(path: str) -> dict:
    try:
        with open(path, encoding='utf-8') as handle:
            data = json.load(handle)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def part_paths(dest: str) -> tuple[str, str]:
    return f'{dest}.part', f'{dest}.part.meta'


def discard(dest: str) -> None:
    """Remove the partial download and its sidecar."""
    for path in part_paths(dest):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _content_range(value: str | None) -> tuple[int, int, int | None] | None:
    match = re.match(r'^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$', value or '')
    if not match:
        return None
    total = None if match.group(3) == '*' else int(match.group(3))
    return int(match.group(1)), int(match.group(2)), total


def fetch(url: str, dest: str, *, timeout: float = 30.0, retries: int = 3, backoff: float = 1.0,
          validate_certs: bool = True, ca_path: str | None = None, progress_path: str | None = None,
          expected_size: int | None = None, sleep=time.sleep, clock=time.monotonic,
          durable: bool = True) -> FetchResult:
    """Download ``url`` into ``<dest>.part`` (resuming it when possible); return digest and size.

    The caller checks the digest and then calls ``finish()`` (move into place) or ``discard()``.
    ``durable`` fsyncs the bytes before returning: the manifest may record the file only once its
    content is on disk, or a crash could leave a recorded file of the right size with other
    bytes, which the size-and-mtime presence check would trust. (The benchmark turns it off
    to measure the transfer alone.)
    """
    part, meta_path = part_paths(dest)
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    opener = build_opener(validate_certs, ca_path)
    progress = Progress(progress_path, url, clock)
    began = clock()
    result = FetchResult(path=dest, sha256='', size=0)
    attempt = 0
    while True:
        attempt += 1
        result.attempts = attempt
        try:
            _attempt(opener, url, part, meta_path, result, timeout, progress, expected_size, durable)
            break
        except Exception as exc:  # noqa: BLE001 - classified below
            error = classify(exc, url, validate_certs, ca_path)
            result.events.append(f'attempt {attempt}: {error.detail}')
        if not error.retryable or attempt > retries:
            progress.remove()
            if not error.retryable:
                # A definite answer (404, TLS, loop): the partial bytes are of no further use.
                discard(dest)
            raise error
        sleep(min(30.0, backoff * 2 ** (attempt - 1)))
    result.elapsed = round(clock() - began, 3)
    progress.update(result.size, result.size, force=True, state='verifying')
    return result


def _attempt(opener, url: str, part: str, meta_path: str, result: FetchResult, timeout: float,
             progress: Progress, expected_size: int | None, durable: bool = True) -> None:
    meta = _read_meta(meta_path)
    have = 0
    if os.path.exists(part):
        validator = meta.get('etag') or meta.get('last_modified')
        if meta.get('url') == url and validator:
            have = os.path.getsize(part)
        else:
            discard(part[:-len('.part')])
            meta = {}
    headers = {'User-Agent': USER_AGENT, 'Accept-Encoding': 'identity'}
    if have:
        headers['Range'] = f'bytes={have}-'
        etag = meta.get('etag')
        headers['If-Range'] = etag if etag and not etag.startswith('W/') else meta.get('last_modified') or etag
    request = urllib.request.Request(url, headers=headers)
    try:
        response = opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            total = _content_range(exc.headers.get('Content-Range', '').replace('*', '0-0', 1)) if exc.headers else None
            exc.close()
            if total and total[2] == have:
                _complete_from_part(part, have, result, meta)
                return
            discard(part[:-len('.part')])
            raise DownloadError('template_download', 'the server refused the resume range; starting over',
                                where=f'GET {url}', remediation='retry', retryable=True) from None
        raise
    with response:
        status = response.status
        length = response.headers.get('Content-Length')
        length = int(length) if length and length.isdigit() else None
        etag = response.headers.get('ETag')
        modified = response.headers.get('Last-Modified')
        digest = hashlib.sha256()
        if status == 206 and have:
            crange = _content_range(response.headers.get('Content-Range'))
            if crange is None or crange[0] != have:
                raise DownloadError('template_download', f'the server answered 206 with Content-Range '
                                    f'{response.headers.get("Content-Range")!r} for a request from byte {have}',
                                    where=f'GET {url}', remediation='retry; the mirror is misbehaving')
            total = crange[2]
            update_digest(digest, part, have)
            mode = os.O_WRONLY | os.O_APPEND
            result.resumed = True
            result.events.append(f'resumed at byte {have}')
        else:
            if have:
                result.restarted = True
                result.events.append(f'server answered {status} to a range request: restarting from byte 0')
            have = 0
            total = length
            mode = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        if expected_size is not None and total is not None and total != expected_size:
            result.events.append(f'server size {total} differs from the recorded size {expected_size}')
        result.etag = etag
        atomic_write(meta_path, json.dumps({'url': url, 'etag': etag, 'last_modified': modified, 'total': total},
                                           sort_keys=True), mode=0o644)
        fd, direct = _open_part(part, mode, have)
        received = 0
        pipeline = _Pipeline(fd, digest, have, direct)
        try:
            while True:
                index = pipeline.take()
                view = memoryview(pipeline.buffers[index])
                count = response.readinto(view)
                pipeline.submit(index, count or 0)
                if not count:
                    break
                received += count
                result.bytes_transferred += count
                progress.update(have + received, total)
        finally:
            try:
                pipeline.close()
            finally:
                if durable:
                    os.fsync(fd)
                os.close(fd)
        if length is not None and received != length:
            raise DownloadError('template_download', f'short body: {received} of {length} bytes before the '
                                'connection closed', where=f'GET {url}',
                                remediation='retry; the next attempt resumes from the bytes already received',
                                retryable=True)
        size = have + received
        if total is not None and size != total:
            raise DownloadError('template_download', f'size {size} differs from the announced {total}',
                                where=f'GET {url}', remediation='retry; the mirror is misbehaving', retryable=True)
        result.sha256 = digest.hexdigest()
        result.size = size


def _complete_from_part(part: str, size: int, result: FetchResult, meta: dict) -> None:
    digest = hashlib.sha256()
    update_digest(digest, part, size)
    result.sha256 = digest.hexdigest()
    result.size = size
    result.etag = meta.get('etag')
    result.events.append('the partial file was already complete')


def finish(dest: str, mode: int = 0o644) -> None:
    """Move the verified ``.part`` into place and drop the sidecar."""
    part, meta_path = part_paths(dest)
    os.chmod(part, mode)
    os.replace(part, dest)
    fsync_dir(os.path.dirname(os.path.abspath(dest)))
    try:
        os.unlink(meta_path)
    except FileNotFoundError:
        pass


def writer_lock(dest: str, wait: float = 60.0, sleep=time.sleep):
    """One writer per artefact: an flock on ``<dest>.part.lock`` held while ``<dest>.part`` is written and
    moved into place, and removed after. A second writer (a new run while a background download of a
    killed one still runs) waits up to ``wait`` seconds, then fails naming the holder's pid. A writer
    killed with -9 leaves the file, but not the flock: the next writer takes it."""
    return _WriterLock(dest, wait, sleep)


class _WriterLock:
    def __init__(self, dest: str, wait: float, sleep) -> None:
        self.path = f'{dest}.part.lock'
        self.wait = wait
        self.sleep = sleep
        self.fd = -1

    def _refused(self) -> DownloadError:
        try:
            holder = os.pread(self.fd, 32, 0).decode('ascii', 'replace').strip() or '?'
        finally:
            os.close(self.fd)
        return DownloadError('template_download', f'another process (pid {holder}) is writing '
                             f'{self.path[:-len(".lock")]}', where=self.path,
                             remediation=f'wait for it to end or stop it (kill {holder}), then run again')

    def __enter__(self) -> '_WriterLock':
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        deadline = time.monotonic() + self.wait
        while True:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise self._refused() from None
                os.close(self.fd)
                self.sleep(0.2)
                continue
            # The holder removes the file when it is done: a lock on a file no longer at the path is no lock.
            try:
                same = os.stat(self.path).st_ino == os.fstat(self.fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(self.fd)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f'{os.getpid()}\n'.encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        try:
            os.unlink(self.path)  # still holding it: a waiter sees the file gone and takes a new one
        finally:
            os.close(self.fd)
