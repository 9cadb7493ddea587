# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The pipeline's Proxmox VE API client: proxmoxer with token auth, typed operator errors.

This is a private module_utils file of eminfra.pipeline; its API may change at any time.

Every step that talks to Proxmox builds a ``ProxmoxClient`` from the values of
``state/proxmox.env`` (``ProxmoxClient.from_env``) and calls ``get/post/put/delete(path,
**params)``. Failures are ``ProxmoxError`` subclasses (a ``CheckError``): the message starts
with the check id, names the API path, and ends with the remediation. The token secret never
appears in any message: every text taken from requests/proxmoxer is sanitised.

Retries: GET is retried on 5xx answers (not 501) and on connection errors (refused, reset,
timeout) with exponential backoff; POST/PUT/DELETE only when the connection was refused (the
request never reached the server). 4xx, TLS and DNS failures are never retried.
"""

from __future__ import annotations

import re
import socket
import time
import traceback
from urllib.parse import quote, urlsplit

try:
    import requests
    from proxmoxer import ProxmoxAPI
    from proxmoxer.core import ResourceException
    HAS_PROXMOXER = True
    PROXMOXER_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised only on hosts without proxmoxer
    HAS_PROXMOXER = False
    PROXMOXER_IMPORT_ERROR = traceback.format_exc()

from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError

API_PATH = '/api2/json'
DEFAULT_PORT = 8006
DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 0.5
MAX_BACKOFF = 8.0

CA_REMEDIATION = ('set PROXMOX_CA_BUNDLE in proxmox.env to the PEM file of the CA that signed the '
                  'Proxmox certificate (on a default install: /etc/pve/pve-root-ca.pem, copied from the '
                  'host) and keep PROXMOX_TLS_VERIFY=true; PROXMOX_TLS_VERIFY=false skips the check and '
                  'exposes the token to anyone who can intercept the connection')

AUTH_REMEDIATION = ('on the Proxmox host run `pveum user token list {user}` (is {token} listed, is '
                    '"expire" in the past?) and `pveum user list` (is {user} enabled?); if the secret is '
                    'lost or wrong, create a new one with `pveum user token remove {user} {token}` and '
                    '`pveum user token add {user} {token} --privsep 1`, then write the new value to '
                    'PROXMOX_TOKEN_SECRET')

_UNKNOWN_NODE_RE = re.compile(r"(?:hostname lookup '([^']+)' failed|no such cluster node '([^']+)')")
_TOKEN_HEADER_RE = re.compile(r'(PVEAPIToken[= ])\S+', re.IGNORECASE)


def split_token_id(token_id: str) -> tuple[str, str]:
    """``user@realm!tokenid`` as (``user@realm``, ``tokenid``)."""
    user, sep, name = token_id.partition('!')
    if not sep or '@' not in user or not name:
        raise ValueError(f'token id {token_id!r} is not of the form user@realm!tokenid')
    return user, name


def parse_api_url(api_url: str) -> tuple[str, int, str | None, str]:
    """(host, port, path prefix or None, normalised base URL without the API path).

    Accepts the base URL with or without a trailing ``/api2/json`` (an operator copying the URL
    from the API viewer writes it); a path before it (a reverse proxy) becomes the prefix.
    """
    text = api_url.strip()
    parts = urlsplit(text)
    if parts.scheme != 'https':
        raise ValueError(f'{text!r} is not an https:// URL (the Proxmox VE API is served over HTTPS only)')
    if not parts.hostname:
        raise ValueError(f'{text!r} has no host name')
    if parts.query or parts.fragment:
        raise ValueError(f'{text!r} has a query or fragment; write only https://host:port')
    if parts.username or parts.password:
        raise ValueError('the URL must not carry credentials; the token goes in PROXMOX_TOKEN_ID/SECRET')
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise ValueError(f'{text!r} has an invalid port ({exc})') from None
    path = parts.path.rstrip('/')
    if path.endswith(API_PATH):
        path = path[:-len(API_PATH)]
    prefix = path.strip('/') or None
    host = parts.hostname
    shown_host = f'[{host}]' if ':' in host else host
    base = f'https://{shown_host}:{port}' + (f'/{prefix}' if prefix else '')
    return host, port, prefix, base


class ProxmoxError(CheckError):
    """A failed Proxmox API call, as an operator-facing check failure."""

    kind = 'api'

    def __init__(self, check: str, detail: str, where: str | None = None,
                 remediation: str | None = None, status: int | None = None) -> None:
        super().__init__(check, detail, where=where, remediation=remediation)
        self.status = status

    def result(self) -> dict:
        res = super().result()
        res['error_kind'] = self.kind
        if self.status is not None:
            res['status'] = self.status
        return res


class ProxmoxUnreachable(ProxmoxError):
    """No HTTP answer: DNS failure, connection refused/reset."""

    kind = 'connection'


class ProxmoxDNSError(ProxmoxUnreachable):
    kind = 'dns'


class ProxmoxConnectionRefused(ProxmoxUnreachable):
    kind = 'refused'


class ProxmoxTimeout(ProxmoxUnreachable):
    kind = 'timeout'


class ProxmoxTLSError(ProxmoxError):
    kind = 'tls'


class ProxmoxAuthError(ProxmoxError):
    """401: the token is not accepted."""

    kind = 'auth'


class ProxmoxPermissionError(ProxmoxError):
    """403: the token lacks a privilege."""

    kind = 'permission'


class ProxmoxAPIError(ProxmoxError):
    """Any other HTTP error answer (400, 404, 500 ...)."""

    kind = 'http'


class ProxmoxNodeError(ProxmoxError):
    """A call naming a node that is not in the cluster (pveproxy cannot resolve it)."""

    kind = 'node'


class ProxmoxTaskError(ProxmoxError):
    """A task (UPID) that ended with an error exit status."""

    kind = 'task'


def _exception_chain(exc: BaseException):
    """The exception, its causes, contexts, args and urllib3 ``reason``s, each once."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        item = todo.pop(0)
        if item is None or id(item) in seen or not isinstance(item, BaseException):
            continue
        seen.add(id(item))
        yield item
        todo.extend([getattr(item, 'reason', None), item.__cause__, item.__context__])
        todo.extend(arg for arg in item.args if isinstance(arg, BaseException))


