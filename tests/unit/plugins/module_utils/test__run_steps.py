# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The run's step bookkeeping (module_utils/_run_steps.py) and pipeline_run's actions step, diagnose and paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.eminfra.pipeline.plugins.module_utils import _run_steps
from ansible_collections.eminfra.pipeline.plugins.module_utils._envfile import read_env_file
from ansible_collections.eminfra.pipeline.plugins.module_utils._latest_env import LatestEnv
from ansible_collections.eminfra.pipeline.plugins.module_utils._state import STEPS, StateLayout

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
PIPELINE_RUN = os.path.join(REPO, 'plugins', 'modules', 'pipeline_run.py')


@pytest.fixture
def layout(tmp_path):
    layout = StateLayout(str(tmp_path / 'state'), project_root=str(tmp_path))
    return layout


def start(layout, dry_run=False):
    LatestEnv(layout).run(start_run=True, dry_run=dry_run)


def latest(layout) -> dict:
    return read_env_file(layout.latest_env)


def test_start_returns_the_time_and_writes_nothing(layout):
    start(layout)
    before = open(layout.latest_env, encoding='utf-8').read()
    out = _run_steps.record_step(layout, 'templates', 'start', records=[{'step': 'proxmox_access'}], now=100.0)
    assert out['started'] == 100.0 and out['records'] == [{'step': 'proxmox_access'}] and not out['recorded']
    assert open(layout.latest_env, encoding='utf-8').read() == before


def test_done_records_the_step_its_keys_duration_and_artefacts(layout):
    start(layout)
    result = {'ubuntu': {'path': '/s/ubuntu.img'}, 'talos': {'path': '/s/talos.raw'}, 'ubuntu_lxc': {'path': None}}
    out = _run_steps.record_step(layout, 'templates', 'done', records=[], started=100.0, result=result, now=112.34)
    assert out['recorded'] and out['changed']
    assert out['record'] == {'step': 'templates', 'status': 'completed', 'duration': 12.3,
                             'artefacts': [layout.manifest, '/s/ubuntu.img', '/s/talos.raw']}
    assert out['records'] == [out['record']]
    values = latest(layout)
    assert values['LAST_STEP_COMPLETED'] == 'templates'
    assert values['TEMPLATE_UBUNTU_IMAGE'] == '/s/ubuntu.img' and values['TEMPLATE_TALOS_IMAGE'] == '/s/talos.raw'


def test_proxmox_access_records_the_public_keys(layout):
    start(layout)
    env = {'PROXMOX_API_URL': 'https://pve:8006/api2/json', 'PROXMOX_NODE': 'pve', 'PROXMOX_TOKEN_ID': 'u@pve!t'}
    out = _run_steps.record_step(layout, 'proxmox_access', 'done', started=1.0, result={'proxmox_env': env}, now=2.0)
    assert out['record']['artefacts'] == [f'{layout.latest_env} (PROXMOX_API_URL, PROXMOX_NODE, PROXMOX_TOKEN_ID)']
    values = latest(layout)
    assert {key: values[key] for key in env} == env and values['LAST_STEP_COMPLETED'] == 'proxmox_access'


def test_a_revalidation_leaves_latest_env_as_it_is(layout):
    start(layout)
    before = open(layout.latest_env, encoding='utf-8').read()
    result = {'checks': [{'check': 'templates_present', 'artefacts': ['ubuntu: /a', 'talos: /b']}]}
    out = _run_steps.record_step(layout, 'templates', 'done', started=1.0, result=result, revalidation=True, now=2.0)
    assert not out['recorded']
    assert out['record']['status'] == 'revalidated' and out['record']['artefacts'] == ['ubuntu: /a', 'talos: /b']
    assert open(layout.latest_env, encoding='utf-8').read() == before


def test_a_dry_run_terraform_apply_without_templates_is_not_planned_and_not_recorded(layout):
    start(layout, dry_run=True)
    before = open(layout.latest_env, encoding='utf-8').read()
    out = _run_steps.record_step(layout, 'terraform_apply', 'done', started=1.0, result={}, now=2.0)
    assert not out['recorded'] and out['record']['artefacts'] == []
    assert out['record']['status'] == ('not planned (dry run): templates_present fails until the templates step '
                                       'has run')
    assert open(layout.latest_env, encoding='utf-8').read() == before
    planned = _run_steps.record_step(layout, 'terraform_apply', 'done', started=1.0, now=2.0,
                                     result={'workdir': '/w', 'outputs_path': '/w/outputs.json'})
    assert planned['record']['status'] == 'planned (dry run)' and planned['recorded']
    assert latest(layout)['DRY_RUN_LAST_STEP'] == 'terraform_apply' and latest(layout)['LAST_STEP_COMPLETED'] == ''


def test_terraform_apply_artefacts_name_the_pg_state(layout):
    start(layout)
    result = {'workdir': '/w', 'outputs_path': '/w/outputs.json', 'log_path': '/w/log', 'state_path': '/w/tfstate',
              'backend': {'type': 'pg', 'database': 'db', 'schema_name': 'k3s'}}
    out = _run_steps.record_step(layout, 'terraform_apply', 'done', started=1.0, result=result, now=2.0)
    assert out['record']['artefacts'] == ['/w/outputs.json', 'PostgreSQL db schema k3s', '/w/log']
    assert latest(layout)['TERRAFORM_OUTPUT_JSON'] == '/w/outputs.json'


