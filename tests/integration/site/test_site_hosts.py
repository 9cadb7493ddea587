# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The whole pipeline with the SSH test hosts (root only): ansible_base and ansible_docker really
configure the node that Terraform created in pvesim, over SSH as the intent's ssh_user."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.integration.site.conftest import HERE

pytestmark = pytest.mark.slow

# the lab fixture (site/conftest.py) starts the SSH test hosts of INTENT_DIR on lab prefix PREFIX
INTENT_DIR = os.path.join(HERE, 'intent-hosts')
PREFIX = 'emsite'


def test_full_pipeline_configures_the_node(site, lab):
    ssh = {
        'terraform_apply_intent_cluster_file': os.path.join(INTENT_DIR, 'cluster.yaml'),
        'terraform_apply_intent_nodes_file': os.path.join(INTENT_DIR, 'nodes.yaml'),
        'proxmox_access_cluster_file': os.path.join(INTENT_DIR, 'cluster.yaml'),
        'proxmox_access_nodes_file': os.path.join(INTENT_DIR, 'nodes.yaml'),
        'templates_intent_cluster_file': os.path.join(INTENT_DIR, 'cluster.yaml'),
        'ansible_ssh_private_key_file': lab['key'],
        'ansible_ssh_common_args': f'-o UserKnownHostsFile={lab["known_hosts"]} -o StrictHostKeyChecking=yes '
                                   '-o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes',
    }
    started = time.monotonic()
    first = site.run(**ssh)
    first_s = time.monotonic() - started
    assert first.rc == 0, first.output
    latest = site.latest
    assert latest['LAST_STEP_COMPLETED'] == 'ansible_docker' and latest['RUN_STATUS'] == 'succeeded'
    steps = json.loads(open(site.path('runs', latest['RUN_ID'], 'steps.json'), encoding='utf-8').read())
    assert [s['status'] for s in steps['steps']] == ['completed'] * 6
    assert any('configured: util-01' in a for s in steps['steps'][4:] for a in s['artefacts'])
    assert len([e for e in first.results if e['host'] == 'util-01' and e['result'].get('changed')]) > 2
    started = time.monotonic()
    second = site.run(**ssh)
    second_s = time.monotonic() - started
    assert second.rc == 0, second.output
    # Nothing changes, on the node or anywhere else: 0 changed tasks in the whole run.
    changes = [(e['host'], e['task']) for e in second.results if e.get('status') == 'ok' and e['result'].get('changed')]
    assert changes == [], changes
    assert len([e for e in second.results if e['host'] == 'util-01' and e['status'] == 'ok']) > 10  # the roles ran
    print(f'\nwith test hosts: first run {first_s:.1f} s, second run {second_s:.1f} s')