class ProxmoxClient:
    """A token-authenticated Proxmox VE API client.

    ``verify`` False disables certificate verification; ``ca_bundle`` (a PEM path) replaces the
    system trust store (proxmoxer hands ``verify_ssl`` to requests' ``verify``, which takes
    either a bool or a CA path). ``sleep`` and ``clock`` are injectable for tests.
    """

    def __init__(self, api_url: str, token_id: str, token_secret: str, verify: bool = True,
                 ca_bundle: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = DEFAULT_RETRIES, backoff: float = DEFAULT_BACKOFF,
                 sleep=time.sleep, clock=time.monotonic) -> None:
        if not HAS_PROXMOXER:
            raise RuntimeError('the proxmoxer and requests Python libraries are required')
        self.host, self.port, self.prefix, self.base_url = parse_api_url(api_url)
        self.token_id = token_id
        self.user, self.token_name = split_token_id(token_id)
        self._secret = token_secret
        self.verify = bool(verify)
        self.ca_bundle = ca_bundle or None
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self._sleep = sleep
        self._clock = clock
        self.attempts: list[tuple[str, str, str]] = []
        verify_ssl: bool | str = (self.ca_bundle or True) if self.verify else False
        self._api = ProxmoxAPI(self.host, port=self.port, user=self.user, token_name=self.token_name,
                               token_value=token_secret, verify_ssl=verify_ssl, timeout=timeout,
                               path_prefix=self.prefix)

    @classmethod
    def from_env(cls, values: dict, **kwargs) -> 'ProxmoxClient':
        """Build from proxmox.env values (PROXMOX_API_URL, PROXMOX_TOKEN_ID, ...)."""
        verify = str(values.get('PROXMOX_TLS_VERIFY', 'true')).strip().lower() != 'false'
        return cls(values['PROXMOX_API_URL'], values['PROXMOX_TOKEN_ID'], values['PROXMOX_TOKEN_SECRET'],
                   verify=verify, ca_bundle=values.get('PROXMOX_CA_BUNDLE') or None, **kwargs)

    # ------------------------------------------------------------------ helpers
    def sanitise(self, text: str) -> str:
        """``text`` with the secret and any Authorization value removed."""
        text = str(text)
        if self._secret:
            text = text.replace(self._secret, '<secret>')
            text = text.replace(quote(self._secret, safe=''), '<secret>')
        return _TOKEN_HEADER_RE.sub(r'\1<redacted>', text)

    @staticmethod
    def _segments(path: str) -> list[str]:
        return [quote(seg, safe='@:!=,+~') for seg in path.strip('/').split('/') if seg]

    def api_path(self, path: str) -> str:
        return API_PATH + '/' + '/'.join(self._segments(path))

    def _where(self, method: str, path: str) -> str:
        return f'{method} {self.base_url}{self.api_path(path)}'

    # ------------------------------------------------------------------ requests
    def get(self, path: str, /, **params):
        return self.request('GET', path, **params)

    def post(self, path: str, /, **params):
        return self.request('POST', path, **params)

    def put(self, path: str, /, **params):
        return self.request('PUT', path, **params)

    def delete(self, path: str, /, **params):
        return self.request('DELETE', path, **params)

    def request(self, method: str, path: str, /, **params):
        """One API call with bounded retries; returns the ``data`` of the answer.

        ``path`` and ``method`` are positional-only, so API parameters of those names (such as
        ``GET /access/permissions?path=/vms``) pass as keywords.
        """
        method = method.upper()
        resource = self._api(self._segments(path))
        params = {key: (int(val) if isinstance(val, bool) else val) for key, val in params.items()}
        attempt = 0
        while True:
            attempt += 1
            try:
                return getattr(resource, method.lower())(**params)
            except Exception as exc:  # noqa: BLE001 - classified below, never re-raised raw
                error = self.classify(exc, method, path)
                self.attempts.append((method, path, error.kind))
            if attempt > self.retries or not self._retryable(error, method):
                raise error
            self._sleep(min(MAX_BACKOFF, self.backoff * (2 ** (attempt - 1))))

    @staticmethod
    def _retryable(error: ProxmoxError, method: str) -> bool:
        if isinstance(error, ProxmoxConnectionRefused):
            return True
        if method != 'GET':
            return False
        if isinstance(error, ProxmoxUnreachable) and not isinstance(error, ProxmoxDNSError):
            return True
        return isinstance(error, ProxmoxAPIError) and error.status is not None \
            and error.status >= 500 and error.status != 501

    def wait_task(self, upid: str, node: str | None = None, timeout: float = 600.0,
                  poll: float = 1.0) -> dict:
        """Poll a task until it stops; return its status, raise ProxmoxTaskError on failure."""
        node = node or (upid.split(':')[1] if upid.count(':') > 2 else None)
        if not node:
            raise ValueError(f'cannot tell the node of task {upid!r}; pass node=')
        status_path = f'nodes/{node}/tasks/{upid}/status'
        deadline = self._clock() + timeout
        while True:
            status = self.get(status_path) or {}
            if status.get('status') == 'stopped':
                exitstatus = str(status.get('exitstatus', ''))
                if exitstatus == 'OK' or exitstatus.startswith('WARNINGS'):
                    return status
                tail = self._task_log_tail(node, upid)
                raise ProxmoxTaskError('proxmox_task', f'task {upid} failed: {exitstatus}'
                                       + (f' (log: {tail})' if tail else ''),
                                       where=self._where('GET', status_path),
                                       remediation='read the full task log in the Proxmox UI '
                                       f'(node {node}, Tasks) or `pvenode task log {node} {upid}`')
            if self._clock() >= deadline:
                raise ProxmoxTimeout('proxmox_task', f'task {upid} still running after {timeout:g} s',
                                     where=self._where('GET', status_path),
                                     remediation='check the task in the Proxmox UI; raise the timeout '
                                     'if the host is slow')
            self._sleep(poll)

    def _task_log_tail(self, node: str, upid: str, lines: int = 5) -> str:
        try:
            log = self.get(f'nodes/{node}/tasks/{upid}/log', start=0, limit=500) or []
        except ProxmoxError:
            return ''
        texts = [str(entry.get('t', '')) for entry in log if isinstance(entry, dict)]
        return self.sanitise(' | '.join(texts[-lines:]))

    # ------------------------------------------------------------------ errors
    def classify(self, exc: BaseException, method: str, path: str) -> ProxmoxError:
        """Turn any requests/proxmoxer exception into a typed, sanitised ProxmoxError."""
        where = self._where(method, path)
        target = f'{self.host}:{self.port}'
        if HAS_PROXMOXER and isinstance(exc, ResourceException):
            return self._classify_http(exc, where)
        if HAS_PROXMOXER and isinstance(exc, requests.exceptions.SSLError):
            reason = self._tls_reason(exc)
            return ProxmoxTLSError('proxmox_tls', f'TLS verification of {target} failed ({reason}); '
                                   + ('the CA bundle ' + self.ca_bundle + ' does not vouch for this certificate'
                                      if self.ca_bundle else 'the certificate is not trusted by the system CA store'),
                                   where=where, remediation=CA_REMEDIATION)
        if HAS_PROXMOXER and isinstance(exc, requests.exceptions.Timeout):
            return ProxmoxTimeout('proxmox_reachable', f'no answer from {target} within {self.timeout:g} s '
                                  f'({type(exc).__name__})', where=where,
                                  remediation='check that the host is up and that port '
                                  f'{self.port} is not filtered by a firewall; raise the timeout if the host is slow')
        chain = list(_exception_chain(exc))
        for item in chain:
            if isinstance(item, socket.gaierror) or type(item).__name__ == 'NameResolutionError':
                return ProxmoxDNSError('proxmox_reachable', f'the host name {self.host!r} does not resolve '
                                       '(DNS lookup failed)', where=where,
                                       remediation='fix the host name in PROXMOX_API_URL or add it to DNS or '
                                       '/etc/hosts on the machine that runs the pipeline')
        for item in chain:
            if isinstance(item, ConnectionRefusedError):
                return ProxmoxConnectionRefused('proxmox_reachable', f'connection to {target} refused: nothing '
                                                'listens there', where=where,
                                                remediation='check the port in PROXMOX_API_URL (the API listens '
                                                f'on 8006) and that pveproxy runs: `systemctl status pveproxy` on {self.host}')
        for item in chain:
            if isinstance(item, (socket.timeout, TimeoutError)):
                return ProxmoxTimeout('proxmox_reachable', f'no answer from {target} within {self.timeout:g} s',
                                      where=where, remediation='check that the host is up and the port is not filtered')
        if HAS_PROXMOXER and isinstance(exc, requests.exceptions.RequestException) or isinstance(exc, OSError):
            return ProxmoxUnreachable('proxmox_reachable', f'cannot talk to {target}: '
                                      f'{self.sanitise(self._short(exc))}', where=where,
                                      remediation='check PROXMOX_API_URL and the network path to the host')
        return ProxmoxAPIError('proxmox_api', f'unexpected {type(exc).__name__}: {self.sanitise(self._short(exc))}',
                               where=where, remediation='report this with the task output (it holds no secret)')

    @staticmethod
    def _short(exc: BaseException) -> str:
        text = str(exc)
        return text if len(text) <= 300 else text[:300] + '...'

    def _tls_reason(self, exc: BaseException) -> str:
        import ssl  # pylint: disable=import-outside-toplevel
        for item in _exception_chain(exc):
            if isinstance(item, ssl.SSLCertVerificationError):
                return self.sanitise(item.verify_message or str(item))
        text = str(exc)
        match = re.search(r'\[SSL[^\]]*\][^()]*', text)
        return self.sanitise(match.group(0).strip() if match else self._short(exc))

    def _classify_http(self, exc, where: str) -> ProxmoxError:
        status = int(exc.status_code)
        reason = self.sanitise(str(exc.content or exc.status_message or '').strip())
        errors = exc.errors if isinstance(exc.errors, dict) else None
        if errors and isinstance(errors.get('errors'), bytes):
            errors = None  # proxmoxer's stand-in for a body that is not JSON (401 has an empty one)
        if errors:
            reason += ' (' + '; '.join(f'{key}: {str(val).strip()}' for key, val in errors.items()) + ')'
            reason = self.sanitise(reason)
        if status == 401:
            return ProxmoxAuthError(
                'token_valid',
                f'Proxmox answered 401 {reason or "Authentication failed"} for token {self.token_id}: the token id '
                'or secret is wrong, the token has expired, or the user is disabled (Proxmox gives the same '
                'answer for all three)', where=where, status=status,
                remediation=AUTH_REMEDIATION.format(user=self.user, token=self.token_name))
        if status == 403:
            return ProxmoxPermissionError(
                'token_privileges', f'403 {reason or "Permission check failed"} for token {self.token_id}',
                where=where, status=status,
                remediation='run the eminfra.pipeline.proxmox_token_check module (role proxmox_access) for the '
                'exact pveum commands that grant the missing privileges')
        node = _UNKNOWN_NODE_RE.search(reason)
        if status in (500, 595) and node:
            return ProxmoxNodeError('node_present', f'{status} {reason}: node {node.group(1) or node.group(2)!r} is not in the cluster',
                                    where=where, status=status,
                                    remediation='set PROXMOX_NODE in proxmox.env to a node listed by `pvecm nodes` '
                                    '(or GET /nodes)')
        if status == 501:
            return ProxmoxAPIError('proxmox_api', f'501 {reason}: this Proxmox VE version does not offer the call',
                                   where=where, status=status,
                                   remediation='upgrade Proxmox VE to 8.4 or newer (9.x recommended)')
        return ProxmoxAPIError('proxmox_api', f'{status} {reason}', where=where, status=status,
                               remediation='see the Proxmox message above; for 5xx answers look at '
                               '`journalctl -u pveproxy -u pvedaemon` on the host')
