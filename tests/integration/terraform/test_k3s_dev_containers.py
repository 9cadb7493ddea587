# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""terraform/environments/k3s-dev with an Ubuntu VM and an Ubuntu container (guest: lxc) in the
intent: real Terraform and the real bpg/proxmox provider against pvesim over verified HTTPS.
The container is created from the manifest's ubuntu_lxc template (vztmpl), unprivileged, with
the intent's address and the SSH key for root; it is in outputs.json `nodes` like the VM; a
second run changes nothing; destroy leaves no VM and no container."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from ansible_collections.eminfra.pipeline.plugins.module_utils import _contracts
from tests.integration.terraform.conftest import FIXTURES, files_under
from tests.integration.terraform.test_k3s_dev_lifecycle import read_outputs, wire_to_simulator
from tests.pvesim.appliance import container_template
from tests.pvesim.fixtures import pvesim, pvesim_fresh  # noqa: F401  pylint: disable=unused-import

pytestmark = pytest.mark.slow


@pytest.fixture()
def lxc_project(project, pvesim_fresh):  # noqa: F811
    """The project with the VM-and-container intent, wired to a fresh simulator holding the artefacts."""
    shutil.copy(os.path.join(FIXTURES, 'nodes-lxc.yaml'), project.nodes)
    shutil.copy(os.path.join(FIXTURES, 'manifest-lxc.json'), project.manifest)
    manifest = wire_to_simulator(project, pvesim_fresh)
    api = project.api
    filename = manifest['ubuntu_lxc']['proxmox_volid'].split('/', 1)[1]
    response = api.session.post(f'{api.base}/nodes/pve/storage/local/upload', data={'content': 'vztmpl'},
                                files={'filename': (filename, container_template())}, timeout=60, verify=api.ca)
    response.raise_for_status()
    api.wait(response.json()['data'])
    return project


def lxc_ids(api):
    return sorted(int(ct['vmid']) for ct in api.get('/nodes/pve/lxc'))


def test_an_ubuntu_vm_and_an_ubuntu_container(lxc_project, terraform_bin):
    project, api = lxc_project, lxc_project.api
    first = project.run_module()
    assert first.get('failed') is not True, first['_stdout']
    assert first['changed'] is True and first['counts'] == {'add': 3, 'change': 0, 'destroy': 0}
    assert api.vmids() == [201, 231] and lxc_ids(api) == [241]
    assert api.get('/nodes/pve/lxc/241/status/current')['status'] == 'running'
    config = api.get('/nodes/pve/lxc/241/config')
    assert config['hostname'] == 'ct-1' and int(config['unprivileged']) == 1
    assert 'nesting=1' in config['features']
    assert int(config['memory']) == 512 and int(config['swap']) == 0 and int(config['cores']) == 1
    assert config['rootfs'].startswith('local-lvm:') and 'size=8G' in config['rootfs']
    assert 'ip=10.20.0.51/24' in config['net0'] and 'gw=10.20.0.1' in config['net0'] and 'bridge=vmbr0' in config['net0']
    assert config['ostype'] == 'ubuntu'
    created = [task for task in project.sim.control('tasks') if task['type'] == 'vzcreate']
    assert created and "extracting archive '" in json.dumps(created)
    assert 'ubuntu-24.04-standard_24.04-2_amd64.tar.zst' in json.dumps(created)

    outputs = read_outputs(project)
    _contracts.validate(outputs, _contracts.OUTPUTS_SCHEMA, 'terraform_outputs_valid')
    assert outputs['nodes'] == [
        {'name': 'ct-1', 'ipv4': '10.20.0.51', 'ssh_user': 'root', 'ssh_port': 22, 'groups': ['base', 'docker'],
         'vmid': 241, 'role': 'utility'},
        {'name': 'util-1', 'ipv4': '10.20.0.41', 'ssh_user': 'ubuntu', 'ssh_port': 22, 'groups': ['base'],
         'vmid': 231, 'role': 'utility'},
    ]

    second = project.run_module()
    assert second.get('failed') is not True, second['_stdout']
    assert second['changed'] is False and second['counts'] == {'add': 0, 'change': 0, 'destroy': 0}, second

    gone = project.run_module(state='absent')
    assert gone['changed'] is True and gone['counts'] == {'add': 0, 'change': 0, 'destroy': 3}
    assert api.vmids() == [] and lxc_ids(api) == []
    assert read_outputs(project) == {'schema_version': 1, 'nodes': [], 'talos_nodes': []}
    for path in files_under(project.state):
        if path != project.proxmox_env:
            with open(path, 'rb') as handle:
                assert project.secret.encode() not in handle.read(), path
