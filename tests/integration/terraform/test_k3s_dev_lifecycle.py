# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""terraform/environments/k3s-dev with real Terraform and the real bpg/proxmox provider against
pvesim over verified HTTPS: create (import-from disks from the manifest's volids, cloud-init
drive, started), a second plan with no changes, a memory change applied in place, a VM deleted
behind Terraform's back recreated, an intent read two ways refused, a replacement refused until the
operator allows it, destroy, and the token secret nowhere but proxmox.env."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
import requests
import yaml

from ansible_collections.eminfra.pipeline.plugins.module_utils import _contracts
from tests.integration.terraform.conftest import REPO, files_under, run_wrapper_playbook, tree_snapshot
from tests.pvesim.fixtures import pvesim, pvesim_fresh  # noqa: F401  pylint: disable=unused-import
from tests.pvesim.state import qcow2_image

pytestmark = pytest.mark.slow

TALOS = {'cp-1': 201, 'worker-1': 211}
UBUNTU = {'util-1': 231, 'util-2': 232}
ALL_VMIDS = sorted([*TALOS.values(), *UBUNTU.values()])


class Api:
    """The simulator through its real API with the `full` token (what an operator's tools see)."""

    def __init__(self, sim) -> None:
        token_id, secret = sim.token('full')
        self.base = sim.api_url
        self.session = requests.Session()
        self.session.headers['Authorization'] = f'PVEAPIToken={token_id}={secret}'
        self.ca = sim.ca_path  # per call: REQUESTS_CA_BUNDLE would override a session default

    def get(self, path):
        response = self.session.get(f'{self.base}{path}', timeout=30, verify=self.ca)
        response.raise_for_status()
        return response.json()['data']

    def vmids(self):
        return sorted(int(vm['vmid']) for vm in self.get('/nodes/pve/qemu'))

    def wait(self, upid):
        for dummy in range(600):
            status = self.get(f'/nodes/pve/tasks/{upid}/status')
            if status['status'] == 'stopped':
                assert status['exitstatus'] == 'OK', status
                return
            time.sleep(0.05)
        raise AssertionError(f'task {upid} never stopped')

    def delete_vm(self, vmid):
        if self.get(f'/nodes/pve/qemu/{vmid}/status/current')['status'] == 'running':
            response = self.session.post(f'{self.base}/nodes/pve/qemu/{vmid}/status/stop', timeout=30, verify=self.ca)
            response.raise_for_status()
            self.wait(response.json()['data'])
        response = self.session.delete(f'{self.base}/nodes/pve/qemu/{vmid}', timeout=30, verify=self.ca)
        response.raise_for_status()
        self.wait(response.json()['data'])

    def upload_import(self, filename, data: bytes):
        response = self.session.post(f'{self.base}/nodes/pve/storage/local/upload', data={'content': 'import'},
                                     files={'filename': (filename, data)}, timeout=60, verify=self.ca)
        response.raise_for_status()
        self.wait(response.json()['data'])


def wire_to_simulator(project, sim) -> dict:
    """proxmox.env from the simulator's `full` token, the manifest's VM images uploaded; returns the manifest."""
    shutil.copy(sim.env_files['full'], project.proxmox_env)
    os.chmod(project.proxmox_env, 0o600)
    api = Api(sim)
    with open(project.manifest, encoding='utf-8') as handle:
        manifest = json.load(handle)
    for name in ('ubuntu', 'talos'):
        volid = manifest[name]['proxmox_volid']
        filename = volid.split('/', 1)[1]
        body = f'{name} image bytes\n'.encode() * 4096
        if filename.endswith('.qcow2'):
            # pve-storage checks an uploaded import image with qemu-img: it must be what it says.
            body = qcow2_image(1 << 30, body)
        api.upload_import(filename, body)
    project.api = api
    project.secret = sim.token('full')[1]
    project.sim = sim
    return manifest


@pytest.fixture()
def sim_project(project, pvesim_fresh):  # noqa: F811
    """The project wired to a fresh simulator: proxmox.env from the `full` token, artefacts uploaded."""
    wire_to_simulator(project, pvesim_fresh)
    return project


def read_outputs(project):
    with open(project.outputs, encoding='utf-8') as handle:
        return json.load(handle)


