# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Artefact mirror: an HTTP server on loopback serving Ubuntu- and Talos-shaped images.

Run it with ``python -m tests.pvesim.mirror --listen 127.0.0.1:0 --root DIR
[--artefact PATH:SIZE ...] [--fault 'PATH={json}' ...] [--tls CERT KEY]``; it prints one JSON
line ``{"url": ..., "root": ..., "artefacts": {path: {size, sha256?, etag}}, "control": ...}``
and serves until it is stopped.

Artefacts are generated, never stored: the bytes at any offset are a pure function of
(path seed, version, offset), produced one 1 MiB block at a time, so a GiB image costs no
memory and any byte range can be served. The first bytes carry the format's header so that the
images look like what they stand for: ``.img`` and ``.qcow2`` a qcow2 version 3 header
(``tests.pvesim.state.qcow2_image``: no backing file, a virtual size of 2 GiB or the file size
if larger, so that a VM disk can import it), ``.xz`` the xz magic, ``.iso`` ISO 9660 ``CD001``
at 0x8001.

Without ``--artefact`` it serves the artefacts the templates role's defaults fetch, under the
paths ``UBUNTU_IMAGE_PATH`` and ``TALOS_IMAGE_PATH`` (so that a test points the role at the
mirror with its two base URLs only), plus the Talos ``.raw.xz`` and ``.iso``.

It also writes a Proxmox VE appliance index under ``--root`` (``tests.pvesim.appliance``):
``/proxmox/images/aplinfo-pve-9.dat`` and the valid container template it lists with its
``sha512sum``, ``/proxmox/images/system/ubuntu-24.04-standard_24.04-2_amd64.tar.zst``, which the
templates role fetches with ``templates_ubuntu_lxc_index_url = <mirror>/proxmox/images``.

Every directory holding artefacts also serves ``SHA256SUMS`` (GNU binary form ``<hex> *<file>``,
as Ubuntu publishes it), ``sha256sum.txt`` (GNU text form, two spaces, as Talos publishes it)
and ``SHA256SUMS.bsd`` (BSD form ``SHA256 (<file>) = <hex>``). Digests are computed once and
cached in ``<root>/.mirror-digests.json``. Files placed under ``--root`` are served as they are
(a real file wins over a generated listing).

HTTP behaviour: GET and HEAD, Content-Length, strong ETag, Last-Modified, single byte ranges
(206 with Content-Range, 416 with ``bytes */size``), If-Range (ETag or date), keep-alive.

Faults (per path, set at start with ``--fault`` or at run time through ``/_mirror/``):

``drop_after`` (int)      close the connection after that many body bytes;
``drop_times`` (int)      how many responses the drop applies to (default 1; 0 = always);
``throttle`` (int)        body bytes per second;
``wrong_body`` (bool)     same length and headers, different bytes;
``ignore_range`` (bool)   answer a ranged request with 200 and the whole body;
``status`` (int)          answer with that status (e.g. 404) and a short text body;
``error_status`` (int) and ``error_times`` (int)   answer 5xx for the next N requests;
``redirect_loop`` (bool)  redirect to itself forever (with a changing query);
``redirect_to`` (str)     one redirect (302) to that path or URL;
``omit_from_sums`` (bool) leave the artefact out of its directory's checksum files.

