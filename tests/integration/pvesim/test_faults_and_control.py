# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults injected through /_sim/, and the inspection actions."""

from __future__ import annotations

import time

import pytest
import requests
from proxmoxer.core import ResourceException

from tests.integration.pvesim.conftest import proxmox, raw, wait_task


def test_error_fault_with_count(pvesim_fresh):
    pvesim_fresh.control('fault', kind='error', method='GET', path='/version', status=500,
                         message='proxy loop detected', count=2)
    for dummy in range(2):
        response = raw(pvesim_fresh, 'GET', '/version')
        assert (response.status_code, response.reason) == (500, 'proxy loop detected')
        assert response.json() == {'data': None, 'message': 'proxy loop detected\n'}
    assert raw(pvesim_fresh, 'GET', '/version').status_code == 200
    assert raw(pvesim_fresh, 'POST', '/nodes/pve/qemu', data={'vmid': 100}).status_code == 200
    assert pvesim_fresh.control('faults') == []


def test_error_fault_by_path_pattern_and_method(pvesim_fresh):
    pvesim_fresh.control('fault', kind='error', method='GET', path=r'/nodes/pve/qemu/\d+/status/current', status=503,
                         message='Service Unavailable')
    pvesim_fresh.control('add_vms', count=2, start=200)
    assert raw(pvesim_fresh, 'GET', '/nodes/pve/qemu/200/status/current').status_code == 503
    assert raw(pvesim_fresh, 'GET', '/nodes/pve/qemu/201/status/current').status_code == 503
    assert raw(pvesim_fresh, 'GET', '/nodes/pve/qemu/200/config').status_code == 200
    pvesim_fresh.control('clear_faults')
    assert raw(pvesim_fresh, 'GET', '/nodes/pve/qemu/200/status/current').status_code == 200


def test_latency_fault(pvesim_fresh):
    pvesim_fresh.control('fault', kind='latency', path='/nodes', seconds=0.3, count=1)
    begin = time.monotonic()
    assert raw(pvesim_fresh, 'GET', '/nodes').status_code == 200
    assert time.monotonic() - begin >= 0.3


def test_drop_fault_closes_the_connection(pvesim_fresh):
    pvesim_fresh.control('fault', kind='drop', path='/version', count=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        raw(pvesim_fresh, 'GET', '/version')
    assert raw(pvesim_fresh, 'GET', '/version').status_code == 200


def test_task_fail_fault(pvesim_fresh):
    api = proxmox(pvesim_fresh)
    pvesim_fresh.control('fault', kind='task_fail', type='qmcreate', message='lvcreate failed: out of space', count=1)
    status = wait_task(api, api.nodes('pve').qemu.post(vmid=100, scsi0='local-lvm:4'))
    assert status['exitstatus'] == 'lvcreate failed: out of space'
    log = [line['t'] for line in api.nodes('pve').tasks(status['upid']).log.get()]
    assert log[-1] == 'TASK ERROR: lvcreate failed: out of space'
    # a failed create leaves nothing behind, and the next one works
    assert pvesim_fresh.control('vms') == []
    assert wait_task(api, api.nodes('pve').qemu.post(vmid=100, scsi0='local-lvm:4'))['exitstatus'] == 'OK'


def test_agent_never_up_and_not_configured(pvesim_fresh):
    api = proxmox(pvesim_fresh)
    wait_task(api, api.nodes('pve').qemu.post(vmid=100, agent=1, ipconfig0='ip=dhcp', start=1))
    wait_task(api, api.nodes('pve').qemu.post(vmid=101, start=1))
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').qemu(101).agent.ping.post()
    assert err.value.content == 'No QEMU guest agent configured'
    wait_task(api, api.nodes('pve').qemu.post(vmid=102, agent='enabled=0', start=1))
    time.sleep(1.0)
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').qemu(102).agent.ping.post()
    assert err.value.content == 'QEMU guest agent is not running'  # configured, but switched off
    pvesim_fresh.control('fault', kind='agent_never_up', vmid=100)
    time.sleep(1.0)
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').qemu(100)('agent/network-get-interfaces').get()
    assert (err.value.status_code, err.value.content) == (500, 'QEMU guest agent is not running')
    pvesim_fresh.control('clear_faults')
    result = api.nodes('pve').qemu(100)('agent/network-get-interfaces').get()['result']
    eth0 = [i for i in result if i['name'] == 'eth0'][0]
    assert eth0['ip-addresses'][0]['ip-address'].startswith('10.10.0.')


def test_control_inspection_and_reset(pvesim_fresh):
    api = proxmox(pvesim_fresh)
    wait_task(api, api.nodes('pve').qemu.post(vmid=100, name='a', scsi0='local-lvm:1'))
    vms = pvesim_fresh.control('vms')
    assert [(v['vmid'], v['config']['name'], v['status']) for v in vms] == [(100, 'a', 'stopped')]
    tasks = pvesim_fresh.control('tasks')
    assert [t['type'] for t in tasks] == ['qmcreate'] and tasks[0]['exitstatus'] == 'OK'
    pvesim_fresh.control('reset')
    assert pvesim_fresh.control('vms') == [] and pvesim_fresh.control('tasks') == []
    assert api.nodes('pve').storage('local-lvm').content.get() == []


def test_control_rejects_bad_input(pvesim_fresh):
    with pytest.raises(Exception) as err:
        pvesim_fresh.control('fault', kind='meteor')
    assert '400' in str(err.value)
    with pytest.raises(Exception) as err:
        pvesim_fresh.control('nosuchaction')
    assert '400' in str(err.value)


def test_task_warnings(pvesim_fresh):
    api = proxmox(pvesim_fresh)
    pvesim_fresh.control('fault', kind='task_warn', type='qmstart', warnings=2, message='bridge vmbr0 is slow', count=1)
    wait_task(api, api.nodes('pve').qemu.post(vmid=100))
    status = wait_task(api, api.nodes('pve').qemu(100).status.start.post())
    assert status['exitstatus'] == 'WARNINGS: 2'
    log = [line['t'] for line in api.nodes('pve').tasks(status['upid']).log.get()]
    assert log[-1] == 'TASK WARNINGS: 2' and 'WARN: bridge vmbr0 is slow (1)' in log
    assert api.nodes('pve').qemu(100).status.current.get()['status'] == 'running'  # the work was done
