# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/site.yml end to end against pvesim, the mirror and real Terraform."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from tests.integration.site.conftest import changed_tasks, summary_of

pytestmark = pytest.mark.slow

STEPS = ['proxmox_access', 'templates', 'terraform_apply', 'ansible_inventory', 'ansible_base', 'ansible_docker']


def test_full_run_then_a_second_run_changes_nothing(site, ssh_node):
    ssh_node.start()
    started = time.monotonic()
    first = site.run()
    first_s = time.monotonic() - started
    assert first.rc == 0, first.output
    latest = site.latest
    assert latest['LAST_STEP_COMPLETED'] == 'ansible_docker'
    assert latest['RUN_STATUS'] == 'succeeded' and latest['DRY_RUN'] == 'false'
    assert {vm['vmid'] for vm in site.sim.control('vms')} == {7701, 7702, 7704}
    outputs = json.loads(open(site.path('cache', 'terraform', 'outputs.json'), encoding='utf-8').read())
    assert [n['name'] for n in outputs['nodes']] == ['util-01']
    run_dir = site.path('runs', latest['RUN_ID'])
    steps = json.loads(open(os.path.join(run_dir, 'steps.json'), encoding='utf-8').read())
    assert [s['step'] for s in steps['steps']] == STEPS
    assert [s['status'] for s in steps['steps']] == ['completed'] * 6
    summary = summary_of(first)
    for step in STEPS:
        assert step in summary
    assert 'manifest.json' in summary and 'outputs.json' in summary
    assert open(os.path.join(run_dir, 'summary.txt'), encoding='utf-8').read().splitlines()[0] in summary
    assert f"summary: {os.path.join(run_dir, 'summary.txt')}" in summary
    assert not os.path.exists(site.path('runs', 'run.lock'))
    with open(os.path.join(run_dir, 'tasks.log'), encoding='utf-8') as handle:
        log = [json.loads(line) for line in handle]
    assert log[0]['task'] == "Plan the run, take the run lock and record the run's start"
    assert {entry['step'] for entry in log} >= {'', 'proxmox_access', 'templates', 'terraform_apply', 'ansible_inventory'}
    assert all(set(entry) <= {'time', 'step', 'task', 'host', 'status', 'duration', 'msg', 'failed_check', 'remediation'}
               for entry in log)

    site.mirror.reset()
    started = time.monotonic()
    second = site.run()
    second_s = time.monotonic() - started
    assert second.rc == 0, second.output
    # 0 changed tasks: the run's own records under state/runs/ are bookkeeping, not changes
    assert changed_tasks(second) == [], changed_tasks(second)
    assert 'changed=0' in second.output and not re.search(r'changed=[1-9]', second.output)
    assert site.mirror.log() == []  # not one template byte
    tf = second.result('Plan and apply the Terraform environment (templates re-validated first)')
    assert tf['counts'] == {'add': 0, 'change': 0, 'destroy': 0} and tf['applied'] is False
    print(f'\nwall time: first run {first_s:.1f} s, second run {second_s:.1f} s')