Control endpoint (same port, JSON): ``GET /_mirror/state``; ``POST /_mirror/fault``
``{"path": P, ...fault}``; ``POST /_mirror/clear`` ``{"path": P}`` or ``{}`` for all faults;
``POST /_mirror/artefact`` ``{"path": P, "size": N}`` (adding an existing path bumps its
version: new bytes, new ETag and Last-Modified); ``POST /_mirror/remove`` ``{"path": P}``;
``GET /_mirror/log`` (every request: method, path, range, status, body bytes sent; it waits up
to 10 s for artefact responses still being written);
``POST /_mirror/reset`` (waits for artefact responses still being written, then clears faults
and the log).
"""

from __future__ import annotations

import argparse
import email.utils
import hashlib
import json
import os
import posixpath
import random
import re
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.pvesim import appliance
from tests.pvesim.state import qcow2_image

BLOCK = 1 << 20
DEFAULT_SCHEMATIC = 'ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515'
# Where the templates role's default URLs point once their base URLs are the mirror's:
# templates_ubuntu_base_url = <mirror>UBUNTU_DIR, templates_talos_factory_url = <mirror>/talos.
UBUNTU_DIR = '/ubuntu/releases/24.04/release-20251113'
UBUNTU_IMAGE_PATH = f'{UBUNTU_DIR}/noble-server-cloudimg-amd64.img'
TALOS_FACTORY_PATH = '/talos'
TALOS_DIR = f'{TALOS_FACTORY_PATH}/image/{DEFAULT_SCHEMATIC}/v1.11.5'
TALOS_IMAGE_PATH = f'{TALOS_DIR}/nocloud-amd64.qcow2'
DEFAULT_ARTEFACTS = {
    UBUNTU_IMAGE_PATH: 16 << 20,
    TALOS_IMAGE_PATH: 8 << 20,
    f'{TALOS_DIR}/nocloud-amd64.raw.xz': 8 << 20,
    f'{TALOS_DIR}/nocloud-amd64.iso': 8 << 20,
}
# The virtual size of a generated qcow2 image: no larger than the smallest node disk of the
# intent (20 GiB), so that Terraform can import it; a larger file gets its own size.
QCOW2_VIRTUAL_SIZE = 2 << 30
QCOW2_HEADER_SIZE = 512
SUMS_FILES = ('SHA256SUMS', 'sha256sum.txt', 'SHA256SUMS.bsd')
# A fixed date so that Last-Modified is stable between runs (the release date of the pin).
BASE_MTIME = 1763000000
FAULT_KEYS = {
    'drop_after': int, 'drop_times': int, 'throttle': int, 'wrong_body': bool,
    'ignore_range': bool, 'status': int, 'error_status': int, 'error_times': int,
    'redirect_loop': bool, 'redirect_to': str, 'omit_from_sums': bool,
}
_SIZE_RE = re.compile(r'^(\d+)([KMG]i?B?|B)?$', re.IGNORECASE)


def parse_size(text: str) -> int:
    """``4096``, ``512K``, ``16M``, ``1G`` (binary units) as a byte count."""
    match = _SIZE_RE.match(text.strip())
    if not match:
        raise ValueError(f'not a size: {text!r} (use e.g. 4096, 512K, 16M, 1G)')
    number = int(match.group(1))
    unit = (match.group(2) or '').upper()[:1]
    return number * {'': 1, 'B': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30}[unit]


def qcow2_virtual_size(size: int) -> int:
    """The virtual size a generated qcow2 image of ``size`` bytes declares."""
    return max(QCOW2_VIRTUAL_SIZE, -(-size // BLOCK) * BLOCK)


def _magic(path: str, size: int) -> tuple[int, bytes]:
    """(offset, bytes) of the format header an artefact of this name and size carries."""
    name = path.rsplit('/', 1)[-1].lower()
    if name.endswith(('.img', '.qcow2')):
        return 0, qcow2_image(qcow2_virtual_size(size))[:QCOW2_HEADER_SIZE]
    if name.endswith('.xz'):
        return 0, b'\xfd7zXZ\x00\x00\x04'
    if name.endswith('.iso'):
        return 0x8001, b'CD001\x01'
    if name.endswith(('.tar.gz', '.tgz', '.gz')):
        return 0, b'\x1f\x8b\x08\x00'
    if name.endswith('.zst'):
        return 0, b'\x28\xb5\x2f\xfd'
    return 0, b''


class Artefact:
    """A generated file: size, seed and version determine every byte."""

    def __init__(self, path: str, size: int, version: int = 1) -> None:
        self.path = path
        self.size = size
        self.version = version
        self.seed = int.from_bytes(hashlib.sha256(f'{path}\0{version}'.encode()).digest()[:8], 'big')
        self.mtime = BASE_MTIME + version * 86400
        self.magic_offset, self.magic = _magic(path, size)
        self._base: dict[bool, bytes] = {}
        self._lock = threading.Lock()

    @property
    def etag(self) -> str:
        return f'"{self.seed:016x}-{self.size:x}"'

    @property
    def last_modified(self) -> str:
        return email.utils.formatdate(self.mtime, usegmt=True)

    def _base_block(self, wrong: bool) -> bytes:
        with self._lock:
            if wrong not in self._base:
                seed = self.seed ^ (0x5A5A5A5A5A5A5A5A if wrong else 0)
                self._base[wrong] = random.Random(seed).randbytes(BLOCK)
            return self._base[wrong]

    def block(self, index: int, wrong: bool = False) -> bytes:
        """Block ``index`` (BLOCK bytes, the last one cut to the size)."""
        base = self._base_block(wrong)
        shift = (index * 40503 + 17) % BLOCK
        data = index.to_bytes(8, 'big') + base[shift + 8:] + base[:shift] if shift + 8 <= BLOCK else base
        data = data[:BLOCK]
        start = index * BLOCK
        if self.magic and start <= self.magic_offset < start + BLOCK:
            rel = self.magic_offset - start
            data = data[:rel] + self.magic + data[rel + len(self.magic):]
        end = min(BLOCK, self.size - start)
        return data if end == BLOCK else data[:end]

    def iter_range(self, start: int, end: int, wrong: bool = False):
        """Yield the bytes of [start, end) in chunks of at most BLOCK."""
        pos = start
        while pos < end:
            index = pos // BLOCK
            data = self.block(index, wrong)
            rel = pos - index * BLOCK
            stop = min(len(data), end - index * BLOCK)
            chunk = data[rel:stop] if rel or stop != len(data) else data
            yield chunk
            pos += len(chunk)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for chunk in self.iter_range(0, self.size):
            digest.update(chunk)
        return digest.hexdigest()


class MirrorState:
    """Artefacts, faults and the request log, shared by the handler threads."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        self.lock = threading.Lock()
        self.artefacts: dict[str, Artefact] = {}
        self.faults: dict[str, dict] = {}
        self.log: list[dict] = []
        # artefact responses still being written; reset waits for them so that a response
        # finishing late (a throttled one sleeps after its last byte) never lands in the next log
        self.in_flight = 0
        self.idle = threading.Condition(self.lock)
        self._digest_cache_path = os.path.join(self.root, '.mirror-digests.json')
        try:
            with open(self._digest_cache_path, encoding='utf-8') as handle:
                self._digests = json.load(handle)
        except (OSError, ValueError):
            self._digests = {}

    # ---------------------------------------------------------------- artefacts
    def add(self, path: str, size: int) -> Artefact:
        path = normalise_path(path)
        with self.lock:
            old = self.artefacts.get(path)
            artefact = Artefact(path, size, version=old.version + 1 if old else 1)
            self.artefacts[path] = artefact
        return artefact

    def remove(self, path: str) -> bool:
        with self.lock:
            return self.artefacts.pop(normalise_path(path), None) is not None

    def digest(self, artefact: Artefact) -> str:
        key = f'{artefact.seed:016x}:{artefact.size}:{artefact.magic.hex()}:{artefact.magic_offset}'
        with self.lock:
            cached = self._digests.get(key)
        if cached:
            return cached
        value = artefact.sha256()
        with self.lock:
            self._digests[key] = value
            tmp = f'{self._digest_cache_path}.{os.getpid()}.{threading.get_ident()}.tmp'
            with open(tmp, 'w', encoding='utf-8') as handle:
                json.dump(self._digests, handle)
            os.replace(tmp, self._digest_cache_path)
        return value

    def sums(self, directory: str, form: str) -> bytes | None:
        with self.lock:
            in_dir = [a for p, a in self.artefacts.items() if posixpath.dirname(p) == directory]
            members = sorted((a for a in in_dir if not self.faults.get(a.path, {}).get('omit_from_sums')),
                             key=lambda a: a.path)
        if not in_dir:
            return None
        lines = []
        for artefact in members:
            name = posixpath.basename(artefact.path)
            hexdigest = self.digest(artefact)
            if form == 'SHA256SUMS':
                lines.append(f'{hexdigest} *{name}')
            elif form == 'sha256sum.txt':
                lines.append(f'{hexdigest}  {name}')
            else:
                lines.append(f'SHA256 ({name}) = {hexdigest}')
        return ''.join(f'{line}\n' for line in lines).encode()

    # ---------------------------------------------------------------- faults
    def set_fault(self, path: str, spec: dict) -> dict:
        path = normalise_path(path)
        fault = {}
        for key, value in spec.items():
            if key == 'path':
                continue
            if key not in FAULT_KEYS:
                raise ValueError(f'unknown fault {key!r} (known: {", ".join(sorted(FAULT_KEYS))})')
            fault[key] = FAULT_KEYS[key](value)
        with self.lock:
            self.faults.setdefault(path, {}).update(fault)
            return dict(self.faults[path])

    def clear(self, path: str | None = None) -> None:
        with self.lock:
            if path is None:
                self.faults.clear()
            else:
                self.faults.pop(normalise_path(path), None)

    def take_fault(self, path: str) -> dict:
        """The fault to apply to this response; counts down the once/N-times ones."""
        with self.lock:
            fault = self.faults.get(path)
            if not fault:
                return {}
            applied = dict(fault)
            if fault.get('error_status'):
                left = fault.get('error_times', 1)
                if left <= 0:
                    applied.pop('error_status')
                else:
                    fault['error_times'] = left - 1
            return applied

    def consume_drop(self, path: str) -> None:
        with self.lock:
            fault = self.faults.get(path)
            if not fault or 'drop_after' not in fault:
                return
            times = fault.get('drop_times', 1)
            if times == 1:
                fault.pop('drop_after', None)
                fault.pop('drop_times', None)
            elif times > 1:
                fault['drop_times'] = times - 1

    def record(self, entry: dict) -> None:
        with self.lock:
            self.log.append(entry)

    def begin(self) -> None:
        with self.lock:
            self.in_flight += 1

    def end(self) -> None:
        with self.lock:
            self.in_flight -= 1
            self.idle.notify_all()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        with self.lock:
            return self.idle.wait_for(lambda: self.in_flight == 0, timeout)

    def snapshot(self) -> dict:
        with self.lock:
            artefacts = {p: {'size': a.size, 'etag': a.etag, 'version': a.version,
                             'last_modified': a.last_modified}
                         for p, a in self.artefacts.items()}
            return {'artefacts': artefacts, 'faults': {p: dict(f) for p, f in self.faults.items()}}


