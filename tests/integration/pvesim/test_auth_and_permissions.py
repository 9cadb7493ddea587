# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Exact 401 and 403 answers, as the real server gives them."""

from __future__ import annotations

import time

import pytest
from proxmoxer.core import ResourceException

from tests.integration.pvesim.conftest import proxmox, raw, wait_task


def _status_line(response) -> tuple[int, str]:
    return response.status_code, response.reason


def test_no_header_is_no_ticket(pvesim_fresh):
    response = raw(pvesim_fresh, 'GET', '/version', token=None)
    assert _status_line(response) == (401, 'No ticket')


@pytest.mark.parametrize('header', [
    'PVEAPIToken=pipeline@pve!full=wrong-secret',          # wrong secret
    'PVEAPIToken=pipeline@pve!nosuch=whatever',            # unknown token
    'PVEAPIToken=nobody@pve!full=whatever',                # unknown user
    'PVEAPIToken=pipeline@pve!full',                       # malformed (no secret)
    'Bearer abc',                                          # not a PVE token at all
])
def test_bad_credentials_are_authentication_failed_with_empty_body(pvesim_fresh, header):
    response = raw(pvesim_fresh, 'GET', '/version', header=header)
    assert _status_line(response) == (401, 'Authentication failed!')
    assert response.content == b''


def test_space_separator_is_accepted(pvesim_fresh):
    tokenid, secret = pvesim_fresh.token('full')
    response = raw(pvesim_fresh, 'GET', '/version', header=f'PVEAPIToken {tokenid}={secret}')
    assert response.status_code == 200 and response.json()['data']['release'] == '9.1'


def test_expired_token_and_disabled_user(pvesim_fresh):
    tokenid, secret = pvesim_fresh.token('full')
    pvesim_fresh.control('token', tokenid=tokenid, expire=int(time.time()) - 10)
    assert _status_line(raw(pvesim_fresh, 'GET', '/version')) == (401, 'Authentication failed!')
    pvesim_fresh.control('token', tokenid=tokenid, expire=int(time.time()) + 3600)
    assert raw(pvesim_fresh, 'GET', '/version').status_code == 200
    pvesim_fresh.control('user', userid='pipeline@pve', enable=0)
    assert _status_line(raw(pvesim_fresh, 'GET', '/version')) == (401, 'Authentication failed!')


@pytest.mark.parametrize('header', ['PVEAPIToken=pipeline@pve!full=wrong', None])
def test_failed_authentication_is_delayed(pvesim_fresh, header):
    pvesim_fresh.control('settings', auth_delay=0.4)
    begin = time.monotonic()
    response = raw(pvesim_fresh, 'GET', '/version', token=None, header=header)
    elapsed = time.monotonic() - begin
    assert response.status_code == 401
    assert elapsed >= 0.4  # the answer comes after the configured delay, never before


def test_noacl_token_can_authenticate_but_do_nothing(pvesim_fresh):
    api = proxmox(pvesim_fresh, 'noacl')
    assert api.version.get()['release'] == '9.1'      # open to every authenticated caller
    assert api.access.permissions.get() == {}
    assert api.nodes('pve').storage.get() == []        # filtered, not refused
    assert api.cluster.resources.get(type='vm') == []
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').status.get()
    assert (err.value.status_code, err.value.content) == (403, 'Permission check failed (/nodes/pve, Sys.Audit)')
    response = raw(pvesim_fresh, 'GET', '/nodes/pve/storage/local/content', token='noacl')
    assert _status_line(response) == (403, 'Permission check failed (/storage/local, Datastore.Audit|Datastore.AllocateSpace)')
    assert response.json() == {'data': None,
                               'message': 'Permission check failed (/storage/local, Datastore.Audit|Datastore.AllocateSpace)\n'}
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').storage('local')('download-url').post(url='http://127.0.0.1:9/x.iso', content='iso', filename='x.iso')
    assert (err.value.status_code, err.value.content) == (403, 'Permission check failed (/storage/local, Datastore.AllocateTemplate)')