def test_node_steps_name_their_nodes_or_their_empty_group(layout):
    start(layout)
    out = _run_steps.record_step(layout, 'ansible_base', 'done', started=1.0, hosts=['n1', 'n2'], now=2.0)
    assert out['record']['artefacts'] == ['configured: n1, n2']
    empty = _run_steps.record_step(layout, 'ansible_docker', 'done', started=1.0, hosts=[], now=2.0)
    assert empty['record']['artefacts'] == ['group docker has no hosts: nothing to configure']
    assert latest(layout)['LAST_STEP_COMPLETED'] == 'ansible_docker'


def test_failed_records_the_check_and_the_remediation_as_data(layout):
    start(layout)
    failed = {'failed': True, 'msg': 'token_privileges: missing VM.Allocate', 'failed_check': 'token_privileges',
              'remediation': ['pveum acl modify / --tokens u@pve!t --roles PVEVMAdmin'],
              'proxmox_env': {'PROXMOX_NODE': 'pve'}}
    out = _run_steps.record_step(layout, 'proxmox_access', 'failed', records=[], started=1.0, result=failed, now=3.0)
    assert out['recorded'] and out['failed_check'] == 'token_privileges'
    assert out['msg'] == 'proxmox_access failed: token_privileges: missing VM.Allocate'
    assert out['remediation'] == 'pveum acl modify / --tokens u@pve!t --roles PVEVMAdmin'
    assert out['record'] == {'step': 'proxmox_access', 'status': 'failed', 'duration': 2.0,
                             'failed_check': 'token_privileges', 'artefacts': []}
    values = latest(layout)
    assert values['LAST_STEP_FAILED'] == 'proxmox_access' and values['LAST_FAILED_CHECK'] == 'token_privileges'
    assert values['RUN_STATUS'] == 'failed' and values['PROXMOX_NODE'] == 'pve'


def test_a_failure_without_a_check_gets_the_steps_default(layout):
    start(layout)
    out = _run_steps.record_step(layout, 'terraform_apply', 'failed', started=1.0, result={'msg': 'boom'}, now=2.0)
    assert out['failed_check'] == 'terraform_apply'
    start(layout)
    again = _run_steps.record_step(layout, 'terraform_apply', 'failed', started=1.0, result={'msg': 'boom'},
                                   revalidation=True, now=2.0)
    assert again['failed_check'] == 'terraform_outputs_valid'


def test_an_already_recorded_failure_is_not_recorded_twice(layout):
    start(layout)
    LatestEnv(layout).run(step='templates', step_status='failed', failed_check='template_download')
    before = open(layout.latest_env, encoding='utf-8').read()
    out = _run_steps.record_step(layout, 'templates', 'failed', started=1.0, result={'msg': 'the step failed'}, now=2.0)
    assert not out['recorded'] and out['failed_check'] == 'template_download'
    assert out['record']['failed_check'] == 'template_download'
    assert open(layout.latest_env, encoding='utf-8').read() == before


def test_node_failures_name_every_failed_node_and_the_first_check(layout):
    start(layout)
    failures = {'n1': {'msg': 'sshd broken'}, 'n0': {'msg': 'apt failed', 'failed_check': 'packages_installed'}}
    out = _run_steps.record_step(layout, 'ansible_base', 'failed', started=1.0, failures=failures, now=2.0)
    assert out['failed_check'] == 'node_configured'  # the first node's (in the play's order), else the step's
    assert out['msg'].startswith('ansible_base failed: node_configured: n1, n0: sshd broken. Remediation: ')
    assert latest(layout)['LAST_FAILED_CHECK'] == 'node_configured'
    start(layout)
    named = _run_steps.record_step(layout, 'ansible_docker', 'failed', started=1.0, now=2.0,
                                   failures={'n0': {'msg': 'apt failed', 'failed_check': 'packages_installed'}})
    assert named['failed_check'] == 'packages_installed'


def test_unreachable_nodes_fail_hosts_reachable(layout):
    start(layout)
    loop = [{'node_inventory_node': 'n1', 'ansible_loop_var': 'node_inventory_node', 'state': 'started'},
            {'node_inventory_node': 'n2', 'ansible_loop_var': 'node_inventory_node', 'failed': True,
             'invocation': {'module_args': {'timeout': 3}}}]
    out = _run_steps.record_step(layout, 'ansible_inventory', 'failed', started=1.0,
                                 result={'failed': True, 'results': loop}, now=2.0)
    assert out['failed_check'] == 'hosts_reachable'
    assert 'hosts_reachable: n2: no SSH answer within 3 s (addresses: ansible-inventory --list)' in out['msg']


