# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""``state/proxmox.env``: the one reader of the Proxmox credentials.

This is a private module_utils file of eminfra.pipeline; its API may change at any time.

``load`` checks the file (present, a regular file, mode 0600 or stricter), reads it without any
shell evaluation, validates it against the contract (``_contracts.PROXMOX_ENV_SCHEMA``) and what a
schema cannot say (the URL's form, a readable CA bundle), and returns ``ProxmoxSettings``: the
values with the API URL parsed once (``_proxmox.parse_api_url``: no port means 8006). Every
failure is a CheckError (``proxmox_env_present``, ``proxmox_env_valid``) naming the file and the
key, with a remediation, and never the token secret. ``no_log_values`` is what a module adds to
its ``no_log_values`` so that Ansible masks the secret in anything the task prints.
"""

from __future__ import annotations

import os

from ansible_collections.eminfra.pipeline.plugins.module_utils._contracts import (
    PROXMOX_ENV_SCHEMA, PROXMOX_ENV_SECRET_KEYS, is_secret_key, validate)
from ansible_collections.eminfra.pipeline.plugins.module_utils._envfile import (
    EnvFileError, check_private_file, read_env_file, read_private_env_file)
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError

PRESENT_CHECK = 'proxmox_env_present'
VALID_CHECK = 'proxmox_env_valid'
SECRET_NAME = 'the token secret'
SECRET_MASK = '<secret>'
ENV_KEYS_TEMPLATE = ("PROXMOX_API_URL=https://HOST:8006, PROXMOX_NODE=<node name>, "
                     "PROXMOX_TOKEN_ID=user@realm!tokenid, PROXMOX_TOKEN_SECRET=<secret> "
                     "(optional: PROXMOX_TLS_VERIFY=true|false, PROXMOX_CA_BUNDLE=/path/ca.pem)")
MISSING_REMEDIATION = (f'write it with mode 0600 and the keys {ENV_KEYS_TEMPLATE}; '
                       'or run `make demo` to try the pipeline against the Proxmox simulator')
URL_REMEDIATION = 'write the base URL, e.g. PROXMOX_API_URL=https://pve.example.org:8006'
#: Non-secret keys of proxmox.env, the ones a step may record in latest.env or return.
PUBLIC_ENV_KEYS = ('PROXMOX_API_URL', 'PROXMOX_NODE', 'PROXMOX_TOKEN_ID', 'PROXMOX_TLS_VERIFY', 'PROXMOX_CA_BUNDLE')


class ProxmoxSettings:
    """The validated values of proxmox.env and what they say.

    ``base_url`` (also ``api_url``) is the API's base URL without ``/api2/json`` and with the port
    made explicit, as Terraform's provider and the API client both want it."""

    def __init__(self, api_url: str, node: str, token_id: str, token_secret: str,
                 tls_verify: bool = True, ca_bundle: str | None = None, source: str = 'PROXMOX_API_URL') -> None:
        try:
            self.host, self.port, self.prefix, self.base_url = _parse_api_url(api_url)
        except ValueError as exc:
            raise CheckError(VALID_CHECK, f'PROXMOX_API_URL: {_masked(str(exc), token_secret)}', where=source,
                             remediation=URL_REMEDIATION) from None
        self.node = node
        self.token_id = token_id
        self.token_secret = token_secret
        self.tls_verify = tls_verify
        self.ca_bundle = ca_bundle or None
        self.source = source
        self._written: dict[str, str] | None = None

    @property
    def api_url(self) -> str:
        return self.base_url

    @classmethod
    def from_values(cls, values: dict[str, str], source: str) -> 'ProxmoxSettings':
        """Settings from proxmox.env's keys (already validated by ``validate_values``)."""
        settings = cls(values['PROXMOX_API_URL'], values['PROXMOX_NODE'], values['PROXMOX_TOKEN_ID'],
                       values['PROXMOX_TOKEN_SECRET'],
                       tls_verify=str(values.get('PROXMOX_TLS_VERIFY', 'true')).strip().lower() != 'false',
                       ca_bundle=values.get('PROXMOX_CA_BUNDLE') or None, source=source)
        settings._written = dict(values)
        return settings

    def values(self) -> dict[str, str]:
        """The keys of proxmox.env as written (or, for settings built from arguments, as they would be)."""
        if self._written is not None:
            return dict(self._written)
        values = {'PROXMOX_API_URL': self.base_url, 'PROXMOX_NODE': self.node, 'PROXMOX_TOKEN_ID': self.token_id,
                  'PROXMOX_TOKEN_SECRET': self.token_secret,
                  'PROXMOX_TLS_VERIFY': 'true' if self.tls_verify else 'false'}
        if self.ca_bundle:
            values['PROXMOX_CA_BUNDLE'] = self.ca_bundle
        return values

    def public(self) -> dict[str, str]:
        """The non-secret keys, for a task result or latest.env."""
        values = self.values()
        return {key: values[key] for key in PUBLIC_ENV_KEYS if key in values}

    def no_log_values(self) -> set[str]:
        return no_log_values(self)

    def client(self, **kwargs):
        """The API client (``_proxmox.ProxmoxClient``) for these settings."""
        # Imported here: reading the settings must not need proxmoxer.
        from ansible_collections.eminfra.pipeline.plugins.module_utils._proxmox import ProxmoxClient  # pylint: disable=import-outside-toplevel
        return ProxmoxClient(self.base_url, self.token_id, self.token_secret, verify=self.tls_verify,
                             ca_bundle=self.ca_bundle, **kwargs)


def no_log_values(settings: ProxmoxSettings | dict | None) -> set[str]:
    """The values a module adds to ``module.no_log_values``: the token secret (and any other secret key)."""
    if settings is None:
        return set()
    values = settings.values() if isinstance(settings, ProxmoxSettings) else settings
    return {value for key, value in values.items()
            if value and (key in PROXMOX_ENV_SECRET_KEYS or is_secret_key(key))}


def _parse_api_url(api_url: str) -> tuple[str, int, str | None, str]:
    # Imported here: the API client's module imports proxmoxer and requests, which reading
    # the secrets of the file (latest.env's guard) never needs.
    from ansible_collections.eminfra.pipeline.plugins.module_utils._proxmox import parse_api_url  # pylint: disable=import-outside-toplevel
    return parse_api_url(api_url)


def _masked(text: str, secret: str | None) -> str:
    return text.replace(secret, SECRET_MASK) if secret else text


def check_file(path: str) -> None:
    """The part of ``proxmox_env_valid`` that reads no value: present, a regular file, mode 0600 or stricter."""
    check_private_file(path, PRESENT_CHECK, VALID_CHECK, SECRET_NAME, missing_remediation=MISSING_REMEDIATION)


def check_present(path: str) -> None:
    """``proxmox_env_present``: a run cannot start without the credentials file."""
    if not os.path.lexists(path):
        raise CheckError(PRESENT_CHECK, 'the file does not exist', where=path, remediation=MISSING_REMEDIATION)


def validate_values(values: dict[str, str], source: str) -> ProxmoxSettings:
    """The contract schema plus what a schema cannot say (URL form, CA bundle readable); the secret is
    masked in every message."""
    secret = values.get('PROXMOX_TOKEN_SECRET', '')
    try:
        validate(values, PROXMOX_ENV_SCHEMA, VALID_CHECK, source=source,
                 remediation=f'fix the named keys; the file holds {ENV_KEYS_TEMPLATE}')
        settings = ProxmoxSettings.from_values(values, source)
        bundle = settings.ca_bundle
        if bundle and not (os.path.isfile(bundle) and os.access(bundle, os.R_OK)):
            raise CheckError(VALID_CHECK, f'PROXMOX_CA_BUNDLE: {bundle} is not a readable file', where=source,
                             remediation='copy /etc/pve/pve-root-ca.pem from the Proxmox host to that path, or fix the path')
    except CheckError as exc:
        exc.detail = _masked(exc.detail, secret)
        raise
    return settings


def load(path: str) -> ProxmoxSettings:
    """Read and validate proxmox.env; every failure is a CheckError raised before any network use."""
    values = read_private_env_file(path, PRESENT_CHECK, VALID_CHECK, SECRET_NAME,
                                   missing_remediation=MISSING_REMEDIATION)
    return validate_values(values, source=path)


def secret_values(path: str) -> list[str]:
    """The secret values of proxmox.env as written, without validating it (latest.env refuses to store
    them even when the file is otherwise broken); none when the file is missing or unreadable."""
    try:
        values = read_env_file(path)
    except (OSError, EnvFileError):
        return []
    return sorted(no_log_values(values))
