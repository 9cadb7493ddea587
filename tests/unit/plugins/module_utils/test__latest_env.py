# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import datetime
import os
import re
import stat
import subprocess

import pytest

from ansible_collections.eminfra.pipeline.plugins.module_utils._contracts import LATEST_ENV_REQUIRED
from ansible_collections.eminfra.pipeline.plugins.module_utils._envfile import parse_env
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError
from ansible_collections.eminfra.pipeline.plugins.module_utils._latest_env import (
    LatestEnv,
    new_run_id,
    run_timestamp,
)
from ansible_collections.eminfra.pipeline.plugins.module_utils._state import StateLayout

SECRET = '6f1c9a52-3e0b-4d8f-9c2a-5b7e1d0f4a93'


@pytest.fixture
def record(tmp_path):
    return LatestEnv(StateLayout(str(tmp_path / 'state'), project_root=str(tmp_path)))


def on_disk(record):
    with open(record.path, encoding='utf-8') as handle:
        return parse_env(handle.read())


def test_run_id_and_timestamp_formats():
    now = datetime.datetime(2026, 1, 30, 9, 0, 5, tzinfo=datetime.timezone.utc)
    assert re.fullmatch(r'20260130T090005Z-[0-9a-f]{6}', new_run_id(now))
    assert re.fullmatch(r'2026-01-30T\d\d:\d\d:05[+-]\d\d:\d\d', run_timestamp(now))


def test_start_run_writes_every_required_key_and_a_run_copy(record, tmp_path):
    result = record.run(start_run=True)
    values = on_disk(record)
    assert result['changed'] is True
    assert result['values'] == values
    assert list(values)[:len(LATEST_ENV_REQUIRED)] == list(LATEST_ENV_REQUIRED)
    assert re.fullmatch(r'\d{8}T\d{6}Z-[0-9a-f]{6}', values['RUN_ID'])
    assert values['DRY_RUN'] == 'false'
    assert values['RUN_STATUS'] == 'running'
    assert values['LAST_STEP_COMPLETED'] == ''
    assert values['TEMPLATE_UBUNTU_IMAGE'] == values['TEMPLATE_TALOS_IMAGE'] == ''
    state = tmp_path / 'state'
    assert values['TERRAFORM_WORKDIR'] == str(state / 'cache' / 'terraform')
    assert values['TERRAFORM_OUTPUT_JSON'] == str(state / 'cache' / 'terraform' / 'outputs.json')
    assert values['ANSIBLE_INVENTORY_PATH'] == str(tmp_path / 'inventory' / 'proxmox_dynamic.yml')
    assert result['run_dir'] == str(state / 'runs' / values['RUN_ID'])
    with open(os.path.join(result['run_dir'], 'latest.env'), encoding='utf-8') as copy:
        assert copy.read() == result['diff']['after']
    assert stat.S_IMODE(os.stat(record.path).st_mode) == 0o644


def test_same_input_twice_is_not_a_change(record):
    record.run(start_run=True)
    first = record.run(step='proxmox_access', values={'PROXMOX_NODE': 'pve', 'PORT': 8006, 'TLS': True})
    second = record.run(step='proxmox_access', values={'PROXMOX_NODE': 'pve', 'PORT': 8006, 'TLS': True})
    assert first['changed'] is True
    assert second['changed'] is False
    assert second['diff']['before'] == second['diff']['after']
    assert on_disk(record)['PORT'] == '8006'
    assert on_disk(record)['TLS'] == 'true'


def test_failed_step_never_advances_last_step_completed(record):
    record.run(start_run=True)
    record.run(step='terraform_apply')
    result = record.run(step='ansible_base', step_status='failed', failed_check='hosts_reachable')
    assert result['values']['LAST_STEP_COMPLETED'] == 'terraform_apply'
    assert result['values']['LAST_STEP_FAILED'] == 'ansible_base'
    assert result['values']['LAST_FAILED_CHECK'] == 'hosts_reachable'
    assert result['values']['RUN_STATUS'] == 'failed'