def test_apply_idempotence_drift_recreate_destroy(sim_project, terraform_bin):
    project, api = sim_project, sim_project.api
    repo_terraform = tree_snapshot(os.path.join(REPO, 'terraform'))

    # 1. Apply creates the VMs in pvesim and writes a valid outputs.json.
    first = project.run_module()
    assert first.get('failed') is not True, first['_stdout']
    assert first['changed'] is True and first['applied'] is True
    assert first['counts'] == {'add': 4, 'change': 0, 'destroy': 0}
    assert first['cli_config'] == os.environ['TF_CLI_CONFIG_FILE']
    assert api.vmids() == ALL_VMIDS
    vms = {vm['vmid']: vm for vm in project.sim.control('vms')}
    assert all(vms[vmid]['status'] == 'running' for vmid in ALL_VMIDS)
    cp_config = api.get('/nodes/pve/qemu/201/config')
    assert cp_config['name'] == 'cp-1' and cp_config['ipconfig0'] == 'gw=10.20.0.1,ip=10.20.0.11/24'
    assert cp_config['nameserver'] == '10.20.0.1 9.9.9.9'
    assert 'bridge=vmbr0' in cp_config['net0'] and cp_config['scsi0'].startswith('local-lvm:vm-201-disk-0,')
    assert 'size=20G' in cp_config['scsi0'] and cp_config['ide2'] == 'local-lvm:vm-201-cloudinit,media=cdrom'
    assert 'ciuser' not in cp_config and 'sshkeys' not in cp_config, 'Talos owns its OS: no cloud-init user'
    util_config = api.get('/nodes/pve/qemu/231/config')
    assert util_config['ciuser'] == 'ops' and 'TestKeyOnly' in util_config['sshkeys']
    assert util_config['memory'] == '1024' and util_config['cores'] == 1
    # The disks were imported from the manifest's volumes (the simulator's task log says from which).
    imports = [line for task in project.sim.control('tasks') if task['type'] == 'qmcreate' for line in task['log']]
    assert any('local:import/noble-server-cloudimg-amd64.qcow2' in str(line) for line in imports), imports
    assert any('local:import/talos-v1.11.5-nocloud-amd64.qcow2' in str(line) for line in imports), imports
    outputs = read_outputs(project)
    _contracts.validate(outputs, _contracts.OUTPUTS_SCHEMA, 'terraform_outputs_valid')
    assert [n['name'] for n in outputs['nodes']] == ['util-1', 'util-2']
    assert outputs['nodes'][0] == {'name': 'util-1', 'ipv4': '10.20.0.41', 'ssh_user': 'ops', 'ssh_port': 2222,
                                   'groups': ['base', 'docker'], 'vmid': 231, 'role': 'utility'}
    assert outputs['talos_nodes'] == [
        {'name': 'cp-1', 'ipv4': '10.20.0.11', 'role': 'controlplane', 'vmid': 201},
        {'name': 'worker-1', 'ipv4': '10.20.0.21', 'role': 'worker', 'vmid': 211},
    ]
    assert first['outputs'] == outputs

    # 2. A second run changes nothing. An inherited TF_LOG (the provider's debug log prints the
    # Authorization header) is dropped: Terraform writes no log of its own beside the wrapper's.
    trace = os.path.join(project.root, 'terraform-trace.log')
    second = project.run_module(env={'TF_LOG': 'TRACE', 'TF_LOG_PROVIDER': 'DEBUG', 'TF_LOG_PATH': trace})
    assert not os.path.exists(trace)
    assert second['changed'] is False, second
    assert second['applied'] is False and second['counts'] == {'add': 0, 'change': 0, 'destroy': 0}
    assert second['initialised'] is False

    # What a resume checks before it skips the step: outputs.json matches the state ...
    valid = project.run_module(validate_only=True)
    assert valid.get('failed') is not True, valid['_stdout']
    assert valid['outputs_valid'] is True and valid['changed'] is False
    # ... and a hand-edited outputs.json is caught.
    edited = dict(outputs, talos_nodes=outputs['talos_nodes'][:1])
    with open(project.outputs, 'w', encoding='utf-8') as handle:
        json.dump(edited, handle)
    stale = project.run_module(validate_only=True)
    assert stale['failed'] is True and stale['failed_check'] == 'terraform_outputs_valid'
    assert 'talos_nodes' in stale['msg']
    # The next apply rewrites it (changed, though Terraform itself plans nothing).
    rewrite = project.run_module()
    assert rewrite['changed'] is True and rewrite['applied'] is False and rewrite['outputs_changed'] is True
    assert read_outputs(project) == outputs

    # 3. A memory change is applied in place: the same VM (same SMBIOS uuid), not a replacement.
    uuid_before = util_config['smbios1']
    with open(project.nodes, encoding='utf-8') as handle:
        intent = yaml.safe_load(handle)
    next(n for n in intent['nodes'] if n['name'] == 'util-1')['memory'] = 1536
    with open(project.nodes, 'w', encoding='utf-8') as handle:
        yaml.safe_dump(intent, handle)
    resized = project.run_module()
    assert resized.get('failed') is not True, resized['_stdout']
    assert resized['counts'] == {'add': 0, 'change': 1, 'destroy': 0} and resized['replaced'] == []
    util_config = api.get('/nodes/pve/qemu/231/config')
    assert util_config['memory'] == '1536' and util_config['smbios1'] == uuid_before
    assert api.get('/nodes/pve/qemu/231/status/current')['status'] == 'running'
    assert project.run_module()['changed'] is False

    # 4. A VM deleted in pvesim shows as drift in check mode ...
    api.delete_vm(211)
    drift = project.run_module(check_mode=True)
    assert drift['changed'] is True
    assert drift['drift'] == [{'address': 'proxmox_virtual_environment_vm.vm["worker-1"]', 'actions': ['delete']}]
    assert drift['counts'] == {'add': 1, 'change': 0, 'destroy': 0}
    assert api.vmids() == [201, 231, 232], 'check mode changes nothing'

    # ... and the next run recreates it (nothing is destroyed, so no allow_replace is needed); the
    # run after that is clean again.
    recreate = project.run_module()
    assert recreate['changed'] is True and recreate['counts'] == {'add': 1, 'change': 0, 'destroy': 0}
    assert api.vmids() == ALL_VMIDS
    clean = project.run_module()
    assert clean['changed'] is False, clean

    # 5. An intent read two ways never reaches Terraform: PyYAML reads `vmid: 7_704` as 7704,
    # Terraform's yamldecode as the string "7_704" (which replaced util-2 and deleted VM 232).
    with open(project.nodes, encoding='utf-8') as handle:
        original_nodes = handle.read()
    assert original_nodes.count('vmid: 232\n') == 1
    with open(project.nodes, 'w', encoding='utf-8') as handle:
        handle.write(original_nodes.replace('vmid: 232\n', 'vmid: 7_704\n'))
    two_ways = project.run_module(check_mode=True)
    assert two_ways['failed'] is True and two_ways['failed_check'] == 'intent_valid', two_ways['_stdout']
    assert "inventory/dev/nodes.yaml: nodes[4].vmid (line " in two_ways['msg'] and "'7_704'" in two_ways['msg']
    assert api.vmids() == ALL_VMIDS

    # 6. A plan that replaces a VM the intent still names (a new vmid) is refused, in check mode
    # too, naming the VM; nothing is applied ...
    with open(project.nodes, 'w', encoding='utf-8') as handle:
        handle.write(original_nodes.replace('vmid: 232\n', 'vmid: 7704\n'))
    for check_mode in (True, False):
        refused = project.run_module(check_mode=check_mode)
        assert refused['failed'] is True and refused['failed_check'] == 'plan_destroys_vm', refused['_stdout']
        assert 'replace util-2 (vmid 232): destroy it and create it again as vmid 7704' in refused['msg']
        assert '-e eminfra_allow_replace=true' in refused['remediation']
        assert api.vmids() == ALL_VMIDS
    assert read_outputs(project) == outputs
    # ... so is a node taken out of the intent (its VM would be deleted) ...
    without = yaml.safe_load(original_nodes)
    next(n for n in without['nodes'] if n['name'] == 'util-2')['enabled'] = False
    with open(project.nodes, 'w', encoding='utf-8') as handle:
        yaml.safe_dump(without, handle)
    removed = project.run_module()
    assert removed['failed_check'] == 'plan_destroys_vm' and 'destroy util-2 (vmid 232)' in removed['msg']
    assert api.vmids() == ALL_VMIDS
    # ... and with the operator's say-so the replacement is applied.
    with open(project.nodes, 'w', encoding='utf-8') as handle:
        handle.write(original_nodes.replace('vmid: 232\n', 'vmid: 7704\n'))
    replaced = project.run_module(allow_replace=True)
    assert replaced.get('failed') is not True, replaced['_stdout']
    assert replaced['counts'] == {'add': 1, 'change': 0, 'destroy': 1}
    assert replaced['replaced'] == ['proxmox_virtual_environment_vm.vm["util-2"]']
    assert api.vmids() == [201, 211, 231, 7704]
    assert next(n for n in read_outputs(project)['nodes'] if n['name'] == 'util-2')['vmid'] == 7704
    assert project.run_module()['changed'] is False

    # 7. state: absent removes them; outputs.json still meets the contract (empty lists).
    gone = project.run_module(state='absent')
    assert gone['changed'] is True and gone['counts'] == {'add': 0, 'change': 0, 'destroy': 4}
    assert api.vmids() == []
    assert read_outputs(project) == {'schema_version': 1, 'nodes': [], 'talos_nodes': []}
    again = project.run_module(state='absent')
    assert again['changed'] is False

    # The secret is in no file under state/ but proxmox.env: tfstate, plans, logs, outputs included.
    checked = [p for p in files_under(project.state) if p != project.proxmox_env]
    assert any(p.endswith('terraform.tfstate') for p in checked)
    assert any(p.endswith('.tfplan') for p in checked)
    assert any(p.endswith('.log') for p in checked)
    for path in checked:
        with open(path, 'rb') as handle:
            assert project.secret.encode() not in handle.read(), path
    for result in (first, second, resized, drift, recreate, clean, two_ways, refused, removed, replaced, gone):
        assert project.secret not in json.dumps(result)
    # The repository's terraform/ was never written to.
    assert tree_snapshot(os.path.join(REPO, 'terraform')) == repo_terraform