def test_nodownload_token_gets_the_bare_message(pvesim_fresh):
    api = proxmox(pvesim_fresh, 'nodownload')
    assert api.nodes('pve').status.get()['pveversion'].startswith('pve-manager/9.')
    response = raw(pvesim_fresh, 'POST', '/nodes/pve/storage/local/download-url', token='nodownload',
                   data={'url': 'http://127.0.0.1:9/x.iso', 'content': 'iso', 'filename': 'x.iso'})
    assert _status_line(response) == (403, 'Permission check failed')
    assert response.json() == {'data': None, 'message': 'Permission check failed\n'}
    with pytest.raises(ResourceException) as err:
        api.nodes('pve')('query-url-metadata').get(url='http://127.0.0.1:9/x.iso')
    assert (err.value.status_code, err.value.content) == (403, 'Permission check failed')
    perms = api.access.permissions.get(path='/')
    assert 'Sys.AccessNetwork' not in perms['/'] and perms['/']['Datastore.AllocateTemplate'] == 1


def test_access_network_on_the_node_is_enough_for_downloads(pvesim_fresh):
    pvesim_fresh.control('role', name='NetOnly', privs=['Sys.AccessNetwork'])
    pvesim_fresh.control('acl', path='/nodes/pve', role='NetOnly', token='pipeline@pve!nodownload')
    response = raw(pvesim_fresh, 'POST', '/nodes/pve/storage/local/download-url', token='nodownload',
                   data={'url': 'http://127.0.0.1:9/x.iso', 'content': 'iso', 'filename': 'x.iso'})
    assert response.status_code == 200 and response.json()['data'].startswith('UPID:pve:')


def test_token_cannot_pass_through_raw_pci_host(pvesim_fresh):
    api = proxmox(pvesim_fresh)
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').qemu.post(vmid=120, hostpci0='host=0000:01:00.0,pcie=1')
    assert (err.value.status_code, err.value.content) == (500, "only root can set 'hostpci0' config for non-mapped devices")
    upid = api.nodes('pve').qemu.post(vmid=120, hostpci0='mapping=gpu0,pcie=1', scsi0='local-lvm:1')
    assert wait_task(api, upid)['exitstatus'] == 'OK'
    # Mapping.Use on /mapping/pci/gpu0 is required
    tokenid, dummy = pvesim_fresh.token('nodownload')
    pvesim_fresh.control('acl', path='/mapping/pci/gpu0', role='NoAccess', token=tokenid)
    with pytest.raises(ResourceException) as err:
        proxmox(pvesim_fresh, 'nodownload').nodes('pve').qemu.post(vmid=121, hostpci0='mapping=gpu0')
    assert (err.value.status_code, err.value.content) == (403, 'Permission check failed (/mapping/pci/gpu0, Mapping.Use)')


def test_create_checks_storage_bridge_and_import_type(pvesim_fresh, file_server):
    api = proxmox(pvesim_fresh)
    url, dummy = file_server.add('boot.iso', b'iso-data')
    wait_task(api, api.nodes('pve').storage('local')('download-url').post(url=url, content='iso', filename='boot.iso'))
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').qemu.post(vmid=130, scsi0='local-lvm:0,import-from=local:iso/boot.iso')
    assert err.value.status_code == 400
    assert err.value.errors == {'scsi0': "local:iso/boot.iso has wrong type 'iso' - needs to be 'images' or 'import'"}
    # a role without SDN.Use on the bridge, but with everything else
    pvesim_fresh.control('role', name='NoSDN',
                         privs=['VM.Allocate', 'VM.Config.Network', 'VM.Config.Disk', 'Datastore.AllocateSpace'])
    pvesim_fresh.control('token', tokenid='pipeline@pve!nosdn', privsep=1, secret='s3cret')
    pvesim_fresh.control('acl', path='/', role='NoSDN', token='pipeline@pve!nosdn')
    header = 'PVEAPIToken=pipeline@pve!nosdn=s3cret'
    response = raw(pvesim_fresh, 'POST', '/nodes/pve/qemu', header=header, data={'vmid': 131, 'net0': 'virtio,bridge=vmbr0'})
    assert _status_line(response) == (403, 'Permission check failed (/sdn/zones/localnetwork/vmbr0, SDN.Use)')
    response = raw(pvesim_fresh, 'POST', '/nodes/pve/qemu', header=header, data={'vmid': 131, 'cores': 2})
    assert _status_line(response) == (403, 'Permission check failed (/vms/131, VM.Config.CPU)')
    response = raw(pvesim_fresh, 'POST', '/nodes/pve/qemu', header=header, data={'vmid': 131, 'scsi0': 'local:2'})
    assert response.status_code == 400 and response.json()['errors'] == {'storage': "storage 'local' does not support vm images"}


