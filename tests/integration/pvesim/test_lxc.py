# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Containers in the simulator, through the real proxmoxer client over HTTPS: the container
template as vztmpl content, create from it, list, config read and update, status and power,
interfaces, delete, the VMID space shared with qemu VMs, and the real refusals."""

from __future__ import annotations

import base64
import io
import os
import struct
import subprocess
import tarfile

import pytest
from proxmoxer import ResourceException

from tests.integration.pvesim.conftest import proxmox, raw, wait_task

TEMPLATE = 'ubuntu-24.04-standard_24.04-2_amd64.tar.zst'
TEMPLATE_VOLID = f'local:vztmpl/{TEMPLATE}'


def ssh_key(comment: str = 'ops@lab') -> str:
    """A well-formed ed25519 public key line (type, base64 blob that names its type, comment)."""
    blob = struct.pack('>I', 11) + b'ssh-ed25519' + struct.pack('>I', 32) + bytes(range(32))
    return f'ssh-ed25519 {base64.b64encode(blob).decode()} {comment}'


def template_archive() -> bytes:
    """A small root tree packed like the appliance templates: tar, zstd-compressed."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w') as tar:
        data = b'NAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\n'
        info = tarfile.TarInfo('./etc/os-release')
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return subprocess.run(['zstd', '-q', '-c'], input=buffer.getvalue(), capture_output=True, check=True).stdout


def upload_template(sim, name: str = TEMPLATE) -> dict:
    api = proxmox(sim)
    response = raw(sim, 'POST', '/nodes/pve/storage/local/upload',
                   files={'content': (None, 'vztmpl'), 'filename': (name, template_archive())})
    assert response.status_code == 200, response.text
    return wait_task(api, response.json()['data'])


def create_body(vmid: int, **extra) -> dict:
    body = {'vmid': vmid, 'ostemplate': TEMPLATE_VOLID, 'hostname': f'ct{vmid}', 'memory': 1024, 'swap': 512,
            'cores': 2, 'rootfs': 'local-lvm:8', 'storage': 'local-lvm',
            'net0': f'name=eth0,bridge=vmbr0,firewall=0,ip=192.0.2.{vmid % 200}/24,gw=192.0.2.1',
            'ssh-public-keys': ssh_key(), 'unprivileged': 1, 'features': 'nesting=1', 'onboot': 1,
            'tags': 'k3s;ubuntu', 'description': 'utility node', 'start': 0,
            # what the bpg/proxmox provider sends besides (its defaults)
            'arch': 'amd64', 'console': 1, 'cmode': 'tty', 'cpulimit': 0, 'ostype': 'ubuntu', 'protection': 0,
            'template': 0, 'tty': 2}
    body.update(extra)
    return body


def create(sim, vmid: int, token: str = 'full', **extra) -> dict:
    api = proxmox(sim, token)
    upid = api.nodes('pve').lxc.post(**create_body(vmid, **extra))
    assert upid.startswith('UPID:pve:') and f':vzcreate:{vmid}:' in upid
    return wait_task(api, upid)


def error(excinfo) -> tuple[int, str]:
    return excinfo.value.status_code, excinfo.value.content


def test_template_storage_takes_vztmpl_uploads_and_downloads(pvesim_fresh, file_server):
    sim = pvesim_fresh
    api = proxmox(sim)
    assert upload_template(sim)['exitstatus'] == 'OK'
    url, digest = file_server.add('debian-12-standard_12.7-1_amd64.tar.gz', b'\x1f\x8b' + b'\0' * 64)
    upid = api.nodes('pve').storage('local')('download-url').post(
        url=url, content='vztmpl', filename='debian-12-standard_12.7-1_amd64.tar.gz', checksum=digest,
        **{'checksum-algorithm': 'sha256'})
    assert wait_task(api, upid)['exitstatus'] == 'OK'
    listed = {v['volid']: v for v in api.nodes('pve').storage('local').content.get(content='vztmpl')}
    assert listed[TEMPLATE_VOLID]['format'] == 'tzst' and listed[TEMPLATE_VOLID]['content'] == 'vztmpl'
    assert listed['local:vztmpl/debian-12-standard_12.7-1_amd64.tar.gz']['format'] == 'tgz'
    assert os.path.isfile(os.path.join(sim.data_dir, 'local', 'template', 'cache', TEMPLATE))
    # a compressed image that is not a tar archive is not a container template
    response = raw(sim, 'POST', '/nodes/pve/storage/local/upload',
                   files={'content': (None, 'vztmpl'), 'filename': ('rootfs.zst', b'x')})
    assert (response.status_code, response.json()['errors']) == (400, {'filename': 'wrong file extension'})


