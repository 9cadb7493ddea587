# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""site.yml's failure rules and run controls, and diagnostics.yml on healthy, half-done and broken states."""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.integration.site.conftest import DIAGNOSTICS

pytestmark = pytest.mark.slow

TERRAFORM_TASK = 'Plan and apply the Terraform environment (templates re-validated first)'
FETCH_TASK = 'Start fetching the artefact in the background'


def diagnostics_table(result) -> str:
    return '\n'.join(entry['result'].get('msg', '') for entry in result.task('Show the checks'))


def row(table: str, check: str) -> str:
    found = [line for line in table.splitlines() if line.split(' ', 1)[0] == check]
    assert found, table
    return found[0]


def test_no_proxmox_env_stops_at_once(site):
    os.unlink(site.path('proxmox.env'))
    run = site.run()
    assert run.rc != 0
    failed = [entry for entry in run.results if entry['status'] == 'failed']
    assert [entry['task'] for entry in failed] == ["Plan the run, take the run lock and record the run's start"]
    msg = failed[0]['result']['msg']
    assert msg.startswith('proxmox_env_present: ') and 'PROXMOX_TOKEN_SECRET' in msg and 'make demo' in msg
    assert not os.path.exists(site.path('runs', 'latest.env'))
    assert not os.path.exists(site.path('runs', 'run.lock'))


def test_failed_ansible_step_resume_templates_removed_and_diagnostics(site, ssh_node):
    ssh_node.stop()  # the node does not answer SSH: the ansible_inventory step fails
    # A node that never answers: this run waits 3 s for it instead of the default 300 s.
    first = site.run(eminfra_ssh_wait_timeout=3)
    assert first.rc != 0
    assert 'hosts_reachable: util-01' in first.stdout and 'eminfra_resume=true' in first.stdout
    latest = site.latest
    assert latest['LAST_STEP_COMPLETED'] == 'terraform_apply'
    assert latest['LAST_STEP_FAILED'] == 'ansible_inventory'
    assert latest['LAST_FAILED_CHECK'] == 'hosts_reachable'
    assert latest['RUN_STATUS'] == 'failed'
    assert not os.path.exists(site.path('runs', 'run.lock'))
    steps = json.loads(open(site.path('runs', latest['RUN_ID'], 'steps.json'), encoding='utf-8').read())
    assert [(s['step'], s['status']) for s in steps['steps']][2:4] == [('terraform_apply', 'completed'),
                                                                       ('ansible_inventory', 'failed')]

    half_done = site.run(playbook=DIAGNOSTICS)
    assert half_done.rc != 0
    table = diagnostics_table(half_done)
    assert 'failed' in row(table, 'last_run') and 'hosts_reachable' in row(table, 'last_run')
    for check in ('proxmox_env_valid', 'templates_present', 'terraform_outputs_valid', 'token_valid'):
        assert ' ok ' in row(table, check), table
    assert ' pending ' in row(table, 'hosts_reachable'), table

    # Fixed: the node answers. The resume re-validates and does not re-run templates or Terraform.
    ssh_node.start()
    site.mirror.reset()
    vms_before = site.sim.control('vms')
    resumed = site.run('-e', 'eminfra_resume=true')
    assert resumed.rc == 0, resumed.output
    assert resumed.task(TERRAFORM_TASK) == [] and resumed.task(FETCH_TASK) == []
    assert [e['status'] for e in resumed.task('Check the manifest and the artefacts')] == ['ok']
    assert [e['status'] for e in resumed.task('Check outputs.json against the Terraform state')] == ['ok']
    assert site.mirror.log() == []
    assert site.sim.control('vms') == vms_before
    latest = site.latest
    assert latest['LAST_STEP_COMPLETED'] == 'ansible_docker' and latest['RUN_STATUS'] == 'succeeded'
    steps = json.loads(open(site.path('runs', latest['RUN_ID'], 'steps.json'), encoding='utf-8').read())
    assert [s['status'] for s in steps['steps']] == ['revalidated'] * 3 + ['completed'] * 3

    healthy = site.run(playbook=DIAGNOSTICS)
    assert healthy.rc == 0, healthy.output
    table = diagnostics_table(healthy)
    every_check = ('latest_env_valid', 'last_run', 'proxmox_env_valid', 'templates_present',
                   'terraform_backend', 'terraform_outputs_valid', 'token_valid', 'hosts_reachable')
    assert all(' ok ' in row(table, check) for check in every_check), table
    assert 'local state ' in row(table, 'terraform_backend'), table

    # Broken: an artefact is gone. A resume stops at the templates re-validation.
    manifest = json.loads(open(site.path('cache', 'templates', 'manifest.json'), encoding='utf-8').read())
    os.unlink(manifest['talos']['path'] if os.path.isabs(manifest['talos']['path'])
              else site.path('cache', 'templates', manifest['talos']['filename']))
    stopped = site.run('-e', 'eminfra_resume=true')
    assert stopped.rc != 0
    assert re.search(r'templates_present: .*artefact talos is missing.*Remediation: ansible-playbook playbooks/site.yml '
                     r'-e eminfra_start_at=templates', stopped.stdout), stopped.output
    assert stopped.task(TERRAFORM_TASK) == []
    latest = site.latest
    assert latest['LAST_STEP_COMPLETED'] == 'ansible_docker'
    assert latest['LAST_STEP_FAILED'] == 'templates' and latest['LAST_FAILED_CHECK'] == 'templates_present'

    broken = site.run(playbook=DIAGNOSTICS)
    assert broken.rc != 0
    table = diagnostics_table(broken)
    assert ' failed ' in row(table, 'templates_present') and 'start_at=templates' in table
    assert ' ok ' in row(table, 'terraform_outputs_valid')

    # Replay from templates: the artefact comes back, nothing else changes in Proxmox.
    replay = site.run('-e', 'eminfra_start_at=templates')
    assert replay.rc == 0, replay.output
    assert site.latest['LAST_STEP_COMPLETED'] == 'ansible_docker'
    assert replay.result(TERRAFORM_TASK)['counts'] == {'add': 0, 'change': 0, 'destroy': 0}