def normalise_path(path: str) -> str:
    path = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
    normal = posixpath.normpath('/' + path.lstrip('/'))
    return normal


def parse_range(header: str, size: int) -> tuple[int, int] | None | str:
    """(start, end_exclusive) for one satisfiable range, None to ignore, 'unsatisfiable'."""
    match = re.fullmatch(r'\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*', header)
    if not match:
        return None  # malformed or multiple ranges: serve the whole body (RFC 9110 allows it)
    first, last = match.groups()
    if first == '' and last == '':
        return None
    if first == '':
        length = int(last)
        if length == 0:
            return 'unsatisfiable'
        return max(0, size - length), size
    start = int(first)
    end = size - 1 if last == '' else min(int(last), size - 1)
    if last != '' and int(last) < start:
        return None
    if start >= size:
        return 'unsatisfiable'
    return start, end + 1


class MirrorHandler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'eminfra-mirror/1'
    state: MirrorState  # set on the subclass by make_server

    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass

    # ---------------------------------------------------------------- helpers
    def _send_simple(self, status: int, body: bytes, content_type: str = 'text/plain; charset=utf-8',
                     headers: dict | None = None, head: bool = False) -> None:
        self.send_response(status)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if not self.path.startswith('/_mirror/'):
            # Recorded before the client can see the answer: a test that reads the log right
            # after its request failed (a 503, a 404) finds the request there.
            self.state.record({'method': self.command, 'path': self.path, 'status': status,
                               'range': self.headers.get('Range'), 'sent': 0 if head else len(body)})
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, data) -> None:
        self._send_simple(status, (json.dumps(data, sort_keys=True) + '\n').encode(), 'application/json')

    def _read_json(self) -> dict:
        length = int(self.headers.get('Content-Length') or 0)
        raw = self.rfile.read(length) if length else b''
        return json.loads(raw or b'{}')

    # ---------------------------------------------------------------- control
    def _control(self) -> None:
        action = self.path.split('?', 1)[0][len('/_mirror/'):].strip('/')
        state = self.state
        try:
            body = self._read_json() if self.command == 'POST' else {}
            if self.command == 'GET' and action == 'state':
                return self._json(200, state.snapshot())
            if self.command == 'GET' and action == 'log':
                # An artefact response is recorded once its last byte (or its drop) is out, which
                # the client may see first: wait for those still being written, briefly.
                state.wait_idle(timeout=10.0)
                with state.lock:
                    entries = list(state.log)
                return self._json(200, entries)
            if self.command == 'GET' and action == 'digest':
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                artefact = state.artefacts.get(normalise_path(query.get('path', [''])[0]))
                if artefact is None:
                    return self._json(404, {'error': 'no such artefact'})
                return self._json(200, {'sha256': state.digest(artefact), 'size': artefact.size})
            if self.command == 'POST' and action == 'fault':
                return self._json(200, state.set_fault(body['path'], body))
            if self.command == 'POST' and action == 'clear':
                state.clear(body.get('path'))
                return self._json(200, {'ok': True})
            if self.command == 'POST' and action == 'reset':
                state.wait_idle()
                state.clear()
                with state.lock:
                    state.log.clear()
                return self._json(200, {'ok': True})
            if self.command == 'POST' and action == 'artefact':
                artefact = state.add(body['path'], int(body['size']))
                return self._json(200, {'path': artefact.path, 'size': artefact.size,
                                        'etag': artefact.etag, 'version': artefact.version})
            if self.command == 'POST' and action == 'remove':
                return self._json(200, {'removed': state.remove(body['path'])})
        except (KeyError, ValueError, TypeError) as exc:
            return self._json(400, {'error': f'{type(exc).__name__}: {exc}'})
        return self._json(404, {'error': f'unknown control action {self.command} {action!r}'})

    # ---------------------------------------------------------------- content
    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._serve(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve(head=True)

    def do_POST(self) -> None:  # noqa: N802
        if self.path.startswith('/_mirror/'):
            return self._control()
        return self._send_simple(405, b'method not allowed\n', headers={'Allow': 'GET, HEAD'})

    def _serve(self, head: bool) -> None:
        if self.path.startswith('/_mirror/'):
            return self._control()
        state = self.state
        path = normalise_path(self.path)
        fault = state.take_fault(path)
        if fault.get('redirect_loop'):
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            hop = int(query.get('hop', ['0'])[0]) + 1
            return self._send_simple(302, b'', headers={'Location': f'{path}?hop={hop}'}, head=head)
        if fault.get('redirect_to'):
            return self._send_simple(302, b'', headers={'Location': fault['redirect_to']}, head=head)
        if fault.get('error_status'):
            status = fault['error_status']
            return self._send_simple(status, f'{status} injected by the mirror\n'.encode(), head=head)
        if fault.get('status'):
            status = fault['status']
            reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ''
            return self._send_simple(status, f'{status} {reason}\n'.encode(), head=head)

        artefact = state.artefacts.get(path)
        if artefact is None:
            return self._serve_other(path, head)
        state.begin()
        try:
            self._serve_artefact(artefact, fault, head)
        finally:
            state.end()

    def _serve_other(self, path: str, head: bool) -> None:
        state = self.state
        real = os.path.join(state.root, path.lstrip('/'))
        if os.path.commonpath([state.root, os.path.abspath(real)]) == state.root and os.path.isfile(real) \
                and not os.path.basename(real).startswith('.mirror-'):
            with open(real, 'rb') as handle:
                body = handle.read()
            return self._send_simple(200, body, 'application/octet-stream', head=head)
        name = posixpath.basename(path)
        if name in SUMS_FILES:
            body = state.sums(posixpath.dirname(path), name)
            if body is not None:
                return self._send_simple(200, body, head=head)
        return self._send_simple(404, b'404 Not Found\n', head=head)

    def _serve_artefact(self, artefact: Artefact, fault: dict, head: bool) -> None:
        size = artefact.size
        start, end, status = 0, size, 200
        range_header = self.headers.get('Range')
        if range_header and not fault.get('ignore_range'):
            if_range = self.headers.get('If-Range')
            honour = True
            if if_range:
                if_range = if_range.strip()
                if if_range.startswith(('"', 'W/')):
                    honour = if_range == artefact.etag  # strong comparison only
                else:
                    parsed = email.utils.parsedate_to_datetime(if_range) if if_range else None
                    honour = parsed is not None and int(parsed.timestamp()) == artefact.mtime
            if honour:
                parsed_range = parse_range(range_header, size)
                if parsed_range == 'unsatisfiable':
                    return self._send_simple(416, b'', headers={'Content-Range': f'bytes */{size}'},
                                             head=head)
                if parsed_range is not None:
                    start, end = parsed_range
                    status = 206
        self.send_response(status)
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Content-Length', str(end - start))
        self.send_header('Accept-Ranges', 'bytes')
        self.send_header('ETag', artefact.etag)
        self.send_header('Last-Modified', artefact.last_modified)
        if status == 206:
            self.send_header('Content-Range', f'bytes {start}-{end - 1}/{size}')
        self.end_headers()
        sent = 0
        entry = {'method': self.command, 'path': self.path, 'status': status, 'range': range_header,
                 'if_range': self.headers.get('If-Range'), 'start': start, 'sent': 0, 'dropped': False}
        if head:
            state_record(self.state, entry)
            return
        drop_after = fault.get('drop_after')
        throttle = fault.get('throttle')
        wrong = bool(fault.get('wrong_body'))
        try:
            for chunk in artefact.iter_range(start, end, wrong):
                if drop_after is not None and sent + len(chunk) >= drop_after:
                    part = chunk[:max(0, drop_after - sent)]
                    if part:
                        self.wfile.write(part)
                        sent += len(part)
                    entry['dropped'] = True
                    self.state.consume_drop(artefact.path)
                    self._drop()
                    return
                if throttle:
                    sent += self._write_throttled(chunk, throttle)
                else:
                    self.wfile.write(chunk)
                    sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, socket.timeout, ssl.SSLError):
            self.close_connection = True
        finally:
            entry['sent'] = sent
            state_record(self.state, entry)

    def _write_throttled(self, chunk: bytes, rate: int) -> int:
        step = max(1024, min(64 * 1024, rate // 10))
        view = memoryview(chunk)
        for offset in range(0, len(view), step):
            piece = view[offset:offset + step]
            began = time.monotonic()
            self.wfile.write(piece)
            delay = len(piece) / rate - (time.monotonic() - began)
            if delay > 0:
                time.sleep(delay)
        return len(chunk)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def state_record(state: MirrorState, entry: dict) -> None:
    state.record(entry)


class MirrorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


def make_server(host: str, port: int, state: MirrorState,
                tls: tuple[str, str] | None = None) -> MirrorServer:
    handler = type('BoundMirrorHandler', (MirrorHandler,), {'state': state})
    server = MirrorServer((host, port), handler)
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls[0], tls[1])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    return server


def _parse_listen(text: str) -> tuple[str, int]:
    host, dummy, port = text.rpartition(':')
    host = host.strip('[]') or '127.0.0.1'
    if not (host.startswith('127.') or host in ('localhost', '::1')):
        raise SystemExit(f'mirror: --listen {text}: only loopback addresses are allowed')
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m tests.pvesim.mirror', description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--listen', default='127.0.0.1:0', help='HOST:PORT on loopback (port 0: any free port)')
    parser.add_argument('--root', required=True, help='directory for static files and the digest cache')
    parser.add_argument('--artefact', action='append', default=[], metavar='PATH:SIZE',
                        help='serve a generated artefact (repeatable); default: the Ubuntu and Talos images '
                        'the templates role fetches by default, and a Talos .raw.xz and .iso')
    parser.add_argument('--fault', action='append', default=[], metavar='PATH={json}',
                        help='a fault for a path, e.g. \'/a.img={"drop_after": 1000}\'')
    parser.add_argument('--tls', nargs=2, metavar=('CERT', 'KEY'), help='serve HTTPS with this certificate')
    parser.add_argument('--precompute', action='store_true', help='compute every digest before printing the URL')
    args = parser.parse_args(argv)

    state = MirrorState(args.root)
    # The Proxmox VE appliance index: a real container template and the aplinfo publishing its sha512sum.
    index_files = appliance.write_index(state.root)
    specs = args.artefact or [f'{p}:{s}' for p, s in DEFAULT_ARTEFACTS.items()]
    for spec in specs:
        path, dummy, size = spec.rpartition(':')
        if not path:
            parser.error(f'--artefact {spec}: expected PATH:SIZE')
        state.add(path, parse_size(size))
    for spec in args.fault:
        path, dummy, raw = spec.partition('=')
        state.set_fault(path, json.loads(raw))
    if args.precompute:
        for artefact in list(state.artefacts.values()):
            state.digest(artefact)

    host, port = _parse_listen(args.listen)
    server = make_server(host, port, state, tuple(args.tls) if args.tls else None)
    bound_host, bound_port = server.server_address[:2]
    scheme = 'https' if args.tls else 'http'
    url = f'{scheme}://{bound_host}:{bound_port}'
    info = {
        'url': url,
        'root': state.root,
        'control': f'{url}/_mirror/',
        'pid': os.getpid(),
        'artefacts': {p: {'size': a.size, 'etag': a.etag} for p, a in state.artefacts.items()},
        'files': index_files,
    }
    sys.stdout.write(json.dumps(info, sort_keys=True) + '\n')
    sys.stdout.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
