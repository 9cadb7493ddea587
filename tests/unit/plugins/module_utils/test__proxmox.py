# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Error classification of the Proxmox client, over real sockets on loopback.

A small HTTPS server with its own CA answers with the Proxmox envelope; a closed port gives
"connection refused", an ``.invalid`` name a DNS failure, a server that never answers a timeout.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.eminfra.pipeline.plugins.module_utils import _proxmox as px

SECRET = '5f0c1a2e-6d3b-4c89-9e71-0a2b3c4d5e6f'
TOKEN = 'pipeline@pve!full'


def _make_ca(tmp_path, name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    path = tmp_path / f'{name}.pem'
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, str(path)


def _make_server_cert(tmp_path, ca_key, ca_cert):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, '127.0.0.1')]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address('127.0.0.1'))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path = tmp_path / 'server.pem'
    key_path = tmp_path / 'server.key'
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


class _Handler(BaseHTTPRequestHandler):
    """Answers like pveproxy: ``{"data": ...}``, errors with the message as reason phrase."""

    def log_message(self, *args):  # keep test output quiet
        return

    def _answer(self):
        server = self.server
        server.requests.append((self.command, self.path, self.headers.get('Authorization', '')))
        path = self.path.split('?', 1)[0]
        plan = server.plan.get(path)
        if plan:
            status, reason, body = plan.pop(0) if len(plan) > 1 else plan[0]
        else:
            status, reason, body = 501, f"Method '{self.command} {path}' not implemented", None
        payload = json.dumps({'data': body} if status < 400 else {'data': None, 'message': reason + '\n'}).encode()
        self.send_response(status, reason)
        self.send_header('Content-Type', 'application/json;charset=UTF-8')
        self.send_header('Content-Length', str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _answer


@pytest.fixture(scope='module')
def pki(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('pki')
    ca_key, ca_cert, ca_path = _make_ca(tmp, 'eminfra-test-ca')
    dummy_key, dummy_cert, other_ca = _make_ca(tmp, 'unrelated-ca')
    cert, key = _make_server_cert(tmp, ca_key, ca_cert)
    return {'ca': ca_path, 'other_ca': other_ca, 'cert': cert, 'key': key}


@pytest.fixture()
def server(pki):
    httpd = ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    httpd.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki['cert'], pki['key'])
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    httpd.requests = []
    httpd.plan = {}
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f'https://127.0.0.1:{httpd.server_address[1]}'
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _client(url, sleeps=None, **kwargs):
    sleeps = [] if sleeps is None else sleeps
    kwargs.setdefault('timeout', 3)
    return px.ProxmoxClient(url, TOKEN, SECRET, sleep=sleeps.append, **kwargs)


def _assert_clean(err):
    text = str(err) + json.dumps(err.result())
    assert SECRET not in text


def test_parse_api_url_strips_api_path():
    assert px.parse_api_url('https://pve.example.org:8006/api2/json/') == ('pve.example.org', 8006, None,
                                                                           'https://pve.example.org:8006')
    assert px.parse_api_url('https://pve.example.org') == ('pve.example.org', 8006, None, 'https://pve.example.org:8006')
    assert px.parse_api_url('https://proxy.example.org:443/pve/api2/json')[2] == 'pve'
    for bad in ('http://pve:8006', 'pve:8006', 'https://user:pw@pve:8006', 'https://pve:8006?x=1'):
        with pytest.raises(ValueError):
            px.parse_api_url(bad)


def test_ok_with_ca_bundle_sends_token_header(server, pki):
    server.plan['/api2/json/version'] = [(200, 'OK', {'version': '9.1.1', 'release': '9.1'})]
    client = _client(server.url + '/api2/json', ca_bundle=pki['ca'])
    assert client.get('/version') == {'version': '9.1.1', 'release': '9.1'}
    assert server.requests[-1][2] == f'PVEAPIToken={TOKEN}={SECRET}'


def test_unknown_ca_is_a_tls_failure_and_not_retried(server, pki):
    sleeps = []
    for kwargs in ({}, {'ca_bundle': pki['other_ca']}):
        client = _client(server.url, sleeps, **kwargs)
        with pytest.raises(px.ProxmoxTLSError) as info:
            client.get('version')
        err = info.value
        assert str(err).startswith('proxmox_tls: GET ' + server.url + '/api2/json/version: TLS verification')
        assert 'PROXMOX_CA_BUNDLE' in str(err) and 'PROXMOX_TLS_VERIFY' in str(err)
        assert 'certificate verify failed' in err.detail or 'unable to get local issuer' in err.detail
        assert client.attempts == [('GET', 'version', 'tls')]
        _assert_clean(err)
    assert sleeps == []
    assert server.requests == []


def test_verify_false_skips_verification(server):
    server.plan['/api2/json/version'] = [(200, 'OK', {'version': '8.4.1'})]
    assert _client(server.url, verify=False).get('version') == {'version': '8.4.1'}


def test_connection_refused_is_retried_with_backoff():
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    sleeps = []
    client = _client(f'https://127.0.0.1:{port}', sleeps, retries=2, backoff=0.25)
    with pytest.raises(px.ProxmoxConnectionRefused) as info:
        client.get('version')
    assert str(info.value).startswith(f'proxmox_reachable: GET https://127.0.0.1:{port}/api2/json/version: '
                                      f'connection to 127.0.0.1:{port} refused')
    assert sleeps == [0.25, 0.5]
    assert len(client.attempts) == 3
    _assert_clean(info.value)


def test_dns_failure_is_named_and_not_retried():
    sleeps = []
    client = _client('https://pve-does-not-exist.invalid:8006', sleeps)
    with pytest.raises(px.ProxmoxDNSError) as info:
        client.get('version')
    assert str(info.value).startswith('proxmox_reachable: ')
    assert "'pve-does-not-exist.invalid' does not resolve" in str(info.value)
    assert sleeps == []


def test_timeout_is_retried_then_reported():
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(8)  # accepts at the kernel level, never answers
    try:
        sleeps = []
        client = _client(f'https://127.0.0.1:{listener.getsockname()[1]}', sleeps, timeout=0.3, retries=1)
        with pytest.raises(px.ProxmoxTimeout) as info:
            client.get('version')
        assert 'no answer from 127.0.0.1' in str(info.value)
        assert len(client.attempts) == 2 and sleeps == [0.5]
    finally:
        listener.close()


def test_5xx_retried_until_it_clears(server, pki):
    server.plan['/api2/json/nodes'] = [(500, 'simulated fault', None), (503, 'busy', None), (200, 'OK', [{'node': 'pve'}])]
    sleeps = []
    client = _client(server.url, sleeps, ca_bundle=pki['ca'])
    assert client.get('nodes') == [{'node': 'pve'}]
    assert sleeps == [0.5, 1.0]
    assert [a[2] for a in client.attempts] == ['http', 'http']


def test_5xx_gives_up_after_the_bound(server, pki):
    server.plan['/api2/json/nodes'] = [(500, 'simulated fault', None)]
    client = _client(server.url, ca_bundle=pki['ca'], retries=2)
    with pytest.raises(px.ProxmoxAPIError) as info:
        client.get('nodes')
    assert info.value.status == 500 and len(client.attempts) == 3
    assert str(info.value).startswith('proxmox_api: GET ')


def test_post_is_not_retried_on_5xx(server, pki):
    server.plan['/api2/json/nodes/pve/qemu'] = [(500, 'boom', None), (200, 'OK', 'UPID:x')]
    client = _client(server.url, ca_bundle=pki['ca'])
    with pytest.raises(px.ProxmoxAPIError):
        client.post('nodes/pve/qemu', vmid=100, start=True)
    assert len(server.requests) == 1


def test_401_names_every_cause_and_is_not_retried(server, pki):
    server.plan['/api2/json/version'] = [(401, 'Authentication failed!', None)]
    sleeps = []
    client = _client(server.url, sleeps, ca_bundle=pki['ca'])
    with pytest.raises(px.ProxmoxAuthError) as info:
        client.get('version')
    text = str(info.value)
    assert text.startswith('token_valid: GET ')
    for cause in ('secret is wrong', 'expired', 'disabled', TOKEN):
        assert cause in text
    assert 'pveum user token list pipeline@pve' in text
    assert sleeps == [] and len(server.requests) == 1
    _assert_clean(info.value)


def test_403_keeps_the_proxmox_reason(server, pki):
    server.plan['/api2/json/nodes/pve/storage/local/download-url'] = [
        (403, 'Permission check failed (/storage/local, Datastore.AllocateTemplate)', None)]
    client = _client(server.url, ca_bundle=pki['ca'])
    with pytest.raises(px.ProxmoxPermissionError) as info:
        client.post('nodes/pve/storage/local/download-url', url='http://127.0.0.1/x', content='iso', filename='x.iso')
    assert '/storage/local, Datastore.AllocateTemplate' in str(info.value)
    assert str(info.value).startswith('token_privileges: POST ')


def test_wait_task_ok_and_failure(server, pki):
    upid = 'UPID:pve:0000ABCD:00001234:65000000:download:x.iso:pipeline@pve!full:'
    base = f'/api2/json/nodes/pve/tasks/{upid}'
    server.plan[base + '/status'] = [(200, 'OK', {'status': 'running'}), (200, 'OK', {'status': 'stopped', 'exitstatus': 'OK'})]
    sleeps = []
    client = _client(server.url, sleeps, ca_bundle=pki['ca'])
    assert client.wait_task(upid, poll=0.1)['exitstatus'] == 'OK'
    assert sleeps == [0.1]
    server.plan[base + '/status'] = [(200, 'OK', {'status': 'stopped', 'exitstatus': "checksum mismatch: got 'a' != expect 'b'"})]
    server.plan[base + '/log'] = [(200, 'OK', [{'n': 1, 't': 'starting'}, {'n': 2, 't': 'TASK ERROR: checksum mismatch'}])]
    with pytest.raises(px.ProxmoxTaskError) as info:
        client.wait_task(upid)
    assert 'checksum mismatch' in str(info.value) and str(info.value).startswith('proxmox_task: ')


def test_sanitise_removes_secret_and_headers():
    client = px.ProxmoxClient('https://127.0.0.1:1', TOKEN, SECRET)
    text = client.sanitise(f'boom Authorization: PVEAPIToken={TOKEN}={SECRET} and {SECRET} and x%3D{SECRET}')
    assert SECRET not in text and 'PVEAPIToken=<redacted>' in text


def test_unexpected_exception_text_is_sanitised():
    client = px.ProxmoxClient('https://127.0.0.1:1', TOKEN, SECRET)
    err = client.classify(RuntimeError(f'odd failure with {SECRET}'), 'GET', 'version')
    assert isinstance(err, px.ProxmoxAPIError) and SECRET not in str(err)
    err = client.classify(OSError(f'odd socket failure {SECRET}'), 'GET', 'version')
    assert isinstance(err, px.ProxmoxUnreachable) and SECRET not in str(err)


def test_from_env_and_token_split():
    client = px.ProxmoxClient.from_env({'PROXMOX_API_URL': 'https://127.0.0.1:8006', 'PROXMOX_TOKEN_ID': TOKEN,
                                        'PROXMOX_TOKEN_SECRET': SECRET, 'PROXMOX_TLS_VERIFY': 'false'})
    assert (client.user, client.token_name, client.verify) == ('pipeline@pve', 'full', False)
    with pytest.raises(ValueError):
        px.split_token_id('pipeline@pve')


def test_unknown_node_is_named_and_not_retried(server, pki):
    server.plan['/api2/json/nodes/nosuch/status'] = [
        (500, "hostname lookup 'nosuch' failed - failed to get address info for: nosuch: Name or service not known", None)]
    sleeps = []
    client = _client(server.url, sleeps, ca_bundle=pki['ca'])
    with pytest.raises(px.ProxmoxNodeError) as info:
        client.get('nodes/nosuch/status')
    assert str(info.value).startswith('node_present: GET ')
    assert "node 'nosuch' is not in the cluster" in str(info.value)
    assert sleeps == [] and len(server.requests) == 1


def test_api_parameters_named_path_or_method_pass_through(server, pki):
    server.plan['/api2/json/access/permissions'] = [(200, 'OK', {'/vms': {'VM.Audit': 1}})]
    client = _client(server.url, ca_bundle=pki['ca'])
    assert client.get('access/permissions', path='/vms', method='x') == {'/vms': {'VM.Audit': 1}}
    assert server.requests[-1][1] == '/api2/json/access/permissions?path=%2Fvms&method=x'
