# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A client nobody here wrote against the simulator: community.proxmox's ``proxmox`` inventory
plugin (the pinned collection that ``make setup`` unpacks, tests/setup/install-community-proxmox.sh)
run by ``ansible-inventory --list`` over HTTPS, verifying the simulator's certificate. It walks
/nodes, /nodes/{node}/network, /nodes/{node}/lxc and /qemu, each guest's status, config and
snapshots, the containers' interfaces, the VMs' guest agent, /pools and /pools/{poolid}. What it
lists must be what the simulator holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from proxmoxer import ResourceException

from tests.ansible_run import without_unsafe
from tests.integration.pvesim.conftest import proxmox, wait_task
from tests.integration.pvesim.test_lxc import create, upload_template

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..'))
COLLECTIONS = os.path.join(ROOT, '.cache', 'collections')
PLUGIN_DIR = os.path.join(COLLECTIONS, 'ansible_collections', 'community', 'proxmox')
PIN_FILE = os.path.join(ROOT, 'tests', 'setup', 'community-proxmox.env')


def _pinned_version() -> str:
    with open(PIN_FILE, encoding='utf-8') as handle:
        for line in handle:
            if line.startswith('COMMUNITY_PROXMOX_VERSION='):
                return line.split('=', 1)[1].strip()
    raise AssertionError(f'{PIN_FILE} names no COMMUNITY_PROXMOX_VERSION')


@pytest.fixture(scope='module')
def community_proxmox():
    manifest = os.path.join(PLUGIN_DIR, 'MANIFEST.json')
    if not os.path.exists(manifest):
        pytest.fail(f'community.proxmox is not unpacked in {PLUGIN_DIR}: run make setup '
                    '(tests/setup/install-community-proxmox.sh)')
    with open(manifest, encoding='utf-8') as handle:
        version = json.load(handle)['collection_info']['version']
    assert version == _pinned_version(), f'{PLUGIN_DIR} holds {version}; run make setup'
    return version


def run_inventory(sim, tmp_path, token: str = 'full', expect_ok: bool = True, **options):
    source = tmp_path / 'proxmox.yml'  # the plugin takes only sources named *proxmox.yml
    source.write_text(json.dumps({'plugin': 'community.proxmox.proxmox', **options}), encoding='utf-8')
    tokenid, secret = sim.token(token)
    user, name = tokenid.split('!', 1)
    env = {**os.environ,
           'ANSIBLE_COLLECTIONS_PATH': os.pathsep.join([COLLECTIONS, os.path.join(ROOT, '.collections')]),
           'ANSIBLE_INVENTORY_ENABLED': 'community.proxmox.proxmox',
           'ANSIBLE_INVENTORY_UNPARSED_FAILED': 'true',  # a plugin error fails the run, not a warning
           'ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED': 'true',
           'ANSIBLE_LOCAL_TEMP': str(tmp_path / 'tmp'), 'ANSIBLE_HOME': str(tmp_path / 'home'),
           'PROXMOX_URL': sim.url, 'PROXMOX_USER': user, 'PROXMOX_TOKEN_ID': name, 'PROXMOX_TOKEN_SECRET': secret,
           # validate_certs: true; requests takes the CA bundle from here for a Session
           'REQUESTS_CA_BUNDLE': sim.ca_path}
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-inventory'), '-i', str(source),
                             '--list'], env=env, capture_output=True, text=True, timeout=300, check=False)
    if not expect_ok:
        return result
    assert result.returncode == 0, result.stderr
    return without_unsafe(json.loads(result.stdout)), result.stderr


def _wait_agent(api, vmid: int) -> None:
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            result = api.nodes('pve').qemu(vmid).agent('network-get-interfaces').get()['result']
        except ResourceException:  # 500 QEMU guest agent is not running (yet)
            result = []
        if any(a['ip-address-type'] == 'ipv4' and not a['ip-address'].startswith('127.')
               for iface in result for a in iface['ip-addresses']):
            return
        time.sleep(0.1)
    raise AssertionError(f'the guest agent of VM {vmid} never reported its address')