def test_dry_run_from_scratch_then_a_real_run_does_every_step(site, ssh_node):
    ssh_node.start()
    dry = site.run('-e', 'eminfra_dry_run=true')
    assert dry.rc == 0, dry.output
    assert site.sim.control('vms') == []
    assert [entry for entry in site.mirror.log() if not entry.get('path', '').endswith(('SHA256SUMS',))
            and entry.get('method') == 'GET'] == []
    assert not os.path.exists(site.path('cache', 'templates', 'manifest.json'))
    assert not os.path.exists(site.path('cache', 'terraform', 'outputs.json'))
    latest = site.latest
    assert latest['DRY_RUN'] == 'true' and latest['LAST_STEP_COMPLETED'] == ''
    assert latest['DRY_RUN_LAST_STEP'] == 'ansible_docker'

    resumed = site.run('-e', 'eminfra_resume=true')
    assert resumed.rc == 0, resumed.output
    steps = json.loads(open(site.path('runs', site.latest['RUN_ID'], 'steps.json'), encoding='utf-8').read())
    assert steps['plan']['revalidate'] == [] and steps['plan']['run'][0] == 'proxmox_access'
    assert [s['status'] for s in steps['steps']] == ['completed'] * 6
    assert resumed.result(TERRAFORM_TASK)['applied'] is True
    assert len(site.sim.control('vms')) == 3


def test_two_runs_started_together(site):
    runs = [site.popen('-e', 'eminfra_dry_run=true') for dummy in range(2)]
    outputs = [proc.communicate(timeout=600)[0] for proc in runs]
    codes = [proc.returncode for proc in runs]
    assert sorted(codes) == [0, 2], outputs
    winner, loser = (outputs[0], outputs[1]) if codes[0] == 0 else (outputs[1], outputs[0])
    run_id = re.search(r'run (\d{8}T\d{6}Z-[0-9a-f]{6})', winner).group(1)
    assert re.search(rf'run_lock: \S+run\.lock: another pipeline run holds the lock: RUN_ID {run_id}', loser), loser
    assert 'TASK [Check the token' not in loser  # it stopped at once
    latest = site.latest  # parses: never torn
    assert latest['RUN_ID'] == run_id and latest['RUN_STATUS'] == 'succeeded'
    assert not os.path.exists(site.path('runs', 'run.lock'))
    assert sorted(os.listdir(site.path('runs'))) == sorted([run_id, 'latest.env'])


def test_stale_lock_is_taken_over(site):
    os.makedirs(site.path('runs'), exist_ok=True)
    with open(site.path('runs', 'run.lock'), 'w', encoding='utf-8') as handle:
        json.dump({'run_id': '20260101T000000Z-dead00', 'pid': 999999999, 'start_time': '1', 'boot_id': '',
                   'host': os.uname().nodename, 'acquired_at': '2026-01-01T00:00:00+00:00'}, handle)
    run = site.run('-e', 'eminfra_dry_run=true', '--tags', 'proxmox_access')
    assert run.rc == 0, run.output
    assert 'took over the lock of run 20260101T000000Z-dead00' in run.stderr + run.stdout
    assert not os.path.exists(site.path('runs', 'run.lock'))
