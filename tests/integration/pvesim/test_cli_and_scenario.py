# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The command line: JSON line, env files, TLS, scenario files, clean stop."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
import requests
import yaml

from tests.pvesim.fixtures import ROOT, start, stop


def _env(path: str) -> dict[str, str]:
    from ansible_collections.eminfra.pipeline.plugins.module_utils._envfile import read_env_file
    return read_env_file(path)


SCENARIO = {
    'nodes': [{'name': 'node1'}],
    'storages': [{'id': 'tank', 'type': 'dir', 'content': ['iso', 'import', 'images']}],
    'bridges': ['vmbr1'],
    'roles': {'Reader': ['Sys.Audit', 'Datastore.Audit', 'VM.Audit']},
    'users': [{'userid': 'ci@pve',
               'tokens': [{'name': 'read', 'privsep': False, 'secret': 'fixed-secret'}, {'name': 'old', 'expire': 1}]},
              {'userid': 'off@pve', 'enable': False, 'tokens': [{'name': 't'}]}],
    'acl': [{'path': '/', 'role': 'Reader', 'user': 'ci@pve'}],
    'volumes': [{'storage': 'tank', 'content': 'iso', 'name': 'seed.iso', 'size': 4096}],
    'vms': [{'vmid': 9000, 'name': 'tmpl', 'template': True, 'config': {'memory': '1024'}},
            {'vmid': 9100, 'type': 'lxc', 'name': 'ct1', 'status': 'running',
             'config': {'memory': 512, 'net0': 'name=eth0,bridge=vmbr1,hwaddr=BC:24:11:00:00:01,ip=192.0.2.9/24'}}],
    'settings': {'version': '9.0.3'},
    'faults': [{'kind': 'error', 'method': 'GET', 'path': '/cluster/status', 'status': 503,
                'message': 'cluster not ready', 'count': 1}],
}


@pytest.fixture(scope='module')
def scenario_sim(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('scenario')
    path = tmp / 'scenario.yml'
    path.write_text(yaml.safe_dump(SCENARIO))
    sim = start(str(tmp), scenario=str(path))
    yield sim
    stop(sim)


def test_env_files_and_tls(scenario_sim):
    assert set(scenario_sim.env_files) == {'read', 'old', 't'}
    for name, path in scenario_sim.env_files.items():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        values = _env(path)
        assert list(values) == ['PROXMOX_API_URL', 'PROXMOX_NODE', 'PROXMOX_TOKEN_ID', 'PROXMOX_TOKEN_SECRET',
                                'PROXMOX_TLS_VERIFY', 'PROXMOX_CA_BUNDLE']
        assert values['PROXMOX_API_URL'] == scenario_sim.url and '/api2' not in values['PROXMOX_API_URL']
        assert values['PROXMOX_NODE'] == 'node1' and values['PROXMOX_TLS_VERIFY'] == 'true'
        assert values['PROXMOX_CA_BUNDLE'] == scenario_sim.ca_path
    values = _env(scenario_sim.env_files['read'])
    assert (values['PROXMOX_TOKEN_ID'], values['PROXMOX_TOKEN_SECRET']) == ('ci@pve!read', 'fixed-secret')
    header = {'Authorization': 'PVEAPIToken=ci@pve!read=fixed-secret'}
    response = requests.get(f'{scenario_sim.api_url}/version', headers=header, verify=scenario_sim.ca_path, timeout=10)
    assert response.json()['data']['version'] == '9.0.3'
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f'{scenario_sim.api_url}/version', headers=header, timeout=10)  # system CAs: refused
    response = requests.get(scenario_sim.api_url.replace('127.0.0.1', 'localhost') + '/version', headers=header,
                            verify=scenario_sim.ca_path, timeout=10)
    assert response.status_code == 200