def test_container_lifecycle(pvesim_fresh):
    sim = pvesim_fresh
    api = proxmox(sim)
    upload_template(sim)
    assert create(sim, 120)['exitstatus'] == 'OK'
    listed = api.nodes('pve').lxc.get()
    assert [(c['vmid'], c['name'], c['status'], c['tags']) for c in listed] == [(120, 'ct120', 'stopped', 'k3s;ubuntu')]
    assert listed[0]['maxmem'] == 1024 << 20 and listed[0]['maxswap'] == 512 << 20 and listed[0]['maxdisk'] == 8 << 30
    assert api.nodes('pve').qemu.get() == []
    config = api.nodes('pve').lxc(120).config.get()
    assert config['rootfs'] == 'local-lvm:vm-120-disk-0,size=8G'
    assert config['net0'].startswith('name=eth0,bridge=vmbr0,firewall=0,gw=192.0.2.1,hwaddr=BC:24:11:')
    assert config['net0'].endswith(',ip=192.0.2.120/24,type=veth')
    assert {k: config[k] for k in ('hostname', 'memory', 'swap', 'cores', 'unprivileged', 'features', 'onboot',
                                   'ostype', 'arch', 'tags')} == {
        'hostname': 'ct120', 'memory': 1024, 'swap': 512, 'cores': 2, 'unprivileged': 1, 'features': 'nesting=1',
        'onboot': 1, 'ostype': 'ubuntu', 'arch': 'amd64', 'tags': 'k3s;ubuntu'}
    assert 'ssh-public-keys' not in config and 'password' not in config and 'lock' not in config
    assert config['description'] == 'utility node\n'  # stored as comment lines: each ends in a newline
    # the root disk is a real volume on the thin pool, owned by the container
    volumes = api.nodes('pve').storage('local-lvm').content.get(vmid=120)
    assert [(v['volid'], v['content'], v['size']) for v in volumes] == [('local-lvm:vm-120-disk-0', 'rootdir', 8 << 30)]
    resources = {r['id']: r for r in api.cluster.resources.get(type='vm')}
    assert resources['lxc/120']['type'] == 'lxc' and resources['lxc/120']['name'] == 'ct120'
    assert api.nodes('pve').lxc(120).status.current.get()['status'] == 'stopped'
    assert api.nodes('pve').lxc(120).interfaces.get() is None  # nothing to read from a stopped container

    upid = api.nodes('pve').lxc(120).status.start.post()
    assert ':vzstart:120:' in upid and wait_task(api, upid)['exitstatus'] == 'OK'
    status = api.nodes('pve').lxc(120).status.current.get()
    assert status['status'] == 'running' and status['name'] == 'ct120' and status['ha'] == {'managed': 0}
    ifaces = {i['name']: i for i in api.nodes('pve').lxc(120).interfaces.get()}
    assert ifaces['eth0']['inet'] == '192.0.2.120/24'
    assert ifaces['eth0']['hwaddr'] == config['net0'].split('hwaddr=')[1].split(',')[0].lower()
    assert {'ip-address': '192.0.2.120', 'ip-address-type': 'inet', 'prefix': 24} in ifaces['eth0']['ip-addresses']
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').lxc(120).status.start.post()
    assert error(err) == (500, 'CT 120 already running')
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').lxc(120).delete()
    assert error(err) == (500, 'unable to destroy CT 120 - container is running')

    # config update: synchronous, digest-guarded, deletes
    api.nodes('pve').lxc(120).config.put(memory=2048, cores=4, delete='description')
    config = api.nodes('pve').lxc(120).config.get()
    assert (config['memory'], config['cores'], 'description' in config) == (2048, 4, False)
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').lxc(120).config.put(memory=512, digest='0' * 40)
    assert error(err) == (500, 'detected modified configuration - file changed by other user? Try again.')
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').lxc(120).config.put(unprivileged=1)  # even the value it has
    assert error(err) == (500, "unable to modify read-only option: 'unprivileged'")
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').lxc(120).config.put()
    assert error(err) == (500, 'no options specified')
    response = raw(sim, 'PUT', '/nodes/pve/lxc/120/config', data={'delete': 'bogus'})
    assert (response.status_code, response.json()['errors']) == (400, {'delete': "unknown option 'bogus'"})
    response = raw(sim, 'PUT', '/nodes/pve/lxc/120/config', data={'delete': 'swap', 'swap': 256})
    assert response.json()['errors'] == {'delete': "you can't use '-swap' and -delete swap' at the same time"}

    wait_task(api, api.nodes('pve').lxc(120).status.reboot.post(timeout=30))
    assert api.nodes('pve').lxc(120).status.current.get()['status'] == 'running'
    upid = api.nodes('pve').lxc(120).status.shutdown.post(forceStop=1, timeout=30)
    assert ':vzshutdown:120:' in upid and wait_task(api, upid)['exitstatus'] == 'OK'
    assert api.nodes('pve').lxc(120).status.current.get()['status'] == 'stopped'
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').lxc(120).status.stop.post()
    assert error(err) == (500, 'CT 120 not running')
    wait_task(api, api.nodes('pve').lxc(120).status.start.post())
    upid = api.nodes('pve').lxc(120).status.stop.post()
    assert ':vzstop:120:' in upid and wait_task(api, upid)['exitstatus'] == 'OK'

    with pytest.raises(ResourceException) as err:
        api.nodes('pve').lxc(120).status.reboot.post()
    assert error(err) == (500, 'VM 120 not running')  # the reboot endpoint's own wording
    wait_task(api, api.nodes('pve').lxc(120).resize.put(disk='rootfs', size='+2G'))
    assert api.nodes('pve').lxc(120).config.get()['rootfs'] == 'local-lvm:vm-120-disk-0,size=10G'

    upid = api.nodes('pve').lxc(120).delete()
    assert ':vzdestroy:120:' in upid and wait_task(api, upid)['exitstatus'] == 'OK'
    assert api.nodes('pve').lxc.get() == []
    assert api.nodes('pve').storage('local-lvm').content.get(vmid=120) == []
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').lxc(120).status.current.get()
    assert error(err) == (500, "Configuration file 'nodes/pve/lxc/120.conf' does not exist")


