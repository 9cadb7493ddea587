# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The whole pipeline with an Ubuntu VM and an Ubuntu container (guest: lxc) in the intent (root
only): the templates step fetches the container template as well, Terraform creates the VM and
the container in pvesim with the real provider, ansible_base and ansible_docker configure both
over SSH (the container as root), a second run changes nothing, and destroy leaves nothing."""

from __future__ import annotations

import json
import os

import pytest

from tests.integration.site.conftest import HERE
from tests.pvesim.mirror_fixtures import LXC_INDEX_DIR

pytestmark = pytest.mark.slow

# the lab fixture (site/conftest.py) starts the SSH test hosts of INTENT_DIR on lab prefix PREFIX
INTENT_DIR = os.path.join(HERE, 'intent-hosts-lxc')
PREFIX = 'emsct'


def test_an_ubuntu_vm_and_an_ubuntu_container_configured_over_ssh(site, lab):
    intent = {
        key: os.path.join(INTENT_DIR, name) for key, name in (
            ('terraform_apply_intent_cluster_file', 'cluster.yaml'), ('terraform_apply_intent_nodes_file', 'nodes.yaml'),
            ('proxmox_access_cluster_file', 'cluster.yaml'), ('proxmox_access_nodes_file', 'nodes.yaml'),
            ('templates_intent_cluster_file', 'cluster.yaml'), ('templates_intent_nodes_file', 'nodes.yaml'))
    }
    ssh = dict(intent, templates_ubuntu_lxc_index_url=site.mirror.url_for(LXC_INDEX_DIR),
               ansible_ssh_private_key_file=lab['key'],
               ansible_ssh_common_args=f'-o UserKnownHostsFile={lab["known_hosts"]} -o StrictHostKeyChecking=yes '
                                       '-o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes')
    first = site.run(**ssh)
    assert first.rc == 0, first.output
    assert site.latest['LAST_STEP_COMPLETED'] == 'ansible_docker'
    manifest = json.loads(open(site.path('cache', 'templates', 'manifest.json'), encoding='utf-8').read())
    assert manifest['ubuntu']['type'] == 'vm' and manifest['ubuntu_lxc']['type'] == 'lxc'
    assert manifest['ubuntu_lxc']['proxmox_volid'] == 'local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst'
    outputs = json.loads(open(site.path('cache', 'terraform', 'outputs.json'), encoding='utf-8').read())
    assert [(n['name'], n['ssh_user']) for n in outputs['nodes']] == [('util-01', 'ubuntu'), ('util-ct-01', 'root')]
    guests = {vm['vmid']: vm['type'] for vm in site.sim.control('vms')}
    assert guests == {7701: 'qemu', 7704: 'qemu', 7705: 'lxc'}
    for host in ('util-01', 'util-ct-01'):
        assert len([e for e in first.results if e['host'] == host and e['result'].get('changed')]) > 2, host

    second = site.run(**ssh)
    assert second.rc == 0, second.output
    changes = [(e['host'], e['task']) for e in second.results if e.get('status') == 'ok' and e['result'].get('changed')]
    assert changes == [], changes
    for host in ('util-01', 'util-ct-01'):
        assert len([e for e in second.results if e['host'] == host and e['status'] == 'ok']) > 10, host

    gone = site.run('--tags', 'proxmox_access,terraform_apply', terraform_apply_state='absent', **intent)
    assert gone.rc == 0, gone.output
    assert site.sim.control('vms') == []
    outputs = json.loads(open(site.path('cache', 'terraform', 'outputs.json'), encoding='utf-8').read())
    assert outputs['nodes'] == [] and outputs['talos_nodes'] == []