def test_privsep_intersection_and_propagation(pvesim_fresh):
    # user may only audit /vms/200 (not propagated below /vms); token has PVEAdmin everywhere
    pvesim_fresh.control('user', userid='ops@pve')
    pvesim_fresh.control('token', tokenid='ops@pve!t', privsep=1, secret='x')
    pvesim_fresh.control('acl', path='/vms', role='PVEAuditor', user='ops@pve', propagate=0)
    pvesim_fresh.control('acl', path='/vms/200', role='PVEVMAdmin', user='ops@pve')
    pvesim_fresh.control('acl', path='/', role='PVEAdmin', token='ops@pve!t')
    header = 'PVEAPIToken=ops@pve!t=x'
    perms = raw(pvesim_fresh, 'GET', '/access/permissions', header=header).json()['data']
    assert set(perms) == {'/vms', '/vms/200'}
    assert perms['/vms'] == {'VM.Audit': 0, 'VM.GuestAgent.Audit': 0, 'Datastore.Audit': 0, 'Mapping.Audit': 0,
                             'Pool.Audit': 0, 'SDN.Audit': 0, 'Sys.Audit': 0}
    assert perms['/vms/200']['VM.Allocate'] == 1 and 'Sys.Audit' not in perms['/vms/200']
    assert raw(pvesim_fresh, 'GET', '/access/permissions', header=header, params={'path': '/vms/300'}).json()['data'] == \
        {'/vms/300': {}}
    # a token without privsep has exactly its user's privileges
    pvesim_fresh.control('token', tokenid='ops@pve!t', privsep=0)
    perms = raw(pvesim_fresh, 'GET', '/access/permissions', header=header, params={'path': '/vms/200'}).json()['data']
    assert perms['/vms/200']['VM.Allocate'] == 1


def test_unknown_path_and_bad_parameters(pvesim_fresh):
    response = raw(pvesim_fresh, 'GET', '/x')
    assert _status_line(response) == (501, "Method 'GET /x' not implemented")
    assert response.json() == {'data': None, 'message': "Method 'GET /x' not implemented\n"}
    response = raw(pvesim_fresh, 'GET', '/cluster/nextid', params={'vmid': 'abc'})
    assert _status_line(response) == (400, 'Parameter verification failed.')
    assert response.json() == {'data': None, 'message': 'Parameter verification failed.\n',
                               'errors': {'vmid': "type check ('integer') failed - got 'abc'"}}
    response = raw(pvesim_fresh, 'POST', '/nodes/pve/qemu', data={'vmid': 140, 'bogus': 1, 'onboot': 'maybe'})
    assert response.json()['errors'] == {
        'bogus': 'property is not defined in schema and the schema does not allow additional properties',
        'onboot': "type check ('boolean') failed - got 'maybe'"}
    response = raw(pvesim_fresh, 'POST', '/nodes/pve/storage/local/download-url', data={'content': 'iso'})
    assert response.json()['errors'] == {'url': 'property is missing and it is not optional',
                                         'filename': 'property is missing and it is not optional'}
    response = raw(pvesim_fresh, 'GET', '/nodes/nosuch/status')
    assert response.status_code == 500 and response.reason.startswith("hostname lookup 'nosuch' failed")


def test_token_info_needs_user_modify(pvesim_fresh):
    # a token is not its user: 'userid-param self' does not match, so User.Modify is required
    response = raw(pvesim_fresh, 'GET', '/access/users/pipeline@pve/token/full')
    assert _status_line(response) == (403, 'Permission check failed')
    pvesim_fresh.control('role', name='UserAdmin', privs=['User.Modify'])
    pvesim_fresh.control('acl', path='/access/groups', role='UserAdmin', user='pipeline@pve')
    pvesim_fresh.control('acl', path='/access/groups', role='UserAdmin', token='pipeline@pve!full')
    assert raw(pvesim_fresh, 'GET', '/access/users/pipeline@pve/token/full').json()['data'] == {'privsep': 1, 'expire': 0}


