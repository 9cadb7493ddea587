# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The proxmox_access role against pvesim: the step recorded in latest.env (by pipeline_run, from the role's
result, the way site.yml records it), never the secret."""

from __future__ import annotations

from ansible_collections.eminfra.pipeline.plugins.module_utils._envfile import read_env_file

from tests.integration.proxmox_access.helpers import run_module, write_env, write_intent


def _role_run(tmp_path, pvesim, token='full', **override):
    values = dict(pvesim.env(token))
    values.update(override)
    state = tmp_path / 'state'
    write_env(state / 'proxmox.env', values)
    intent = write_intent(tmp_path / 'intent')
    run = run_module(tmp_path, state, {}, role=True,
                     extra_vars={'proxmox_access_cluster_file': intent['cluster_file'],
                                 'proxmox_access_nodes_file': intent['nodes_file']})
    run.assert_secret_absent(values['PROXMOX_TOKEN_SECRET'])
    latest = read_env_file(str(state / 'runs' / 'latest.env'))
    return run, values, latest


def test_role_records_the_completed_step(tmp_path, pvesim):
    run, values, latest = _role_run(tmp_path, pvesim)
    assert run.rc == 0, run.output[-3000:]
    assert latest['LAST_STEP_COMPLETED'] == 'proxmox_access'
    for key in ('PROXMOX_API_URL', 'PROXMOX_NODE', 'PROXMOX_TOKEN_ID', 'PROXMOX_TLS_VERIFY', 'PROXMOX_CA_BUNDLE'):
        assert latest[key] == values[key]
    assert 'PROXMOX_TOKEN_SECRET' not in latest
    assert latest.get('LAST_STEP_FAILED', '') == ''
    # the run's own copy carries the same record
    copy = read_env_file(str(tmp_path / 'state' / 'runs' / latest['RUN_ID'] / 'latest.env'))
    assert copy['LAST_STEP_COMPLETED'] == 'proxmox_access'


def test_role_records_the_failed_check_then_fails(tmp_path, pvesim):
    run, values, latest = _role_run(tmp_path, pvesim, token='nodownload')
    assert run.rc != 0
    assert latest['LAST_STEP_COMPLETED'] == ''
    assert latest['LAST_STEP_FAILED'] == 'proxmox_access'
    assert latest['LAST_FAILED_CHECK'] == 'token_privileges'
    assert latest['RUN_STATUS'] == 'failed'
    assert latest['PROXMOX_TOKEN_ID'] == values['PROXMOX_TOKEN_ID']
    assert run.result['msg'].startswith('token_privileges: ')
    # the remediation is shown as its own task output before the failure
    assert "pveum acl modify /nodes/pve --tokens 'pipeline@pve!nodownload' --roles EMInfraPipeline" in run.output


def test_role_env_file_failure_is_recorded(tmp_path, pvesim):
    state = tmp_path / 'state'
    values = dict(pvesim.env('full'))
    write_env(state / 'proxmox.env', values, mode=0o644)
    intent = write_intent(tmp_path / 'intent')
    run = run_module(tmp_path, state, {}, role=True,
                     extra_vars={'proxmox_access_cluster_file': intent['cluster_file'],
                                 'proxmox_access_nodes_file': intent['nodes_file']})
    run.assert_secret_absent(values['PROXMOX_TOKEN_SECRET'])
    latest = read_env_file(str(state / 'runs' / 'latest.env'))
    assert run.rc != 0
    assert latest['LAST_FAILED_CHECK'] == 'proxmox_env_valid'
    assert run.result['msg'].endswith(f'Remediation: chmod 600 {state}/proxmox.env')


def test_role_outside_site_yml_in_a_run_of_its_own(tmp_path, pvesim):
    # The role writes no run record; a playbook of the operator's starts, records and closes the run.
    values = dict(pvesim.env('full'))
    state = tmp_path / 'state'
    write_env(state / 'proxmox.env', values)
    intent = write_intent(tmp_path / 'intent')
    run = run_module(tmp_path, state, {}, role=True, close_run=True,
                     extra_vars={'proxmox_access_cluster_file': intent['cluster_file'],
                                 'proxmox_access_nodes_file': intent['nodes_file']})
    run.assert_secret_absent(values['PROXMOX_TOKEN_SECRET'])
    assert run.rc == 0, run.output[-3000:]
    latest = read_env_file(str(state / 'runs' / 'latest.env'))
    assert latest['LAST_STEP_COMPLETED'] == 'proxmox_access'
    assert latest['RUN_STATUS'] == 'succeeded'