def test_new_run_keeps_last_step_completed_and_clears_the_failure(record):
    record.run(start_run=True)
    record.run(step='templates')
    record.run(step='terraform_apply', step_status='failed', failed_check='templates_present')
    result = record.run(start_run=True)
    assert result['values']['LAST_STEP_COMPLETED'] == 'templates'
    assert 'LAST_STEP_FAILED' not in result['values']
    assert 'LAST_FAILED_CHECK' not in result['values']
    assert result['values']['RUN_STATUS'] == 'running'


def test_dry_run_never_makes_a_real_run_skip_a_step(record):
    record.run(start_run=True)
    record.run(step='proxmox_access')
    dry = record.run(start_run=True, dry_run=True)
    assert dry['values']['DRY_RUN'] == 'true'
    assert dry['values']['LAST_STEP_COMPLETED'] == 'proxmox_access'
    for step in ('templates', 'terraform_apply'):
        result = record.run(step=step)
    assert result['values']['LAST_STEP_COMPLETED'] == 'proxmox_access'
    assert result['values']['DRY_RUN_LAST_STEP'] == 'terraform_apply'
    real = record.run(start_run=True, dry_run=False)
    assert real['values']['LAST_STEP_COMPLETED'] == 'proxmox_access'
    assert 'DRY_RUN_LAST_STEP' not in real['values']


def test_run_status_closes_the_run(record):
    record.run(start_run=True)
    result = record.run(step='ansible_docker', run_status='succeeded')
    assert result['values']['RUN_STATUS'] == 'succeeded'
    assert result['values']['LAST_STEP_COMPLETED'] == 'ansible_docker'


def test_check_mode_writes_nothing(record):
    result = record.run(start_run=True, check_mode=True)
    assert result['changed'] is True
    assert not os.path.exists(record.path)
    assert not os.path.exists(result['run_dir'])
    record.run(start_run=True)
    before = open(record.path, 'rb').read()
    result = record.run(step='templates', check_mode=True)
    assert result['changed'] is True
    assert result['values']['LAST_STEP_COMPLETED'] == 'templates'
    assert open(record.path, 'rb').read() == before


def test_read_only_call(record):
    result = record.run()
    assert result['changed'] is False
    assert result['exists'] is False
    assert result['values'] == {}
    record.run(start_run=True)
    result = record.run()
    assert result['exists'] is True
    assert result['values'] == on_disk(record)


@pytest.mark.parametrize('values', [{'PROXMOX_TOKEN_SECRET': SECRET}, {'DB_PASSWORD': 'x'},
                                    {'ssh_private_key': 'x'}])
def test_secret_keys_are_refused_and_the_file_is_unchanged(record, values):
    record.run(start_run=True)
    before = open(record.path, 'rb').read()
    with pytest.raises(CheckError) as err:
        record.run(values=values)
    assert str(err.value).startswith('latest_env_secret: values.')
    assert SECRET not in str(err.value)
    assert open(record.path, 'rb').read() == before


def test_values_holding_a_handed_secret_are_refused(record):
    record.run(start_run=True)
    before = open(record.path, 'rb').read()
    with pytest.raises(CheckError) as err:
        record.run(values={'PROXMOX_VE_API_TOKEN': f'pipeline@pve!full={SECRET}'}, secrets=[SECRET])
    assert str(err.value).startswith('latest_env_secret: ')
    assert 'PROXMOX_VE_API_TOKEN' in str(err.value)
    assert SECRET not in str(err.value)
    assert open(record.path, 'rb').read() == before
    # the secret list alone changes nothing
    assert record.run(step='proxmox_access', secrets=[SECRET, ''])['changed'] is True


def test_a_secret_key_in_the_existing_file_is_refused(record):
    record.run(start_run=True)
    with open(record.path, 'a', encoding='utf-8') as handle:
        handle.write(f"PROXMOX_TOKEN_SECRET='{SECRET}'\n")
    with pytest.raises(CheckError) as err:
        record.run(step='templates')
    assert str(err.value).startswith(f'latest_env_secret: {record.path}: PROXMOX_TOKEN_SECRET names a secret')
    assert SECRET not in str(err.value)


