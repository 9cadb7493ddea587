# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The SSH test hosts' apt proxy: a small forwarding proxy on the lab's gateway address that
forwards only to the Debian mirrors the machine's own apt sources name (GET/HEAD over HTTP,
CONNECT on 443), and keeps pool and by-hash files in a cache. ``testhosts.py apt-proxy`` runs it;
``testhosts.py up`` starts it and ``down`` stops it."""

from __future__ import annotations

import hashlib
import http.client
import os
import select
import shutil
import signal
import socket
import socketserver
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler


class AptProxyHandler(BaseHTTPRequestHandler):
    """A forwarding proxy for apt: GET/HEAD to allowed mirror hosts, CONNECT to them on 443."""

    protocol_version = 'HTTP/1.1'
    server_version = 'eminfra-testhosts-apt-proxy'
    allow: frozenset = frozenset()
    cache_dir = ''
    forwarded_headers = ('user-agent', 'accept', 'if-modified-since', 'if-none-match', 'range', 'if-range',
                         'cache-control', 'pragma')

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        sys.stderr.write('%s %s\n' % (self.address_string(), format % args))

    def _deny(self, code: int, why: str) -> None:
        body = f'{why}\n'.encode()
        self.send_response(code, why)
        self.send_header('Content-Type', 'text/plain')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)

    def do_CONNECT(self):  # pylint: disable=invalid-name
        host, dummy, port = self.path.rpartition(':')
        if host not in self.allow or port != '443':
            self._deny(403, f'not a configured Debian mirror: {self.path}')
            return
        try:
            upstream = socket.create_connection((host, 443), timeout=30)
        except OSError as exc:
            self._deny(502, f'cannot reach {host}: {exc}')
            return
        self.send_response(200, 'Connection established')
        self.end_headers()
        self.close_connection = True
        sockets = [self.connection, upstream]
        try:
            while True:
                readable, dummy_w, dummy_x = select.select(sockets, [], [], 300)
                if not readable:
                    break
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is self.connection else self.connection).sendall(data)
        finally:
            upstream.close()

    def _cache_path(self, url: urllib.parse.SplitResult) -> str | None:
        # Pool files and by-hash indices never change under their name: safe to keep.
        if '/pool/' not in url.path and '/by-hash/' not in url.path:
            return None
        digest = hashlib.sha256(f'{url.hostname}{url.path}'.encode()).hexdigest()
        return os.path.join(self.cache_dir, digest[:2], digest)

    def do_HEAD(self):  # pylint: disable=invalid-name
        self.do_GET()

    def do_GET(self):  # pylint: disable=invalid-name
        url = urllib.parse.urlsplit(self.path)
        if url.scheme != 'http' or url.hostname not in self.allow:
            self._deny(403, f'not a configured Debian mirror: {url.hostname}')
            return
        cached = self._cache_path(url)
        if cached and os.path.exists(cached):
            size = os.path.getsize(cached)
            self.send_response(200)
            self.send_header('Content-Length', str(size))
            self.send_header('Content-Type', 'application/octet-stream')
            self.end_headers()
            if self.command == 'GET':
                with open(cached, 'rb') as handle:
                    shutil.copyfileobj(handle, self.wfile, 1 << 20)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() in self.forwarded_headers}
        if cached:
            headers.pop('Range', None)
            headers.pop('If-Range', None)
        try:
            conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=60)
            target = url.path + (f'?{url.query}' if url.query else '')
            conn.request(self.command, target, headers=headers)
            resp = conn.getresponse()
        except OSError as exc:
            self._deny(502, f'cannot reach {url.hostname}: {exc}')
            return
        self.send_response(resp.status, resp.reason)
        length = resp.getheader('Content-Length')
        for key, value in resp.getheaders():
            if key.lower() in ('content-type', 'last-modified', 'etag', 'content-range', 'content-length', 'date',
                               'cache-control', 'expires', 'accept-ranges'):
                self.send_header(key, value)
        if length is None:
            self.send_header('Connection', 'close')
            self.close_connection = True
        self.end_headers()
        if self.command == 'HEAD':
            conn.close()
            return
        keep = cached if cached and resp.status == 200 else None
        tmp = f'{keep}.{os.getpid()}.{id(self)}.part' if keep else None
        out = None
        if tmp:
            os.makedirs(os.path.dirname(tmp), exist_ok=True)
            out = open(tmp, 'wb')  # pylint: disable=consider-using-with
        received = 0
        try:
            while True:
                chunk = resp.read(1 << 16)
                if not chunk:
                    break
                received += len(chunk)
                self.wfile.write(chunk)
                if out:
                    out.write(chunk)
        finally:
            conn.close()
            if out:
                out.close()
                if length is not None and received == int(length):
                    os.replace(tmp, keep)
                else:
                    os.unlink(tmp)


class ThreadingProxy(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(args) -> int:
    """The ``apt-proxy`` subcommand: serve until SIGTERM."""
    AptProxyHandler.allow = frozenset(h for h in args.allow.split(',') if h)
    AptProxyHandler.cache_dir = args.cache
    os.makedirs(args.cache, exist_ok=True)
    server = ThreadingProxy((args.listen, args.port), AptProxyHandler)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    print(f'testhosts: apt proxy on {args.listen}:{args.port} for {sorted(AptProxyHandler.allow)}', file=sys.stderr,
          flush=True)
    server.serve_forever()
    return 0