def test_task_list_is_filtered_by_owner(pvesim_fresh):
    api = proxmox(pvesim_fresh)
    upid = api.nodes('pve').qemu.post(vmid=150)
    assert api.nodes('pve').tasks.get(source='active')[0]['upid'] == upid
    wait_task(api, upid)
    rows = api.nodes('pve').tasks.get()
    assert [(r['upid'], r['status']) for r in rows] == [(upid, 'OK')]
    assert api.nodes('pve').tasks.get(source='active') == []
    assert proxmox(pvesim_fresh, 'noacl').nodes('pve').tasks.get() == []  # not its task, no Sys.Audit


def test_create_and_config_permission_rules(pvesim_fresh):
    """qemu-server's create_vm / update_vm_api checks, in their order."""
    pvesim_fresh.control('role', name='Basic', privs=['VM.Allocate', 'VM.Config.Options', 'Datastore.AllocateSpace'])
    pvesim_fresh.control('token', tokenid='pipeline@pve!basic', privsep=1, secret='b')
    pvesim_fresh.control('acl', path='/', role='Basic', token='pipeline@pve!basic')
    header = 'PVEAPIToken=pipeline@pve!basic=b'

    def create(**data):
        return raw(pvesim_fresh, 'POST', '/nodes/pve/qemu', header=header, data=data)
    ok = create(vmid=170, name='basic', onboot=1, scsi0='local-lvm:1', tags='a')
    assert ok.status_code == 200  # disks need no VM.Config.Disk on create; tags need nothing
    assert _status_line(create(vmid=171, start=1)) == (403, 'Permission check failed (/vms/171, VM.PowerMgmt)')
    assert _status_line(create(vmid=171, ciuser='x')) == \
        (403, 'Permission check failed (/vms/171, VM.Config.Cloudinit|VM.Config.Network)')
    assert _status_line(create(vmid=171, vmgenid='1')) == (500, "only root can set 'vmgenid' config")
    assert _status_line(create(vmid=171, serial0='/dev/ttyS0')) == \
        (500, "only root can set 'serial0' config for real devices")
    assert _status_line(create(vmid=171, startup='order=1')) == (403, 'Permission check failed (/, Sys.Modify)')
    # no VM.Allocate at all: the bare message
    response = raw(pvesim_fresh, 'POST', '/nodes/pve/qemu', token='noacl', data={'vmid': 172})
    assert _status_line(response) == (403, 'Permission check failed')
    wait_task(proxmox(pvesim_fresh), ok.json()['data'])
    # config changes: disks need VM.Config.Disk there
    response = raw(pvesim_fresh, 'PUT', '/nodes/pve/qemu/170/config', header=header, data={'scsi1': 'local-lvm:1'})
    assert _status_line(response) == (403, 'Permission check failed (/vms/170, VM.Config.Disk)')
    response = raw(pvesim_fresh, 'PUT', '/nodes/pve/qemu/170/config', header=header, data={'delete': 'nosuch'})
    assert response.json()['errors'] == {'delete': "unknown option 'nosuch'"}
    response = raw(pvesim_fresh, 'PUT', '/nodes/pve/qemu/170/config', header=header, data={'skiplock': 1, 'name': 'x'})
    assert response.json()['errors'] == {'skiplock': 'Only root may use this option.'}
    response = raw(pvesim_fresh, 'PUT', '/nodes/pve/qemu/170/config', header=header, data={})
    assert _status_line(response) == (500, 'no options specified')
    assert raw(pvesim_fresh, 'PUT', '/nodes/pve/qemu/170/config', header=header, data={'name': 'renamed'}).status_code == 200