def test_scenario_content(scenario_sim):
    header = {'Authorization': 'PVEAPIToken=ci@pve!read=fixed-secret'}
    # the scenario's fault answers first (faults apply before routing), once
    response = requests.get(f'{scenario_sim.api_url}/cluster/status', headers=header, verify=scenario_sim.ca_path,
                            timeout=10)
    assert (response.status_code, response.reason) == (503, 'cluster not ready')
    response = requests.get(f'{scenario_sim.api_url}/cluster/status', headers=header, verify=scenario_sim.ca_path,
                            timeout=10)
    assert (response.status_code, response.reason) == (501, "Method 'GET /cluster/status' not implemented")

    def get(rel, **params):
        return requests.get(f'{scenario_sim.api_url}{rel}', headers=header, params=params,
                            verify=scenario_sim.ca_path, timeout=10)
    assert [n['node'] for n in get('/nodes').json()['data']] == ['node1']
    content = get('/nodes/node1/storage/tank/content').json()['data']
    assert [(c['volid'], c['size']) for c in content] == [('tank:iso/seed.iso', 4096)]
    assert os.path.getsize(os.path.join(scenario_sim.data_dir, 'tank', 'template', 'iso', 'seed.iso')) == 4096
    vms = get('/cluster/resources', type='vm').json()['data']
    assert [(v['vmid'], v['type'], v['name'], v['template']) for v in vms] == \
        [(9000, 'qemu', 'tmpl', 1), (9100, 'lxc', 'ct1', 0)]
    assert [(c['vmid'], c['status']) for c in get('/nodes/node1/lxc').json()['data']] == [(9100, 'running')]
    eth0 = get('/nodes/node1/lxc/9100/interfaces').json()['data'][1]
    assert (eth0['name'], eth0['hwaddr'], eth0['inet']) == ('eth0', 'bc:24:11:00:00:01', '192.0.2.9/24')
    # privsep=0: the token has its user's privileges, and no more
    response = get('/nodes/node1/storage/tank/download-url')
    assert response.status_code == 501
    perms = get('/access/permissions', path='/').json()['data']
    assert perms == {'/': {'Datastore.Audit': 1, 'Sys.Audit': 1, 'VM.Audit': 1}}
    for tokenid, secret in (('ci@pve!old', _env(scenario_sim.env_files['old'])['PROXMOX_TOKEN_SECRET']),
                            ('off@pve!t', _env(scenario_sim.env_files['t'])['PROXMOX_TOKEN_SECRET'])):
        response = requests.get(f'{scenario_sim.api_url}/version', verify=scenario_sim.ca_path, timeout=10,
                                headers={'Authorization': f'PVEAPIToken={tokenid}={secret}'})
        assert (response.status_code, response.reason) == (401, 'Authentication failed!')


def _run(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'tests.pvesim', *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_bad_scenario_and_listen_are_refused(tmp_path):
    bad = tmp_path / 'bad.yml'
    bad.write_text('clusters: []\n')
    result = _run(['--scenario', str(bad), '--listen', '127.0.0.1:0'])
    assert result.returncode == 2 and 'unknown scenario sections: clusters' in result.stderr
    bad.write_text('settings: {warp: 9}\n')
    result = _run(['--scenario', str(bad), '--listen', '127.0.0.1:0'])
    assert result.returncode == 2 and 'unknown settings: warp' in result.stderr
    result = _run(['--listen', '0.0.0.0:0'])
    assert result.returncode == 2 and 'loopback only' in result.stderr


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_clean_stop_on_signal(tmp_path, signum):
    process = subprocess.Popen([sys.executable, '-m', 'tests.pvesim', '--listen', '127.0.0.1:0',
                                '--data-dir', str(tmp_path / 'data')], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    info = json.loads(process.stdout.readline())
    assert info['url'].startswith('https://127.0.0.1:') and info['env_files'] == {}
    assert os.path.exists(info['ca'])
    process.send_signal(signum)
    begin = time.monotonic()
    assert process.wait(15) == 0
    assert time.monotonic() - begin < 15
    assert process.stderr.read() == ''


def test_routes_listing_matches_readme():
    result = _run(['--routes'])
    assert result.returncode == 0
    with open(os.path.join(ROOT, 'tests', 'pvesim', 'README.md'), encoding='utf-8') as handle:
        readme = handle.read()
    lines = result.stdout.splitlines()
    assert len(lines) >= 40
    for line in lines:
        assert line in readme, f'README does not list: {line}'