def test_diagnose_marks_the_checks_of_steps_not_yet_completed_pending():
    checks = [{'check': 'proxmox_env_valid', 'status': 'ok', 'detail': 'mode 0600', 'remediation': ''},
              {'check': 'templates_present', 'status': 'failed', 'detail': 'no manifest', 'remediation': 'run it'},
              {'check': 'terraform_outputs_valid', 'status': 'failed', 'detail': 'no outputs', 'remediation': 'x'}]
    latest_record = {'exists': True, 'values': {'RUN_ID': 'r1', 'RUN_STATUS': 'succeeded',
                                                'LAST_STEP_COMPLETED': 'templates'}}
    rows = _run_steps.diagnose(latest_record, checks, {'changed': False}, ['n1'], ['n1'])
    by_check = {row['check']: row for row in rows}
    assert [row['check'] for row in rows] == ['latest_env_valid', 'last_run', 'proxmox_env_valid', 'templates_present',
                                              'terraform_outputs_valid', 'token_valid', 'hosts_reachable']
    assert by_check['templates_present']['status'] == 'failed'  # templates completed: a real failure
    assert by_check['terraform_outputs_valid']['status'] == 'pending'
    assert by_check['hosts_reachable']['status'] == 'pending'
    assert by_check['latest_env_valid']['detail'] == 'run r1 succeeded; LAST_STEP_COMPLETED=templates'
    table = _run_steps.render_rows(rows)
    assert table[0].split() == ['CHECK', 'STATUS', 'DETAIL', '/', 'REMEDIATION']
    assert any(line.strip() == 'remediation: run it' for line in table)


def test_diagnose_without_a_run_or_a_token():
    rows = _run_steps.diagnose({'exists': False, 'values': {}}, [], None, [], [])
    assert [(row['check'], row['status']) for row in rows] == [
        ('latest_env_valid', 'pending'), ('last_run', 'pending'), ('token_valid', 'pending'), ('hosts_reachable', 'pending')]
    broken = _run_steps.diagnose({'error': 'latest_env_valid: bad line', 'remediation': 'fix it'}, [],
                                 {'failed_check': 'token_valid', 'msg': '401', 'remediation': ['a', 'b']}, [], [])
    assert broken[0] == {'check': 'latest_env_valid', 'status': 'failed', 'detail': 'latest_env_valid: bad line',
                         'remediation': 'fix it'}
    assert broken[2] == {'check': 'token_valid', 'status': 'failed', 'detail': '401', 'remediation': 'a; b'}


def test_the_check_to_step_map_names_pipeline_steps():
    assert set(_run_steps.CHECK_STEP.values()) <= set(STEPS)
    assert [entry['name'] for entry in _run_steps.step_table()] == list(STEPS)


def run_module(tmp_path, args: dict) -> dict:
    path = tmp_path / 'args.json'
    path.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': args}), encoding='utf-8')
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, '.collections'), EMINFRA_PROJECT_ROOT=str(tmp_path),
               EMINFRA_STATE_DIR=str(tmp_path / 'state'))
    proc = subprocess.run([sys.executable, PIPELINE_RUN, str(path)], cwd=str(tmp_path), env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    return json.loads(proc.stdout)


def test_module_paths_take_the_state_root_from_the_environment(tmp_path):
    result = run_module(tmp_path, {'action': 'paths'})
    assert result['paths']['latest_env'] == str(tmp_path / 'state' / 'runs' / 'latest.env')
    assert result['paths']['manifest'] == str(tmp_path / 'state' / 'cache' / 'templates' / 'manifest.json')
    assert not result['changed']


def test_module_step_returns_the_records_as_facts(tmp_path):
    layout = StateLayout(str(tmp_path / 'state'), project_root=str(tmp_path))
    start(layout)
    begun = run_module(tmp_path, {'action': 'step', 'step': 'ansible_inventory', 'event': 'start', 'steps': []})
    started = begun['ansible_facts']['eminfra_step_started']
    done = run_module(tmp_path, {'action': 'step', 'step': 'ansible_inventory', 'started': started, 'hosts': ['n1'],
                                 'steps': begun['ansible_facts']['eminfra_step_records']})
    assert done['recorded'] and done['ansible_facts']['eminfra_step_records'] == [done['record']]
    assert done['record']['artefacts'] == ['SSH answers on: n1']
    assert latest(layout)['LAST_STEP_COMPLETED'] == 'ansible_inventory'
    refused = run_module(tmp_path, {'action': 'step', 'event': 'done'})
    assert refused['failed'] and refused['failed_check'] == 'pipeline_run_options'


def test_check_mode_computes_the_record_and_writes_nothing(layout):
    start(layout)
    before = open(layout.latest_env, encoding='utf-8').read()
    out = _run_steps.record_step(layout, 'ansible_inventory', 'done', started=1.0, hosts=['n1'], now=2.0,
                                 check_mode=True)
    assert out['record']['status'] == 'completed' and out['record']['artefacts'] == ['SSH answers on: n1']
    failed = _run_steps.record_step(layout, 'ansible_inventory', 'failed', started=1.0, result={'msg': 'x'}, now=2.0,
                                    check_mode=True)
    assert failed['failed_check'] == 'hosts_reachable'
    assert open(layout.latest_env, encoding='utf-8').read() == before
