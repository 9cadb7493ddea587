# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""eminfra.pipeline.latest_env through real ansible-playbook and ansible-doc runs."""

from __future__ import annotations

import json
import os
import subprocess

from ansible_collections.eminfra.pipeline.plugins.module_utils._latest_env import LatestEnv
from ansible_collections.eminfra.pipeline.plugins.module_utils._state import StateLayout
from tests.ansible_run import ROOT, run_doc, run_playbook

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = '0d3f8b7e-51a2-4c69-8e0f-2b9c7a4d6e15'


def playbook(name: str) -> str:
    return os.path.join(HERE, name)


def started_run(state) -> str:
    """Start a run with the module's own code (for tests where starting is not what is tested)."""
    return LatestEnv(StateLayout(str(state), project_root=ROOT)).run(start_run=True)['run_id']


def extra(**variables) -> list[str]:
    return ['-e', json.dumps(variables)]


def test_ansible_doc_prints_the_full_documentation():
    text = run_doc('eminfra.pipeline.latest_env')
    assert text.rc == 0, text.output
    for needed in ('start_run', 'dry_run', 'step_status', 'failed_check', 'run_status', 'secrets', 'state_dir',
                   'EMINFRA_STATE_DIR', 'ATTRIBUTES', 'check_mode', 'diff_mode', 'idempotent', 'EXAMPLES',
                   'RETURN VALUES', 'run_dir', 'DRY_RUN_LAST_STEP'):
        assert needed in text.stdout, needed
    doc = run_doc('eminfra.pipeline.latest_env', '--json')
    assert doc.rc == 0, doc.output
    module = json.loads(doc.stdout)['eminfra.pipeline.latest_env']
    assert set(module['doc']['options']) == {
        'path', 'state_dir', 'start_run', 'dry_run', 'values', 'step', 'step_status', 'failed_check', 'run_status',
        'secrets'}
    assert {'values', 'path', 'run_id', 'run_dir', 'diff'} <= set(module['return'])
    assert module['doc']['attributes']['check_mode']['support'] == 'full'


def test_playbook_writes_a_sourceable_record_and_is_idempotent(tmp_path):
    state = tmp_path / 'state'
    start = run_playbook(playbook('start_run.yml'), state_dir=str(state))
    assert start.rc == 0, start.output
    started = start.result('Start a run')
    assert started['changed'] is True
    assert started['path'] == str(state / 'runs' / 'latest.env')

    variables = extra(latest_step='proxmox_access',
                      latest_values={'PROXMOX_API_URL': 'https://127.0.0.1:8006', 'PROXMOX_NODE': 'pve',
                                     'PROXMOX_TOKEN_ID': 'pipeline@pve!full'})
    first = run_playbook(playbook('record_step.yml'), *variables, state_dir=str(state))
    assert first.rc == 0, first.output
    assert first.result('Record the step')['changed'] is True
    again = run_playbook(playbook('record_step.yml'), *variables, state_dir=str(state))
    assert again.rc == 0, again.output
    assert again.result('Record the step')['changed'] is False
    assert 'changed=0' in again.stdout

    proc = subprocess.run(['bash', '-c', 'set -u; . state/runs/latest.env; echo "$RUN_ID $LAST_STEP_COMPLETED"'],
                          cwd=tmp_path, capture_output=True, text=True, check=True)
    assert proc.stdout == f"{started['run_id']} proxmox_access\n"
    copy = state / 'runs' / started['run_id'] / 'latest.env'
    assert copy.read_bytes() == (state / 'runs' / 'latest.env').read_bytes()

    read = run_playbook(playbook('read_back.yml'), state_dir=str(state))
    assert read.rc == 0, read.output
    assert read.result('Read latest.env')['values']['PROXMOX_NODE'] == 'pve'


