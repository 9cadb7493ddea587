# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""HTTPS front end: envelope, token authentication, dispatch through the route table, faults,
and the ``/_sim/`` control API (not part of the real API; loopback only, no authentication)."""

from __future__ import annotations

import email.parser
import email.policy
import json
import mmap
import os
import re
import secrets
import socket
import ssl
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.pvesim import api
from tests.pvesim.acl import Checker, PermissionDenied
from tests.pvesim.params import ParamError, verify
from tests.pvesim.state import VM, ApiError, Simulator

API_PREFIX = '/api2/json'
AUTH_RE = re.compile(r'PVEAPIToken[= ](?P<tokenid>[^=\s]+)=(?P<secret>.*)\Z')


class DropConnection(Exception):
    """Close the connection without an answer (fault ``drop``)."""


class SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], sim: Simulator, context: ssl.SSLContext) -> None:
        self.sim = sim
        self.context = context
        super().__init__(address, Handler)

    def finish_request(self, request, client_address) -> None:
        # The TLS handshake runs in the request's own thread, never in the accept loop.
        try:
            request.settimeout(60)
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:  # quiet on client disconnects
        pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    # one write per response (headers and body together) and no Nagle delay: otherwise every
    # keep-alive request waits for the client's delayed ACK
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    server_version = 'pve-api-daemon/3.0'
    sys_version = ''
    server: SimHTTPServer

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.dispatch('GET')

    def do_POST(self) -> None:  # noqa: N802
        self.dispatch('POST')

    def do_PUT(self) -> None:  # noqa: N802
        self.dispatch('PUT')

    def do_DELETE(self) -> None:  # noqa: N802
        self.dispatch('DELETE')

    # -- responses ---------------------------------------------------------------------------
    def send_json(self, code: int, body: object, reason: str | None = None) -> None:
        data = json.dumps(body, separators=(',', ':')).encode()
        self.send_response(code, reason)
        self.send_header('Content-Type', 'application/json;charset=UTF-8')
        self.send_header('Content-Length', str(len(data)))
        self.send_header('Cache-Control', 'max-age=0')
        self.send_header('Pragma', 'no-cache')
        self.end_headers()
        self.wfile.write(data)

    def send_empty(self, code: int, reason: str) -> None:
        self.send_response(code, reason)
        self.send_header('Content-Length', '0')
        self.send_header('Cache-Control', 'max-age=0')
        self.end_headers()

    def send_api_error(self, code: int, message: str, errors: dict[str, str] | None = None) -> None:
        message = message if message.endswith('\n') else message + '\n'
        body: dict[str, object] = {'data': None, 'message': message}
        if errors:
            body['errors'] = errors
        self.send_json(code, body, message.split('\n', 1)[0])

    # -- request parsing -------------------------------------------------------------------
    def _body_chunks(self):
        """Yield the request body: Content-Length or chunked transfer encoding."""
        if 'chunked' in self.headers.get('Transfer-Encoding', '').lower():
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b';', 1)[0].strip() or b'0', 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b'\r\n', b'\n', b''):
                        pass
                    return
                remaining = size
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 1 << 20))
                    if not chunk:
                        return
                    remaining -= len(chunk)
                    yield chunk
                self.rfile.readline(1024)
        length = int(self.headers.get('Content-Length') or 0)
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk

    def read_body(self) -> bytes:
        return b''.join(self._body_chunks())

    def parse_params(self, method: str, query: str) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        files: dict[str, tuple[str, str]] = {}
        if method in ('POST', 'PUT', 'DELETE'):
            ctype = self.headers.get('Content-Type', '')
            if ctype.startswith('multipart/form-data'):
                form, files = self.parse_multipart(ctype)
                params.update(form)
                return params, files
            body = self.read_body()
            if ctype.startswith('application/json') and body.strip():
                decoded = json.loads(body)
                if not isinstance(decoded, dict):
                    raise ApiError(400, 'Parameter verification failed.', {'body': 'not a JSON object'})
                for key, value in decoded.items():
                    if isinstance(value, bool):
                        value = '1' if value else '0'
                    params[key] = str(value)
            elif body:
                params.update(urllib.parse.parse_qsl(body.decode('utf-8', 'replace'), keep_blank_values=True))
        return params, files

    def parse_multipart(self, ctype: str) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
        """Stream a multipart/form-data body to disk and split it there (uploads may be large):
        file parts become temporary files, other parts form fields."""
        match = re.search(r'boundary="?([^";]+)"?', ctype)
        if not match:
            raise ApiError(400, 'Parameter verification failed.', {'body': 'multipart body without boundary'})
        boundary = b'--' + match.group(1).encode()
        upload_dir = os.path.join(self.server.sim.data_dir, '.upload')
        os.makedirs(upload_dir, exist_ok=True)
        spool = os.path.join(upload_dir, f'body-{secrets.token_hex(8)}')
        form: dict[str, str] = {}
        files: dict[str, tuple[str, str]] = {}
        try:
            with open(spool, 'w+b') as handle:
                for chunk in self._body_chunks():
                    handle.write(chunk)
                handle.flush()
                if handle.tell() == 0:
                    return form, files
                with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as body:
                    pos = body.find(boundary)
                    while pos != -1:
                        pos += len(boundary)
                        if body[pos:pos + 2] == b'--':
                            break
                        head_end = body.find(b'\r\n\r\n', pos)
                        if head_end == -1:
                            break
                        headers = email.parser.BytesHeaderParser(policy=email.policy.HTTP).parsebytes(
                            body[pos:head_end].lstrip(b'\r\n') + b'\r\n\r\n')
                        start = head_end + 4
                        end = body.find(b'\r\n' + boundary, start)
                        if end == -1:
                            raise ApiError(400, 'Parameter verification failed.', {'body': 'truncated multipart body'})
                        name = headers.get_param('name', header='content-disposition')
                        filename = headers.get_filename()
                        if name and filename is not None:
                            tmp = os.path.join(upload_dir, f'pveupload-{secrets.token_hex(16)}')
                            with open(tmp, 'wb') as out:
                                for offset in range(start, end, 1 << 20):
                                    out.write(body[offset:min(offset + (1 << 20), end)])
                            files[name] = (os.path.basename(filename), tmp)
                            form[name] = os.path.basename(filename)
                        elif name:
                            form[name] = body[start:end].decode('utf-8', 'replace')
                        pos = body.find(boundary, end)
        finally:
            os.unlink(spool)
        return form, files

    # -- dispatch ----------------------------------------------------------------------------
    def dispatch(self, method: str) -> None:
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        try:
            if path.startswith('/_sim/'):
                self.control(method, path[len('/_sim/'):], split.query)
            elif path == API_PREFIX or path.startswith(API_PREFIX + '/'):
                self.api(method, path[len(API_PREFIX):] or '/', split.query)
            else:
                self.read_body()
                self.send_empty(501, 'Not Implemented')
        except DropConnection:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    def api(self, method: str, rel: str, query: str) -> None:
        sim = self.server.sim
        rel = re.sub(r'/+', '/', rel)
        if len(rel) > 1:
            rel = rel.rstrip('/')
        delay = float(sim.settings.get('latency') or 0)
        fault = sim.take_fault('latency', method, rel)
        if fault:
            delay += float(fault.get('seconds', 1))
        if delay:
            time.sleep(delay)
        if sim.take_fault('drop', method, rel):
            raise DropConnection()
        fault = sim.take_fault('error', method, rel)
        if fault:
            self.read_body()
            self.send_api_error(int(fault.get('status', 500)), str(fault.get('message') or 'simulated server error'))
            return
        header = self.headers.get('Authorization')
        cookie = self.headers.get('Cookie', '')
        if not header and 'PVEAuthCookie=' not in cookie:
            # pve-http-server delays every failed authentication, this one included
            self.read_body()
            time.sleep(float(sim.settings['auth_delay']))
            self.send_empty(401, 'No ticket')
            return
        authid = None
        match = AUTH_RE.match(header or '')
        if match:
            authid = sim.authenticate(match.group('tokenid'), match.group('secret'))
        if authid is None:
            self.read_body()
            time.sleep(float(sim.settings['auth_delay']))
            self.send_empty(401, 'Authentication failed!')
            return
        found = api.find_route(method, rel)
        if found is None:
            self.read_body()
            self.send_api_error(501, f"Method '{method} {rel}' not implemented")
            return
        route, path_params = found
        files: dict[str, tuple[str, str]] = {}
        try:
            raw, files = self.parse_params(method, query)
            duplicate = [k for k in raw if k in path_params]
            if duplicate:
                raise ApiError(400, f"Parameter verification failed - duplicate parameter '{duplicate[0]}'")
            merged = {**raw, **path_params}
            checker = Checker(sim.access, authid)
            if route.check is not None:
                checker.evaluate(route.check, merged)
            if route.node_proxy and 'node' in path_params and path_params['node'] not in sim.nodes:
                node = path_params['node']
                raise ApiError(500, f"hostname lookup '{node}' failed - failed to get address info for: "
                               f'{node}: Name or service not known')
            values = verify(route.params, raw, path_params)
            ctx = api.Ctx(sim, authid, checker, values, files)
            result = route.handler(ctx)
            files = ctx.files
        except PermissionDenied as exc:
            self.send_api_error(403, str(exc))
            return
        except ParamError as exc:
            self.send_api_error(400, 'Parameter verification failed.', exc.errors)
            return
        except ApiError as exc:
            self.send_api_error(exc.code, exc.message, exc.errors)
            return
        except Exception as exc:  # a simulator bug answers like a real server error, with detail
            traceback.print_exc()
            self.send_api_error(500, f'internal simulator error: {exc!r}')
            return
        finally:
            for dummy, tmp in files.values():
                if os.path.exists(tmp):
                    os.unlink(tmp)
        self.send_json(200, {'data': result})

    # -- control ---------------------------------------------------------------------------
    def control(self, method: str, action: str, query: str) -> None:
        if not self.client_address[0].startswith('127.'):
            self.read_body()
            self.send_api_error(403, 'control API is loopback only')
            return
        body = self.read_body() if method in ('POST', 'PUT') else b''
        try:
            args = json.loads(body) if body.strip() else {}
            args.update(dict(urllib.parse.parse_qsl(query)))
            result = control_action(self.server.sim, action.strip('/'), args)
        except (KeyError, ValueError, TypeError) as exc:
            self.send_api_error(400, f'control {action}: {exc}')
            return
        self.send_json(200, {'data': result})


def _vm_view(vm: VM) -> dict:
    return {'vmid': vm.vmid, 'type': vm.type, 'node': vm.node, 'status': vm.status, 'config': dict(vm.config),
            'lock': vm.lock, 'pool': vm.pool, 'started_at': vm.started_at}


def control_action(sim: Simulator, action: str, args: dict) -> object:
    """The /_sim/ actions; returns JSON-able data. Raises KeyError/ValueError on bad input."""
    if action == 'reset':
        sim.reset()
        return {'reset': True}
    if action == 'fault':
        kind = args.get('kind')
        kinds = ('error', 'latency', 'drop', 'task_fail', 'task_warn', 'agent_never_up')
        if kind not in kinds:
            raise ValueError(f"unknown fault kind {kind!r} ({', '.join(kinds)})")
        with sim.lock:
            sim.faults.append(dict(args))
            return list(sim.faults)
    if action == 'clear_faults':
        with sim.lock:
            sim.faults.clear()
        return []
    if action == 'faults':
        with sim.lock:
            return list(sim.faults)
    if action == 'settings':
        with sim.lock:
            for key, value in args.items():
                if key not in sim.settings:
                    raise KeyError(f'unknown setting {key!r}')
                sim.settings[key] = value
            return dict(sim.settings)
    if action == 'vms':
        with sim.lock:
            return [_vm_view(vm) for vm in sorted(sim.vms.values(), key=lambda v: v.vmid)]
    if action == 'tasks':
        with sim.lock:
            return [{'upid': t.upid, 'type': t.type, 'id': t.id, 'user': t.user, 'status': t.status,
                     'exitstatus': t.exitstatus, 'log': list(t.log)} for t in sim.tasks.values()]
    if action == 'add_vms':
        count = int(args.get('count', 1))
        start = int(args.get('start', 1000))
        node = args.get('node') or next(iter(sim.nodes))
        config = dict(args.get('config') or {'memory': '2048', 'cores': 2})
        with sim.lock:
            for vmid in range(start, start + count):
                if vmid in sim.vms:
                    raise ValueError(f'VM {vmid} already exists')
            for vmid in range(start, start + count):
                vm = VM(vmid, node, {**config, 'name': f'vm-{vmid}'})
                sim.vms[vmid] = vm
                if args.get('status') == 'running':
                    sim.mark_running(vm)
        return {'added': count}
    if action == 'token':
        # create or change a token: {tokenid, privsep?, expire?, secret?}; returns the secret
        tokenid = str(args['tokenid'])
        userid, name = tokenid.split('!', 1)
        with sim.lock:
            user = sim.access.users.setdefault(userid, {'enable': True, 'expire': 0, 'tokens': {}})
            token = user['tokens'].setdefault(name, {'privsep': True, 'expire': 0})
            if 'privsep' in args:
                token['privsep'] = bool(int(args['privsep']))
            if 'expire' in args:
                token['expire'] = int(args['expire'])
            if args.get('secret') or tokenid not in sim.secrets:
                sim.secrets[tokenid] = str(args.get('secret') or secrets.token_hex(16))
            return {'tokenid': tokenid, 'secret': sim.secrets[tokenid], **token}
    if action == 'user':
        userid = str(args['userid'])
        with sim.lock:
            user = sim.access.users.setdefault(userid, {'enable': True, 'expire': 0, 'tokens': {}})
            if 'enable' in args:
                user['enable'] = bool(int(args['enable']))
            if 'expire' in args:
                user['expire'] = int(args['expire'])
            return {'userid': userid, 'enable': user['enable'], 'expire': user['expire']}
    if action == 'acl':
        with sim.lock:
            sim.access.add_acl(str(args['path']), str(args['role']), bool(int(args.get('propagate', 1))),
                               user=args.get('user'), group=args.get('group'), token=args.get('token'))
            return {path: [list(e) for e in entries] for path, entries in sim.access.acl.items()}
    if action == 'role':
        with sim.lock:
            sim.access.add_role(str(args['name']), list(args['privs']))
            return sorted(sim.access.roles[str(args['name'])])
    if action == 'state':
        with sim.lock:
            return {'vms': len(sim.vms), 'tasks': len(sim.tasks), 'faults': list(sim.faults),
                    'settings': dict(sim.settings), 'storages': sorted(sim.storages)}
    raise KeyError(f'unknown action {action!r}')


def make_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def serve(sim: Simulator, host: str, port: int, cert: str, key: str) -> SimHTTPServer:
    server = SimHTTPServer((host, port), sim, make_context(cert, key))
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.2}, daemon=True)
    thread.start()
    return server
