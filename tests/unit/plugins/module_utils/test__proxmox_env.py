# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_proxmox_env: the one reader of state/proxmox.env - each failure names the check, the file, the key and
a remediation, and never the secret; the settings parse the URL once; the secret goes to no_log_values."""

from __future__ import annotations

import os

import pytest

from ansible_collections.eminfra.pipeline.plugins.module_utils import _proxmox_env
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError
from ansible_collections.eminfra.pipeline.plugins.module_utils._proxmox import parse_api_url

SECRET = 'a1b2c3d4-0000-4000-8000-abcdefabcdef'
GOOD = ("PROXMOX_API_URL=https://pve.example.org\nPROXMOX_NODE=pve\nPROXMOX_TOKEN_ID='pipeline@pve!full'\n"
        f"PROXMOX_TOKEN_SECRET={SECRET}\n")


def write(tmp_path, text=GOOD, mode=0o600):
    path = tmp_path / 'proxmox.env'
    path.write_text(text, encoding='utf-8')
    os.chmod(path, mode)
    return str(path)


def failure(path) -> CheckError:
    with pytest.raises(CheckError) as info:
        _proxmox_env.load(path)
    err = info.value
    for text in (str(err), err.detail, err.where or '', err.remediation or '', repr(err.result())):
        assert SECRET not in text
    return err


def test_settings_parse_the_url_once_as_terraform_and_the_client_want_it(tmp_path):
    settings = _proxmox_env.load(write(tmp_path))
    assert (settings.host, settings.port, settings.prefix) == ('pve.example.org', 8006, None)
    assert settings.base_url == settings.api_url == 'https://pve.example.org:8006' == parse_api_url('https://pve.example.org')[3]
    assert (settings.node, settings.token_id, settings.token_secret) == ('pve', 'pipeline@pve!full', SECRET)
    assert settings.tls_verify is True and settings.ca_bundle is None and settings.source == str(tmp_path / 'proxmox.env')
    assert settings.public() == {'PROXMOX_API_URL': 'https://pve.example.org', 'PROXMOX_NODE': 'pve',
                                 'PROXMOX_TOKEN_ID': 'pipeline@pve!full'}
    proxied = _proxmox_env.ProxmoxSettings('https://[fd00::5]/pve/api2/json', 'pve', 'a@pve!t', SECRET, tls_verify=False)
    assert proxied.api_url == 'https://[fd00::5]:8006/pve' and proxied.prefix == 'pve' and proxied.port == 8006


def test_missing_file(tmp_path):
    path = str(tmp_path / 'proxmox.env')
    err = failure(path)
    assert err.check == 'proxmox_env_present' and err.where == path and err.detail == 'the file does not exist'
    assert 'mode 0600' in err.remediation and 'make demo' in err.remediation
    with pytest.raises(CheckError) as info:
        _proxmox_env.check_present(path)
    assert info.value.check == 'proxmox_env_present' and info.value.remediation == err.remediation


@pytest.mark.parametrize('mode', [0o640, 0o604, 0o644, 0o660])
def test_bad_mode(tmp_path, mode):
    path = write(tmp_path, mode=mode)
    err = failure(path)
    assert err.check == 'proxmox_env_valid' and err.where == path
    assert f'mode {mode:04o}' in err.detail and err.remediation == f'chmod 600 {path}'
    with pytest.raises(CheckError) as info:
        _proxmox_env.check_file(path)
    assert (info.value.check, info.value.where, info.value.remediation) == (err.check, err.where, err.remediation)


def test_not_a_regular_file(tmp_path):
    os.mkdir(tmp_path / 'proxmox.env')
    err = failure(str(tmp_path / 'proxmox.env'))
    assert err.check == 'proxmox_env_valid' and 'not a regular file' in err.detail and '0600' in err.remediation


@pytest.mark.parametrize('key', ['PROXMOX_API_URL', 'PROXMOX_NODE', 'PROXMOX_TOKEN_ID', 'PROXMOX_TOKEN_SECRET'])
def test_missing_key(tmp_path, key):
    text = ''.join(line + '\n' for line in GOOD.splitlines() if not line.startswith(key + '='))
    path = write(tmp_path, text)
    err = failure(path)
    assert err.check == 'proxmox_env_valid' and f'{key}: missing required key' in str(err)
    assert path in str(err) and 'fix the named keys' in err.remediation


@pytest.mark.parametrize('url, fragment', [
    ('http://pve.example.org:8006', 'not an https:// URL'),
    ('https://pve.example.org:99999', 'invalid port'),
    ('https://pve.example.org:8006/?x=1', 'query or fragment'),
    (f'https://root:{SECRET}@pve.example.org:8006', 'must not carry credentials'),
    (f'https://pve.example.org:8006/{SECRET}#x', 'query or fragment'),
])
def test_bad_url(tmp_path, url, fragment):
    path = write(tmp_path, GOOD.replace('https://pve.example.org', url))
    err = failure(path)
    assert err.check == 'proxmox_env_valid' and err.where == path
    assert 'PROXMOX_API_URL' in err.detail and fragment in err.detail
    assert err.remediation == _proxmox_env.URL_REMEDIATION


def test_unreadable_ca_bundle_and_syntax_errors_never_show_the_secret(tmp_path):
    err = failure(write(tmp_path, GOOD + 'PROXMOX_CA_BUNDLE=/nonexistent/ca.pem\n'))
    assert err.check == 'proxmox_env_valid' and 'PROXMOX_CA_BUNDLE' in err.detail
    err = failure(write(tmp_path, GOOD.replace(f'={SECRET}', f'={SECRET} trailing')))
    assert err.check == 'proxmox_env_valid'


def test_no_log_values_hold_the_secret_and_nothing_public(tmp_path):
    settings = _proxmox_env.load(write(tmp_path, GOOD + 'EXTRA_PASSWORD=hunter2\n'))
    assert settings.no_log_values() == _proxmox_env.no_log_values(settings) == {SECRET, 'hunter2'}
    assert _proxmox_env.no_log_values(None) == set()
    assert _proxmox_env.no_log_values({'PROXMOX_TOKEN_SECRET': SECRET, 'PROXMOX_NODE': 'pve'}) == {SECRET}
    assert SECRET not in repr(settings.public())


def test_secret_values_of_a_broken_file_and_of_none(tmp_path):
    """latest.env's guard reads the secrets even from a file the token check would refuse."""
    path = write(tmp_path, GOOD.replace('PROXMOX_NODE=pve\n', ''), mode=0o644)
    assert _proxmox_env.secret_values(path) == [SECRET]
    assert _proxmox_env.secret_values(str(tmp_path / 'none.env')) == []