def test_create_with_start_pool_and_default_rootfs(pvesim_fresh):
    sim = pvesim_fresh
    api = proxmox(sim)
    upload_template(sim)
    body = create_body(121, start=1, pool='lab')
    for key in ('rootfs', 'hostname', 'memory', 'swap', 'unprivileged'):
        del body[key]
    upid = api.nodes('pve').lxc.post(**body)
    assert wait_task(api, upid)['exitstatus'] == 'OK'
    assert api.nodes('pve').lxc(121).status.current.get()['status'] == 'running'
    config = api.nodes('pve').lxc(121).config.get()
    # no rootfs: 4 GiB on 'storage'; PVE 9 containers are unprivileged unless asked otherwise;
    # the hostname, memory and swap defaults are written to the config
    assert config['rootfs'] == 'local-lvm:vm-121-disk-0,size=4G'
    assert (config['unprivileged'], config['hostname'], config['memory'], config['swap']) == (1, 'CT121', 512, 512)
    members = api.pools.get(poolid='lab')[0]['members']
    assert [(m['id'], m['type'], m['name']) for m in members] == [('lxc/121', 'lxc', 'CT121')]
    assert api.pools('lab').get()['members'][0]['vmid'] == 121


def test_vmid_is_shared_with_qemu(pvesim_fresh):
    sim = pvesim_fresh
    api = proxmox(sim)
    upload_template(sim)
    wait_task(api, api.nodes('pve').qemu.post(vmid=130, name='vm130', memory=512))
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').lxc.post(**create_body(130))
    assert error(err) == (500, "VM 130 already exists on node 'pve'")
    create(sim, 131)
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').qemu.post(vmid=131, name='vm131')
    assert error(err) == (500, "unable to create VM 131 - CT 131 already exists on node 'pve'")
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').lxc.post(**create_body(131))
    assert error(err) == (500, "CT 131 already exists on node 'pve'")
    assert api.cluster.nextid.get() == '100'
    response = raw(sim, 'GET', '/cluster/nextid', params={'vmid': 131})
    assert (response.status_code, response.json()['errors']) == (400, {'vmid': 'VM 131 already exists'})
    # each guest type has its own config files
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').qemu(131).config.get()
    assert error(err) == (500, "Configuration file 'nodes/pve/qemu-server/131.conf' does not exist")
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').lxc(130).config.get()
    assert error(err) == (500, "Configuration file 'nodes/pve/lxc/130.conf' does not exist")
    assert [v['vmid'] for v in api.nodes('pve').qemu.get()] == [130]
    assert [c['vmid'] for c in api.nodes('pve').lxc.get()] == [131]
    types = {r['vmid']: r['type'] for r in api.cluster.resources.get(type='vm')}
    assert types == {130: 'qemu', 131: 'lxc'}