def test_pool_delegation(pvesim_fresh, tmp_path):
    """VM.Allocate on /pool/dev is enough to create a VM in that pool, which then inherits the
    pool's roles."""
    from tests.pvesim.fixtures import start, stop
    scenario = tmp_path / 'pool.yml'
    scenario.write_text(
        'pools: {dev: {}}\n'
        'users: [{userid: dev@pve, tokens: [{name: t, secret: s, privsep: false}]}]\n'
        'acl:\n'
        '  - {path: /pool/dev, role: PVEVMAdmin, user: dev@pve}\n'
        '  - {path: /, role: PVEDatastoreUser, user: dev@pve}\n'
        '  - {path: /sdn, role: PVESDNUser, user: dev@pve}\n')
    sim = start(str(tmp_path / 'sim'), scenario=str(scenario))
    try:
        header = 'PVEAPIToken=dev@pve!t=s'
        response = raw(sim, 'POST', '/nodes/pve/qemu', header=header, data={'vmid': 300})
        assert (response.status_code, response.reason) == (403, 'Permission check failed')
        response = raw(sim, 'POST', '/nodes/pve/qemu', header=header, data={'vmid': 300, 'pool': 'dev', 'cores': 2})
        assert response.status_code == 200, response.reason
        time.sleep(0.3)
        status = raw(sim, 'GET', f"/nodes/pve/tasks/{response.json()['data']}/status", header=header).json()['data']
        assert status['exitstatus'] == 'OK'
        perms = raw(sim, 'GET', '/access/permissions', header=header, params={'path': '/vms/300'}).json()['data']
        assert perms['/vms/300']['VM.Allocate'] == 0  # from the pool, not propagating
        resources = raw(sim, 'GET', '/cluster/resources', header=header, params={'type': 'vm'}).json()['data']
        assert [(r['vmid'], r['pool']) for r in resources] == [(300, 'dev')]
        response = raw(sim, 'POST', '/nodes/pve/qemu', header=header, data={'vmid': 301, 'pool': 'nosuch'})
        assert (response.status_code, response.reason) == (403, "Permission check failed (pool 'nosuch' does not exist)")
    finally:
        stop(sim)


def test_pools_list_only_what_the_caller_may_audit(pvesim_fresh, tmp_path):
    """GET /pools (PVE::API2::Pool index): every read of the bpg/proxmox provider calls it. The
    list holds the pools with Pool.Audit; with poolid, that pool and its members, or 403."""
    from tests.pvesim.fixtures import start, stop
    scenario = tmp_path / 'pools.yml'
    scenario.write_text(
        'pools: {dev: {comment: the dev VMs}, ops: {}}\n'
        'users: [{userid: dev@pve, tokens: [{name: t, secret: s, privsep: false}]}]\n'
        'acl:\n'
        '  - {path: /pool/dev, role: PVEPoolUser, user: dev@pve}\n'
        '  - {path: /pool/dev, role: PVEVMAdmin, user: dev@pve}\n'
        '  - {path: /, role: PVEDatastoreUser, user: dev@pve}\n'
        '  - {path: /sdn, role: PVESDNUser, user: dev@pve}\n')
    sim = start(str(tmp_path / 'sim'), scenario=str(scenario))
    try:
        header = 'PVEAPIToken=dev@pve!t=s'
        assert raw(sim, 'GET', '/pools', header=header).json()['data'] == [{'poolid': 'dev', 'comment': 'the dev VMs'}]
        response = raw(sim, 'POST', '/nodes/pve/qemu', header=header, data={'vmid': 300, 'pool': 'dev', 'cores': 2})
        assert response.status_code == 200, response.reason
        time.sleep(0.3)
        pool = raw(sim, 'GET', '/pools', header=header, params={'poolid': 'dev'}).json()['data']
        assert [(p['poolid'], p['comment']) for p in pool] == [('dev', 'the dev VMs')]
        assert [(m['id'], m['type'], m['vmid'], m['node']) for m in pool[0]['members']] == [('qemu/300', 'qemu', 300, 'pve')]
        assert raw(sim, 'GET', '/pools', header=header, params={'poolid': 'dev', 'type': 'storage'}).json()['data'] == [
            {'poolid': 'dev', 'comment': 'the dev VMs', 'members': []}]
        response = raw(sim, 'GET', '/pools', header=header, params={'poolid': 'ops'})
        assert (response.status_code, response.reason) == (403, 'Permission check failed (/pool/ops, Pool.Audit)')
        response = raw(sim, 'GET', '/pools', header=header, params={'type': 'qemu'})
        assert response.status_code == 400 and response.json()['errors'] == {'poolid': "missing property required by 'type'"}
    finally:
        stop(sim)