def test_check_and_diff_mode(tmp_path):
    state = tmp_path / 'state'
    started_run(state)
    before = (state / 'runs' / 'latest.env').read_bytes()
    checked = run_playbook(playbook('record_step.yml'), '--check', '--diff', *extra(latest_step='templates'),
                           state_dir=str(state))
    assert checked.rc == 0, checked.output
    result = checked.result('Record the step')
    assert result['changed'] is True
    assert result['values']['LAST_STEP_COMPLETED'] == 'templates'
    assert "+LAST_STEP_COMPLETED='templates'" in checked.stdout
    assert "-LAST_STEP_COMPLETED=''" in checked.stdout
    assert (state / 'runs' / 'latest.env').read_bytes() == before


def test_token_secret_is_refused_and_the_file_is_unchanged(tmp_path):
    state = tmp_path / 'state'
    started_run(state)
    latest = state / 'runs' / 'latest.env'
    before = latest.read_bytes()
    refused = run_playbook(playbook('record_step.yml'), '-vvv',
                           *extra(latest_step='proxmox_access', latest_values={'PROXMOX_TOKEN_SECRET': SECRET}),
                           state_dir=str(state))
    assert refused.rc == 2, refused.output
    result = refused.result('Record the step')
    assert refused.task('Record the step')[0]['status'] == 'failed'
    assert result['msg'].startswith('latest_env_secret: values.PROXMOX_TOKEN_SECRET: PROXMOX_TOKEN_SECRET names '
                                    'a secret')
    assert result['failed_check'] == 'latest_env_secret'
    assert latest.read_bytes() == before
    assert SECRET not in latest.read_text()


def test_value_holding_a_handed_secret_is_refused_without_showing_it(tmp_path):
    state = tmp_path / 'state'
    started_run(state)
    latest = state / 'runs' / 'latest.env'
    before = latest.read_bytes()
    refused = run_playbook(playbook('record_step.yml'), '-vvv',
                           *extra(latest_step='proxmox_access', latest_secrets=[SECRET],
                                  latest_values={'PROXMOX_VE_API_TOKEN': f'pipeline@pve!full={SECRET}'}),
                           state_dir=str(state))
    assert refused.rc == 2, refused.output
    result = refused.result('Record the step')
    assert result['msg'].startswith('latest_env_secret: ')
    assert latest.read_bytes() == before
    # Neither the result nor the -vvv play output shows it (no_log masks it in the invocation).
    assert SECRET not in json.dumps(result)
    assert SECRET not in refused.stdout
    assert SECRET not in refused.stderr
    for path in state.rglob('*'):
        if path.is_file():
            assert SECRET not in path.read_text(errors='replace'), path


def test_dry_run_keeps_last_step_completed(tmp_path):
    state = tmp_path / 'state'
    run = run_playbook(playbook('dry_run.yml'), state_dir=str(state))
    assert run.rc == 0, run.output
    values = run.result('Complete templates in the dry run')['values']
    assert values['LAST_STEP_COMPLETED'] == 'proxmox_access'
    assert values['DRY_RUN_LAST_STEP'] == 'templates'
    assert run.task('Check that the real progress stayed')[0]['status'] == 'ok'


def test_malformed_record_fails_naming_file_and_line_without_a_traceback(tmp_path):
    runs = tmp_path / 'state' / 'runs'
    runs.mkdir(parents=True)
    latest = runs / 'latest.env'
    latest.write_bytes(b"RUN_ID='20260130T090000Z-a1b2c3'\nDRY_RUN='false\n\x00\x01\x02garbage\n")
    failed = run_playbook(playbook('record_step.yml'), *extra(latest_step='templates'),
                          state_dir=str(tmp_path / 'state'))
    assert failed.rc == 2, failed.output
    result = failed.result('Record the step')
    assert result['msg'].startswith(f'latest_env_valid: {latest} line 3: binary content (NUL byte)')
    assert result['failed_check'] == 'latest_env_valid'
    assert 'Traceback' not in failed.stdout + failed.stderr
    assert 'exception' not in result