def test_create_refusals(pvesim_fresh):
    sim = pvesim_fresh
    api = proxmox(sim)
    upload_template(sim)
    response = raw(sim, 'POST', '/nodes/pve/lxc',
                   data={'vmid': 140, 'net0': 'bridge=vmbr0', 'password': 'abc', 'cores': 0})
    assert (response.status_code, response.reason) == (400, 'Parameter verification failed.')
    assert response.json()['errors'] == {
        'ostemplate': 'property is missing and it is not optional',
        'net0': 'invalid format - format error\nname: property is missing and it is not optional\n',
        'password': 'value must be at least 5 characters long',
        'cores': 'value must have a minimum value of 1'}
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').lxc.post(**create_body(140, **{'ssh-public-keys': 'ssh-ed25519 AAAAnotakey ops@lab'}))
    assert error(err) == (500, 'SSH public key validation error')
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').lxc.post(**create_body(140, mp0='local-lvm:2,mp=/data', rootfs=None))
    assert error(err) == (500, "mount points configured, but 'rootfs' not set - aborting")
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').lxc.post(**create_body(140, rootfs='local:8'))
    assert err.value.status_code == 400
    assert err.value.errors == {'storage': "storage 'local' does not support container directories"}
    raw(sim, 'POST', '/nodes/pve/storage/local/upload', files={'content': (None, 'iso'), 'filename': ('x.iso', b'i')})
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').lxc.post(**create_body(140, ostemplate='local:iso/x.iso'))
    assert error(err) == (500, "unable to use volume local:iso/x.iso - content type needs to be 'vztmpl'")
    # a template that is not there fails the task, and leaves nothing behind
    status = wait_task(api, api.nodes('pve').lxc.post(**create_body(
        140, ostemplate='local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst')))
    assert status['exitstatus'] == \
        "unable to create CT 140 - can't find file 'local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst'"
    assert api.nodes('pve').lxc.get() == [] and api.nodes('pve').storage('local-lvm').content.get(vmid=140) == []


def _token(sim, name: str, privs: list[str]) -> str:
    tokenid = f'pipeline@pve!{name}'
    sim.control('role', name=f'Role-{name}', privs=privs)
    sim.control('token', tokenid=tokenid, privsep=1, secret=f'{name}-secret')
    sim.control('acl', path='/', role=f'Role-{name}', token=tokenid)
    return f'PVEAPIToken={tokenid}={name}-secret'


CT_PRIVS = ['VM.Allocate', 'VM.Audit', 'VM.PowerMgmt', 'VM.Config.Disk', 'VM.Config.CPU', 'VM.Config.Memory',
            'VM.Config.Network', 'VM.Config.Options', 'Datastore.AllocateSpace', 'Datastore.Audit', 'SDN.Use']