@pytest.mark.parametrize('options, check', [
    ({'values': {'LAST_STEP_COMPLETED': 'ansible_docker'}}, 'latest_env_value'),
    ({'values': {'RUN_ID': 'x'}}, 'latest_env_value'),
    ({'values': {'bad key': 'x'}}, 'latest_env_value'),
    ({'values': {'LIST': ['a']}}, 'latest_env_value'),
    ({'values': {'CR': 'a\rb'}}, 'latest_env_value'),
    ({'dry_run': True}, 'latest_env_options'),
    ({'step': 'deploy'}, 'latest_env_options'),
    ({'step': 'templates', 'failed_check': 'x'}, 'latest_env_options'),
    ({'values': {'PROXMOX_API_URL': 'x'}, 'run_status': 'done'}, 'latest_env_valid'),
    ({'step': 'templates', 'step_status': 'failed', 'failed_check': 'Not A Check'}, 'latest_env_valid'),
])
def test_refusals(record, options, check):
    record.run(start_run=True)
    before = open(record.path, 'rb').read()
    with pytest.raises(CheckError) as err:
        record.run(**options)
    assert str(err.value).startswith(f'{check}: ')
    assert 'Remediation: ' in str(err.value)
    assert open(record.path, 'rb').read() == before


def test_steps_need_a_run(record):
    with pytest.raises(CheckError) as err:
        record.run(step='templates')
    assert str(err.value).startswith(f'latest_env_run: {record.path}: no run is recorded yet')
    assert not os.path.exists(record.path)


def test_malformed_file_names_file_and_line(record):
    os.makedirs(os.path.dirname(record.path))
    with open(record.path, 'w', encoding='utf-8') as handle:
        handle.write("RUN_ID='20260130T090000Z-a1b2c3'\nLAST_STEP_COMPLETED\n")
    with pytest.raises(CheckError) as err:
        record.run(start_run=True)
    assert str(err.value).startswith(f'latest_env_valid: {record.path} line 2: no "="')


def test_existing_mode_0600_is_kept(record):
    record.run(start_run=True)
    os.chmod(record.path, 0o600)
    record.run(step='templates')
    assert stat.S_IMODE(os.stat(record.path).st_mode) == 0o600


def test_bash_sources_the_record(record):
    record.run(start_run=True)
    result = record.run(step='proxmox_access', values={'NOTE': "it's $HOME `id` \\ \"q\"\nline 2"})
    proc = subprocess.run(['bash', '-c', 'set -u; . "$1"; printf "%s|%s|%s" "$RUN_ID" "$LAST_STEP_COMPLETED" "$NOTE"',
                           'bash', record.path], capture_output=True, text=True, check=True)
    assert proc.stdout == f"{result['run_id']}|proxmox_access|it's $HOME `id` \\ \"q\"\nline 2"


def test_values_holding_the_proxmox_env_secret_are_refused_unasked(record):
    os.makedirs(record.layout.root)
    with open(record.layout.proxmox_env, 'w', encoding='utf-8') as handle:
        handle.write(f"PROXMOX_API_URL=https://127.0.0.1:8006\nPROXMOX_TOKEN_SECRET='{SECRET}'\n")
    os.chmod(record.layout.proxmox_env, 0o600)
    record.run(start_run=True)
    before = open(record.path, 'rb').read()
    with pytest.raises(CheckError) as err:
        record.run(values={'NOTE': f'copied {SECRET} by mistake'})
    assert str(err.value).startswith(f'latest_env_secret: {record.path}: NOTE: the value holds a secret')
    assert SECRET not in str(err.value)
    assert open(record.path, 'rb').read() == before


def test_a_malformed_proxmox_env_does_not_block_the_record(record):
    os.makedirs(record.layout.root)
    with open(record.layout.proxmox_env, 'wb') as handle:
        handle.write(b'\x00\xff garbage')
    assert record.run(start_run=True)['changed'] is True