def test_inventory_plugin_lists_vms_and_containers(pvesim_fresh, community_proxmox, tmp_path):
    sim = pvesim_fresh
    api = proxmox(sim)
    upload_template(sim)
    wait_task(api, api.nodes('pve').qemu.post(vmid=100, name='vm100', memory=1024, agent='enabled=1',
                                              net0='virtio,bridge=vmbr0', ipconfig0='ip=192.0.2.100/24',
                                              tags='k3s', start=1))
    wait_task(api, api.nodes('pve').qemu.post(vmid=101, name='vm101', memory=512, pool='lab'))
    wait_task(api, api.nodes('pve').qemu.post(vmid=900, name='tmpl', memory=512, template=1))
    assert create(sim, 120, start=1, pool='lab')['exitstatus'] == 'OK'
    assert create(sim, 121, hostname='ct121', tags='db')['exitstatus'] == 'OK'
    _wait_agent(api, 100)

    inventory, stderr = run_inventory(sim, tmp_path, want_facts=True, validate_certs=True,
                                      want_proxmox_nodes_ansible_host=True)
    assert 'WARNING' not in stderr and 'ERROR' not in stderr, stderr
    hostvars = inventory['_meta']['hostvars']
    # everything the simulator holds, templates left out (the plugin skips them), and the node
    expected = {(g['name'], g['vmid'], g['type'], g['status'])
                for g in api.cluster.resources.get(type='vm') if not g.get('template')}
    assert {(name, v['proxmox_vmid'], v['proxmox_vmtype'], v['proxmox_status'])
            for name, v in hostvars.items() if 'proxmox_vmid' in v} == expected == {
        ('vm100', 100, 'qemu', 'running'), ('vm101', 101, 'qemu', 'stopped'),
        ('ct120', 120, 'lxc', 'running'), ('ct121', 121, 'lxc', 'stopped')}
    assert set(inventory['proxmox_all_lxc']['hosts']) == {'ct120', 'ct121'}
    assert set(inventory['proxmox_all_qemu']['hosts']) == {'vm100', 'vm101'}
    assert set(inventory['proxmox_all_running']['hosts']) == {'vm100', 'ct120'}
    assert set(inventory['proxmox_all_stopped']['hosts']) == {'vm101', 'ct121'}
    assert set(inventory['proxmox_pool_lab']['hosts']) == {'vm101', 'ct120'}
    assert set(inventory['proxmox_pve_lxc']['hosts']) == {'ct120', 'ct121'}
    assert inventory['proxmox_nodes']['hosts'] == ['pve']
    gateway_ifaces = sorted((i for i in api.nodes('pve').network.get() if 'gateway' in i and 'address' in i),
                            key=lambda i: i['iface'])
    assert hostvars['pve']['ansible_host'] == gateway_ifaces[0]['address']

    # the facts come from the simulator's config, interfaces and guest agent answers
    ct120 = hostvars['ct120']
    config = api.nodes('pve').lxc(120).config.get()
    assert ct120['proxmox_hostname'] == 'ct120' and ct120['proxmox_memory'] == 1024
    assert ct120['proxmox_rootfs'] == {'disk_image': 'local-lvm:vm-120-disk-0', 'size': '8G'}
    assert ct120['proxmox_net0']['ip'] == '192.0.2.120/24' and ct120['proxmox_net0']['name'] == 'eth0'
    assert ct120['proxmox_tags_parsed'] == ['k3s', 'ubuntu'] and ct120['proxmox_snapshots'] == []
    eth0 = next(i for i in ct120['proxmox_lxc_interfaces'] if i['name'] == 'eth0')
    assert eth0['inet'] == '192.0.2.120/24'
    assert eth0['hwaddr'] == config['net0'].split('hwaddr=')[1].split(',')[0].lower()
    assert 'proxmox_lxc_interfaces' not in hostvars['ct121']  # stopped: nothing to read
    assert hostvars['ct121']['proxmox_tags_parsed'] == ['db']
    vm100 = hostvars['vm100']
    assert vm100['proxmox_qmpstatus'] == 'running' and vm100['proxmox_agent'] == {'enabled': '1'}
    agent_eth0 = next(i for i in vm100['proxmox_agent_interfaces'] if i['name'] == 'eth0')
    assert '192.0.2.100/24' in agent_eth0['ip-addresses']


def test_inventory_plugin_without_facts_and_failing_on_errors(pvesim_fresh, community_proxmox, tmp_path):
    sim = pvesim_fresh
    api = proxmox(sim)
    upload_template(sim)
    create(sim, 122)
    inventory, stderr = run_inventory(sim, tmp_path, want_facts=False, validate_certs=True)
    assert 'WARNING' not in stderr, stderr
    assert {n: v['proxmox_vmtype'] for n, v in inventory['_meta']['hostvars'].items() if 'proxmox_vmid' in v} == \
        {'ct122': 'lxc'}
    assert inventory['proxmox_all_stopped']['hosts'] == ['ct122']
    assert api.nodes('pve').lxc.get()[0]['name'] == 'ct122'
    # an error answer is not swallowed (as the 501 for /nodes/pve/lxc was before the simulator
    # served containers): the run fails and says why
    sim.control('fault', kind='error', method='GET', path='/nodes/pve/lxc', status=501,
                message="Method 'GET /nodes/pve/lxc' not implemented")
    result = run_inventory(sim, tmp_path, expect_ok=False, want_facts=False, validate_certs=True)
    assert result.returncode != 0
    assert '501' in result.stderr and '/nodes/pve/lxc' in result.stderr, result.stderr