@pytest.mark.parametrize('missing, extra, expected', [
    ('VM.Allocate', {}, 'Permission check failed'),
    ('Datastore.AllocateSpace', {}, 'Permission check failed (/storage/local-lvm, Datastore.AllocateSpace)'),
    ('SDN.Use', {}, 'Permission check failed (/sdn/zones/localnetwork/vmbr0, SDN.Use)'),
    ('VM.Config.Memory', {}, 'Permission check failed (/vms/150, VM.Config.Memory)'),
    ('VM.Config.Network', {}, 'Permission check failed (/vms/150, VM.Config.Network)'),
    (None, {'unprivileged': 0, 'features': ''},
     'Permission check failed (/, Sys.Modify)'),
    (None, {'features': 'nesting=1,keyctl=1'},
     'Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)'),
    # on a new container anything but a lone nesting=1 counts, even a flag written as 0
    (None, {'features': 'nesting=1,keyctl=0'},
     'Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)'),
    (None, {'unprivileged': 0, 'features': 'nesting=1'},
     'Permission check failed (/, Sys.Modify)'),
    (None, {'dev0': '/dev/net/tun'},
     'Permission check failed (configuring device passthrough is only allowed for root@pam)'),
    (None, {'mp0': '/srv/data,mp=/data'},
     'Permission check failed (mount point type bind is only allowed for root@pam)'),
])
def test_create_privileges(pvesim_fresh, missing, extra, expected):
    sim = pvesim_fresh
    upload_template(sim)
    header = _token(sim, 'ct', [p for p in CT_PRIVS if p != missing])
    body = {k: v for k, v in create_body(150, **extra).items() if v != ''}
    response = raw(sim, 'POST', '/nodes/pve/lxc', header=header, data=body)
    assert (response.status_code, response.reason) == (403, expected), response.text
    assert proxmox(sim).nodes('pve').lxc.get() == []


def test_template_needs_storage_read_access(pvesim_fresh):
    sim = pvesim_fresh
    upload_template(sim)
    header = _token(sim, 'notmpl', CT_PRIVS)
    # the template storage gets an ACL that takes the storage privileges away
    sim.control('role', name='NoStore', privs=['VM.Audit'])
    sim.control('acl', path='/storage/local', role='NoStore', token='pipeline@pve!notmpl')
    response = raw(sim, 'POST', '/nodes/pve/lxc', header=header, data=create_body(151))
    assert (response.status_code, response.reason) == \
        (403, 'Permission check failed (/storage/local, Datastore.AllocateSpace|Datastore.Audit)')


def test_config_update_and_power_privileges(pvesim_fresh):
    sim = pvesim_fresh
    upload_template(sim)
    create(sim, 152)
    header = _token(sim, 'cfg', ['VM.Audit', 'VM.Config.CPU'])
    response = raw(sim, 'PUT', '/nodes/pve/lxc/152/config', header=header, data={'memory': 2048})
    assert (response.status_code, response.reason) == (403, 'Permission check failed (/vms/152, VM.Config.Memory)')
    response = raw(sim, 'PUT', '/nodes/pve/lxc/152/config', header=header, data={'cores': 3})
    assert response.status_code == 200 and response.json() == {'data': None}
    response = raw(sim, 'PUT', '/nodes/pve/lxc/152/config', header=header, data={'tags': 'db'})
    assert (response.status_code, response.reason) == (403, 'Permission check failed (/vms/152, VM.Config.Options)')
    response = raw(sim, 'POST', '/nodes/pve/lxc/152/status/start', header=header)
    assert (response.status_code, response.reason) == (403, 'Permission check failed (/vms/152, VM.PowerMgmt)')
    response = raw(sim, 'DELETE', '/nodes/pve/lxc/152', header=header)
    assert (response.status_code, response.reason) == (403, 'Permission check failed (/vms/152, VM.Allocate)')
    # nesting on an existing container takes VM.Allocate
    header = _token(sim, 'opts', ['VM.Audit', 'VM.Config.Options'])
    response = raw(sim, 'PUT', '/nodes/pve/lxc/152/config', header=header, data={'features': 'nesting=0'})
    assert (response.status_code, response.reason) == (403, 'Permission check failed (/vms/152, VM.Allocate)')
    response = raw(sim, 'PUT', '/nodes/pve/lxc/152/config', header=header, data={'features': 'nesting=1,fuse=0'})
    assert (response.status_code, response.reason) == \
        (403, 'Permission check failed (changing feature flags (except nesting) is only allowed for root@pam)')
    response = raw(sim, 'PUT', '/nodes/pve/lxc/152/config', header=header, data={'features': 'nesting=1'})
    assert response.status_code == 200  # unchanged: nothing to check
    response = raw(sim, 'PUT', '/nodes/pve/lxc/152/config', header=header, data={'onboot': 0})
    assert response.status_code == 200
    assert proxmox(sim).nodes('pve').lxc(152).config.get()['onboot'] == 0
