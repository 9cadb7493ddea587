# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""proxmox.env problems fail before any network call.

The URL points at a listening socket that counts connections: it must count none.
"""

from __future__ import annotations

import pytest

from tests.integration.proxmox_access.helpers import run_module, write_env, write_intent

SECRET = 'c0ffee00-1111-2222-3333-444455556666'


def _values(port: int, **override) -> dict:
    values = {
        'PROXMOX_API_URL': f'https://127.0.0.1:{port}',
        'PROXMOX_NODE': 'pve',
        'PROXMOX_TOKEN_ID': 'pipeline@pve!full',
        'PROXMOX_TOKEN_SECRET': SECRET,
        'PROXMOX_TLS_VERIFY': 'true',
    }
    values.update(override)
    return {key: val for key, val in values.items() if val is not None}


CASES = {
    'mode_0644': ({}, 0o644, 'proxmox_env_valid', ['mode 0644', 'Remediation: chmod 600 ']),
    'missing_key': ({'PROXMOX_NODE': None}, 0o600, 'proxmox_env_valid', ['PROXMOX_NODE: missing required key']),
    'malformed_token_id': ({'PROXMOX_TOKEN_ID': 'pipeline@pve:full'}, 0o600, 'proxmox_env_valid',
                           ['PROXMOX_TOKEN_ID', "'pipeline@pve:full' does not match"]),
    'tls_verify_word': ({'PROXMOX_TLS_VERIFY': 'yes'}, 0o600, 'proxmox_env_valid', ['PROXMOX_TLS_VERIFY']),
    'http_url': ({'PROXMOX_API_URL': 'http://127.0.0.1:{port}'}, 0o600, 'proxmox_env_valid',
                 ['PROXMOX_API_URL', 'HTTPS only']),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_bad_env_file_fails_before_any_connection(case, tmp_path, recorder):
    override, mode, check, fragments = CASES[case]
    override = {key: (val.format(port=recorder.port) if isinstance(val, str) else val) for key, val in override.items()}
    state = tmp_path / 'state'
    env_file = write_env(state / 'proxmox.env', _values(recorder.port, **override), mode=mode)
    args = dict(write_intent(tmp_path / 'intent'), env_file=str(env_file))
    run = run_module(tmp_path, state, args)
    assert run.rc != 0
    result = run.result
    assert result['failed'] is True
    assert result['failed_check'] == check
    assert result['msg'].startswith(f'{check}: ')
    assert str(env_file) in result['msg']
    for fragment in fragments:
        assert fragment in result['msg']
    assert recorder.connections == 0
    run.assert_secret_absent(SECRET)


def test_missing_env_file_names_keys_and_demo(tmp_path, recorder):
    state = tmp_path / 'state'
    state.mkdir()
    run = run_module(tmp_path, state, write_intent(tmp_path / 'intent'))
    result = run.result
    assert result['failed_check'] == 'proxmox_env_present'
    assert result['msg'].startswith(f'proxmox_env_present: {state}/proxmox.env: the file does not exist')
    for key in ('PROXMOX_API_URL', 'PROXMOX_NODE', 'PROXMOX_TOKEN_ID', 'PROXMOX_TOKEN_SECRET', 'make demo', '0600'):
        assert key in result['msg']
    assert recorder.connections == 0


def test_raw_pci_address_refused_before_any_connection(tmp_path, recorder):
    state = tmp_path / 'state'
    env_file = write_env(state / 'proxmox.env', _values(recorder.port))
    args = {'env_file': str(env_file), 'vm_storage': 'local-lvm', 'template_storage': 'local', 'bridge': 'vmbr0',
            'pci_mappings': ['0000:01:00.0']}
    run = run_module(tmp_path, state, args)
    assert run.result['failed_check'] == 'pci_mapping_valid'
    assert 'pvesh create /cluster/mapping/pci' in run.result['msg']
    assert recorder.connections == 0
    run.assert_secret_absent(SECRET)


def test_secret_given_as_option_is_masked(tmp_path, recorder):
    """With the values as options (token_secret no_log) a bad token id still fails offline, secret hidden."""
    state = tmp_path / 'state'
    state.mkdir()
    args = {'api_url': f'https://127.0.0.1:{recorder.port}/api2/json', 'node': 'pve', 'token_id': 'nobang@pve',
            'token_secret': SECRET, 'vm_storage': 'local-lvm', 'template_storage': 'local', 'bridge': 'vmbr0'}
    run = run_module(tmp_path, state, args)
    assert run.result['failed_check'] == 'proxmox_env_valid'
    assert 'PROXMOX_TOKEN_ID' in run.result['msg'] and 'module options' in run.result['msg']
    assert recorder.connections == 0
    run.assert_secret_absent(SECRET)