def test_apply_failure_in_pvesim_names_the_log(sim_project, terraform_bin):
    project = sim_project
    project.sim.control('fault', kind='task_fail', type='qmcreate', message='storage went away')
    result = project.run_module()
    project.sim.control('clear_faults')
    assert result['failed'] is True and result['failed_check'] == 'terraform_apply'
    assert 'terraform apply failed with exit code 1' in result['msg']
    with open(result['log_path'], encoding='utf-8') as handle:
        log = handle.read()
    assert 'storage went away' in log, 'the provider\'s error (the failed task) is in the log'
    assert 'Error: ' in log
    assert project.secret not in log and project.secret not in result['_stdout']
    assert not os.path.exists(project.outputs), 'a failed apply leaves no outputs.json behind'


def test_a_vm_not_the_pipelines_holding_an_intent_vmid_is_never_taken_over(sim_project, terraform_bin):
    """The provider reads Proxmox's "VM 231 already exists" on create as a create already done, and
    would manage (and later change) whatever VM holds that vmid. A first run refuses it instead; the
    pipeline's own VM whose state was lost is adopted (terraform import) and reported."""
    project, api = sim_project, sim_project.api
    response = api.session.post(f'{api.base}/nodes/pve/qemu', data={'vmid': 231, 'name': 'db-01', 'memory': 512},
                                timeout=30, verify=api.ca)
    response.raise_for_status()
    api.wait(response.json()['data'])
    refused = project.run_module()
    assert refused['failed'] is True and refused['failed_check'] == 'terraform_vm_adopt', refused['_stdout']
    assert 'VM 231' in refused['msg'] and "'db-01'" in refused['msg']
    assert 'another vmid' in refused['remediation']
    assert api.vmids() == [231], 'nothing was created'
    assert api.get('/nodes/pve/qemu/231/config')['name'] == 'db-01', 'the VM was not touched'
    api.delete_vm(231)

    created = project.run_module()
    assert created.get('failed') is not True, created['_stdout']
    assert api.vmids() == ALL_VMIDS
    os.unlink(created['state_path'])  # the state is lost; the VMs are the pipeline's
    adopted = project.run_module()
    assert adopted.get('failed') is not True, adopted['_stdout']
    assert sorted(vm['vmid'] for vm in adopted['recovered']['adopted']) == ALL_VMIDS
    assert adopted['counts']['add'] == 0 and adopted['counts']['destroy'] == 0
    assert api.vmids() == ALL_VMIDS, 'no VM created twice'
    assert project.secret not in json.dumps(refused) + json.dumps(adopted)


def test_secret_absent_from_ansible_playbook_at_vvvv(sim_project, terraform_bin):
    project = sim_project
    output = run_wrapper_playbook(project, 'terraform_apply through Ansible', [
        ('Apply the k3s-dev environment', {}, False),
        ('Plan again in check mode', {}, True),
        ('Remove the VMs', {'state': 'absent'}, False)])
    assert 'changed=2' in output  # the apply and the destroy; the check-mode plan changes nothing
    assert project.secret not in output
    assert project.api.vmids() == []


def test_a_vm_without_a_guest_agent_does_not_hold_the_plan(sim_project, terraform_bin):
    """Talos nodes have a guest agent only through the schematic. A VM whose agent never answers
    must not hold a refresh for the provider's 15-minute default: the run, bounded by the
    wrapper's own timeout, completes and plans no change."""
    project = sim_project
    first = project.run_module()
    assert first.get('failed') is not True, first['_stdout']
    project.sim.control('fault', kind='agent_never_up')
    again = project.run_module(timeout=240)
    project.sim.control('clear_faults')
    assert again.get('failed') is not True, again['_stdout']
    assert again['changed'] is False and again['counts'] == {'add': 0, 'change': 0, 'destroy': 0}
