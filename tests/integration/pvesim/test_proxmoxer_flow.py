# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The real proxmoxer client over verified HTTPS: the flows the pipeline runs."""

from __future__ import annotations

import os
import time

import pytest
from proxmoxer.core import ResourceException

from tests.integration.pvesim.conftest import proxmox, wait_task
from tests.pvesim.state import qcow2_image


def test_version_nodes_and_storage(pvesim_fresh):
    api = proxmox(pvesim_fresh)
    version = api.version.get()
    assert version['version'].startswith('9.') and version['release'] == '9.1'
    nodes = api.nodes.get()
    assert [n['node'] for n in nodes] == ['pve'] and nodes[0]['status'] == 'online'
    status = api.nodes('pve').status.get()
    assert status['memory']['total'] > status['memory']['used'] > 0
    storages = {s['storage']: s for s in api.nodes('pve').storage.get()}
    assert set(storages) == {'local', 'local-lvm'}
    assert storages['local']['content'] == 'import,iso,vztmpl'
    assert storages['local-lvm']['type'] == 'lvmthin'
    assert api.nodes('pve').storage('local').content.get() == []
    assert [s['storage'] for s in api.storage.get()] == ['local', 'local-lvm']
    assert api.cluster.nextid.get() == '100'


def test_download_url_through_task_to_listed_volume(pvesim_fresh, file_server):
    api = proxmox(pvesim_fresh)
    data = os.urandom(300_000)
    url, digest = file_server.add('talos.iso', data)
    meta = api.nodes('pve')('query-url-metadata').get(url=url)
    assert meta == {'filename': 'talos.iso', 'size': len(data), 'mimetype': meta['mimetype']}
    upid = api.nodes('pve').storage('local')('download-url').post(
        url=url, content='iso', filename='talos.iso', checksum=digest, **{'checksum-algorithm': 'sha256'})
    assert upid.startswith('UPID:pve:') and ':download:talos.iso:pipeline@pve!full:' in upid
    status = wait_task(api, upid)
    assert status['exitstatus'] == 'OK', status
    volumes = api.nodes('pve').storage('local').content.get(content='iso')
    assert [(v['volid'], v['size'], v['format']) for v in volumes] == [('local:iso/talos.iso', len(data), 'iso')]
    path = os.path.join(pvesim_fresh.data_dir, 'local', 'template', 'iso', 'talos.iso')
    with open(path, 'rb') as handle:
        assert handle.read() == data
    log = [line['t'] for line in api.nodes('pve').tasks(upid).log.get()]
    assert log[-1] == 'TASK OK' and any('checksum verified' in line for line in log)

    # the same file again with the right checksum: success without a download
    again = wait_task(api, api.nodes('pve').storage('local')('download-url').post(
        url=url, content='iso', filename='talos.iso', checksum=digest, **{'checksum-algorithm': 'sha256'}))
    assert again['exitstatus'] == 'OK'
    log = [line['t'] for line in api.nodes('pve').tasks(again['upid']).log.get()]
    assert 'calculating checksum of existing file...OK, got correct file already, no need to download' in log
    # an existing file with another checksum is never replaced
    mismatch = wait_task(api, api.nodes('pve').storage('local')('download-url').post(
        url=url, content='iso', filename='talos.iso', checksum='0' * 64, **{'checksum-algorithm': 'sha256'}))
    assert mismatch['exitstatus'] == f"checksum mismatch: got '{digest}' != expect '{'0' * 64}', aborting"
    # without a checksum the existing file is never overwritten
    refused = wait_task(api, api.nodes('pve').storage('local')('download-url').post(
        url=url, content='iso', filename='talos.iso'))
    assert refused['exitstatus'] == f"refusing to override existing file '{path}'"


def test_download_checksum_mismatch_and_content_rules(pvesim_fresh, file_server):
    api = proxmox(pvesim_fresh)
    url, digest = file_server.add('disk.qcow2', qcow2_image(1 << 30))
    bad = 'a' * 64
    status = wait_task(api, api.nodes('pve').storage('local')('download-url').post(
        url=url, content='import', filename='disk.qcow2', checksum=bad, **{'checksum-algorithm': 'sha256'}))
    assert status['exitstatus'] == f"checksum mismatch: got '{digest}' != expect '{bad}'"
    assert api.nodes('pve').storage('local').content.get() == []
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').storage('local')('download-url').post(url=url, content='import', filename='disk.img')
    assert err.value.status_code == 400 and err.value.errors == {'filename': 'invalid filename or wrong extension'}
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').storage('local-lvm')('download-url').post(url=url, content='import', filename='d.qcow2')
    assert err.value.status_code == 500
    assert err.value.content == "can't upload to storage type 'lvmthin', not a file based storage!"
    # file names are normalised
    upid = api.nodes('pve').storage('local')('download-url').post(url=url, content='import', filename='my disk.qcow2')
    assert wait_task(api, upid)['exitstatus'] == 'OK'
    assert [v['volid'] for v in api.nodes('pve').storage('local').content.get()] == ['local:import/my_disk.qcow2']
    # a 404 fails the task like wget does
    status = wait_task(api, api.nodes('pve').storage('local')('download-url').post(
        url=url + '.missing', content='iso', filename='missing.iso'))
    assert status['exitstatus'].startswith('download failed: command ') and status['exitstatus'].endswith('exit code 8')


def test_upload_multipart(pvesim_fresh, tmp_path):
    api = proxmox(pvesim_fresh)
    source = tmp_path / 'tools.iso'
    source.write_bytes(b'ISO' * 1000)
    with open(source, 'rb') as handle:
        upid = api.nodes('pve').storage('local').upload.post(content='iso', filename=handle)
    assert ':imgcopy::' in upid
    assert wait_task(api, upid)['exitstatus'] == 'OK'
    volume = api.nodes('pve').storage('local').content('local:iso/tools.iso').get()
    assert volume['size'] == 3000 and volume['format'] == 'iso'
    with open(source, 'rb') as handle:
        upid = api.nodes('pve').storage('local').upload.post(
            content='iso', filename=handle, checksum='0' * 64, **{'checksum-algorithm': 'sha256'})
    assert wait_task(api, upid)['exitstatus'].startswith("checksum mismatch: got '")


def test_vm_from_imported_disk_reports_agent_ip(pvesim_fresh, file_server):
    api = proxmox(pvesim_fresh)
    image = qcow2_image(2 << 30, b'boot' * 100)
    url, digest = file_server.add('ubuntu.qcow2', image)
    wait_task(api, api.nodes('pve').storage('local')('download-url').post(
        url=url, content='import', filename='ubuntu.qcow2', checksum=digest, **{'checksum-algorithm': 'sha256'}))
    vmid = int(api.cluster.nextid.get())
    upid = api.nodes('pve').qemu.post(
        vmid=vmid, name='lab-01', memory=2048, cores=2, agent='enabled=1', scsihw='virtio-scsi-single',
        scsi0='local-lvm:0,import-from=local:import/ubuntu.qcow2,discard=on', ide2='local-lvm:cloudinit',
        net0='virtio,bridge=vmbr0', ipconfig0='ip=192.0.2.10/24,gw=192.0.2.1', ciuser='ubuntu')
    assert f':qmcreate:{vmid}:' in upid
    assert wait_task(api, upid)['exitstatus'] == 'OK'
    config = api.nodes('pve').qemu(vmid).config.get()
    assert config['scsi0'] == f'local-lvm:vm-{vmid}-disk-0,discard=on,size=2G'
    assert config['ide2'] == f'local-lvm:vm-{vmid}-cloudinit,media=cdrom'
    assert config['net0'].startswith('virtio=BC:24:11:') and config['net0'].endswith(',bridge=vmbr0')
    assert len(config['digest']) == 40
    disks = api.nodes('pve').storage('local-lvm').content.get(vmid=vmid)
    assert sorted(d['volid'] for d in disks) == [f'local-lvm:vm-{vmid}-cloudinit', f'local-lvm:vm-{vmid}-disk-0']

    with pytest.raises(ResourceException) as err:
        api.nodes('pve').qemu(vmid).agent('network-get-interfaces').get()
    assert err.value.status_code == 500 and err.value.content == f'VM {vmid} is not running'
    assert wait_task(api, api.nodes('pve').qemu(vmid).status.start.post())['exitstatus'] == 'OK'
    assert api.nodes('pve').qemu(vmid).status.current.get()['status'] == 'running'
    seen_states = set()
    deadline = time.time() + 20
    address = None
    while time.time() < deadline and address is None:
        try:
            result = api.nodes('pve').qemu(vmid).agent('network-get-interfaces').get()['result']
        except ResourceException as exc:
            seen_states.add(exc.content)
            time.sleep(0.05)
            continue
        ipv4 = [a['ip-address'] for i in result if i['name'] != 'lo' for a in i['ip-addresses']
                if a['ip-address-type'] == 'ipv4']
        seen_states.add('link-local only' if not ipv4 else 'ipv4')
        address = ipv4[0] if ipv4 else None
        time.sleep(0.05)
    assert address == '192.0.2.10'
    assert 'QEMU guest agent is not running' in seen_states and 'link-local only' in seen_states

    with pytest.raises(ResourceException) as err:
        api.nodes('pve').qemu(vmid).delete()
    assert err.value.content == f'VM {vmid} is running - destroy failed'
    assert wait_task(api, api.nodes('pve').qemu(vmid).status.stop.post())['exitstatus'] == 'OK'
    assert wait_task(api, api.nodes('pve').qemu(vmid).delete())['exitstatus'] == 'OK'
    assert api.nodes('pve').qemu.get() == []
    assert api.nodes('pve').storage('local-lvm').content.get() == []
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').qemu(vmid).config.get()
    assert err.value.content == f"Configuration file 'nodes/pve/qemu-server/{vmid}.conf' does not exist"


def test_vm_config_resize_template_clone(pvesim_fresh):
    api = proxmox(pvesim_fresh)
    upid = api.nodes('pve').qemu.post(vmid=9000, name='tmpl', scsi0='local-lvm:4', net0='virtio,bridge=vmbr0')
    assert wait_task(api, upid)['exitstatus'] == 'OK'
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').qemu.post(vmid=9000, name='again')
    assert (err.value.status_code, err.value.content) == (500, "unable to create VM 9000 - VM 9000 already exists on node 'pve'")
    with pytest.raises(ResourceException) as err:
        api.cluster.nextid.get(vmid=9000)
    assert err.value.status_code == 400 and err.value.errors == {'vmid': 'VM 9000 already exists'}
    assert api.cluster.nextid.get(vmid=9001) == '9001'
    assert api.nodes('pve').qemu(9000).config.put(cores=4, description='base') is None
    upid = api.nodes('pve').qemu(9000).config.post(memory='4096', delete='description')
    assert wait_task(api, upid)['exitstatus'] == 'OK'
    config = api.nodes('pve').qemu(9000).config.get()
    assert config['cores'] == 4 and config['memory'] == '4096' and 'description' not in config
    assert wait_task(api, api.nodes('pve').qemu(9000).resize.put(disk='scsi0', size='+2G'))['exitstatus'] == 'OK'
    assert api.nodes('pve').qemu(9000).config.get()['scsi0'].endswith('size=6G')
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').qemu(9000).resize.put(disk='scsi0', size='1G')
    assert err.value.content == 'shrinking disks is not supported'
    assert wait_task(api, api.nodes('pve').qemu(9000).template.post())['exitstatus'] == 'OK'
    assert api.nodes('pve').qemu(9000).config.get()['scsi0'].startswith('local-lvm:base-9000-disk-0,')
    status = wait_task(api, api.nodes('pve').qemu(9000).status.start.post())
    assert status['exitstatus'] == "you can't start a vm if it's a template"
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').qemu(9000).template.post()
    assert err.value.content == "you can't convert a template to a template"
    upid = api.nodes('pve').qemu(9000).clone.post(newid=101, name='lab-02')
    assert ':qmclone:9000:' in upid and wait_task(api, upid)['exitstatus'] == 'OK'
    clone = api.nodes('pve').qemu(101).config.get()
    assert clone['name'] == 'lab-02' and clone['scsi0'].startswith('local-lvm:base-9000-disk-0/vm-101-disk-0,')
    resources = api.cluster.resources.get(type='vm')
    assert [(r['vmid'], r['template']) for r in resources] == [(101, 0), (9000, 1)]


def test_large_upload_is_streamed_and_verified(pvesim_fresh, tmp_path):
    import hashlib
    api = proxmox(pvesim_fresh)
    data = qcow2_image(8 << 30, os.urandom(24 * 1024 * 1024))
    source = tmp_path / 'big.qcow2'
    source.write_bytes(data)
    with open(source, 'rb') as handle:
        upid = api.nodes('pve').storage('local').upload.post(
            content='import', filename=handle, checksum=hashlib.sha512(data).hexdigest(),
            **{'checksum-algorithm': 'sha512'})
    assert wait_task(api, upid)['exitstatus'] == 'OK'
    with open(os.path.join(pvesim_fresh.data_dir, 'local', 'import', 'big.qcow2'), 'rb') as handle:
        assert handle.read() == data
    assert os.listdir(os.path.join(pvesim_fresh.data_dir, '.upload')) == []  # nothing left behind


def test_chunked_form_body(pvesim_fresh):
    from tests.integration.pvesim.conftest import raw

    def body():
        yield b'vmid=160&'
        yield b'name=chunky'
    response = raw(pvesim_fresh, 'POST', '/nodes/pve/qemu', data=body(),
                   headers={'Content-Type': 'application/x-www-form-urlencoded'})
    assert response.status_code == 200, response.reason
    api = proxmox(pvesim_fresh)
    wait_task(api, response.json()['data'])
    assert api.nodes('pve').qemu(160).config.get()['name'] == 'chunky'


def test_import_to_file_and_block_storage(tmp_path, file_server):
    """A qcow2 stays qcow2 (small, sized by its header) on dir storage and becomes a raw volume
    of the full virtual size on lvmthin; resize follows both."""
    from tests.pvesim.fixtures import start, stop
    scenario = tmp_path / 'two.json'
    scenario.write_text('{"storages": [{"id": "local", "type": "dir", "content": ["import", "images"]},'
                        ' {"id": "local-lvm", "type": "lvmthin", "content": ["images"]}]}')
    sim = start(str(tmp_path / 'sim'), scenario=str(scenario))
    try:
        api = proxmox(sim)
        url, dummy = file_server.add('src.qcow2', qcow2_image(1 << 30, b'data'))
        wait_task(api, api.nodes('pve').storage('local')('download-url').post(url=url, content='import', filename='src.qcow2'))
        upid = api.nodes('pve').qemu.post(vmid=100, scsi0='local:0,import-from=local:import/src.qcow2',
                                          scsi1='local-lvm:0,import-from=local:import/src.qcow2')
        assert wait_task(api, upid)['exitstatus'] == 'OK'
        config = api.nodes('pve').qemu(100).config.get()
        assert config['scsi0'] == 'local:100/vm-100-disk-0.qcow2,size=1G'
        assert config['scsi1'] == 'local-lvm:vm-100-disk-0,size=1G'
        on_dir = api.nodes('pve').storage('local').content('local:100/vm-100-disk-0.qcow2').get()
        on_lvm = api.nodes('pve').storage('local-lvm').content('local-lvm:vm-100-disk-0').get()
        assert on_dir['size'] == on_lvm['size'] == 1 << 30
        assert on_dir['used'] < 4096 and on_dir['format'] == 'qcow2'
        for disk in ('scsi0', 'scsi1'):
            assert wait_task(api, api.nodes('pve').qemu(100).resize.put(disk=disk, size='+1G'))['exitstatus'] == 'OK'
        assert api.nodes('pve').storage('local').content('local:100/vm-100-disk-0.qcow2').get()['size'] == 2 << 30
        assert api.nodes('pve').storage('local-lvm').content('local-lvm:vm-100-disk-0').get()['size'] == 2 << 30
    finally:
        stop(sim)


def test_download_decompression_and_url_rules(pvesim_fresh, file_server):
    import gzip
    import hashlib
    api = proxmox(pvesim_fresh)
    payload = b'ISO9660' * 5000
    packed = gzip.compress(payload)
    url, dummy = file_server.add('live.iso.gz', packed)
    upid = api.nodes('pve').storage('local')('download-url').post(
        url=url, content='iso', filename='live.iso', compression='gz',
        checksum=hashlib.sha256(packed).hexdigest(), **{'checksum-algorithm': 'sha256'})  # covers the .gz
    assert wait_task(api, upid)['exitstatus'] == 'OK'
    with open(os.path.join(pvesim_fresh.data_dir, 'local', 'template', 'iso', 'live.iso'), 'rb') as handle:
        assert handle.read() == payload
    status = wait_task(api, api.nodes('pve').storage('local')('download-url').post(
        url=url, content='import', filename='x.qcow2', compression='gz'))
    assert status['exitstatus'] == 'decompression not supported for import'
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').storage('local')('download-url').post(url=url, content='iso', filename='x.iso', checksum='ab')
    assert err.value.errors == {'checksum-algorithm': "missing property required by 'checksum'"}
    # the simulator never leaves the machine: other hosts fail the task
    status = wait_task(api, api.nodes('pve').storage('local')('download-url').post(
        url='http://192.0.2.1/x.iso', content='iso', filename='remote.iso'))
    assert 'loopback only' in status['exitstatus']
    with pytest.raises(ResourceException) as err:
        api.nodes('pve')('query-url-metadata').get(url=url + '.missing')
    assert err.value.status_code == 500 and err.value.content == "invalid server response: '404 File not found'"


def test_downloaded_images_are_checked_like_untrusted_images(pvesim_fresh, file_server):
    import struct
    api = proxmox(pvesim_fresh)
    url, dummy = file_server.add('fake.qcow2', b'this is not a qcow2 image' * 100)
    status = wait_task(api, api.nodes('pve').storage('local')('download-url').post(
        url=url, content='import', filename='fake.qcow2'))
    assert status['exitstatus'] == 'failed to verify file: failed to query file information with qemu-img'
    backed = bytearray(qcow2_image(1 << 30))
    backed[8:16] = struct.pack('>Q', 512)  # a backing-file offset
    url, dummy = file_server.add('backed.qcow2', bytes(backed))
    status = wait_task(api, api.nodes('pve').storage('local')('download-url').post(
        url=url, content='import', filename='backed.qcow2'))
    assert status['exitstatus'].startswith('failed to verify file: backing file not allowed for untrusted image ')
    url, dummy = file_server.add('disk.raw', b'raw bytes')
    status = wait_task(api, api.nodes('pve').storage('local')('download-url').post(
        url=url, content='import', filename='../../etc/disk.raw'))  # directories are dropped
    assert status['exitstatus'] == 'OK'
    assert [v['volid'] for v in api.nodes('pve').storage('local').content.get()] == ['local:import/disk.raw']


def test_network_mappings_and_reboot(pvesim_fresh):
    api = proxmox(pvesim_fresh)
    bridges = api.nodes('pve').network.get(type='any_bridge')
    assert [(b['iface'], b['type'], b['active']) for b in bridges] == [('vmbr0', 'bridge', 1)]
    assert [m['id'] for m in api.cluster.mapping.pci.get()] == ['gpu0']
    assert proxmox(pvesim_fresh, 'noacl').cluster.mapping.pci.get() == []
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').qemu(100).status.reboot.post()
    assert err.value.content == "Configuration file 'nodes/pve/qemu-server/100.conf' does not exist"
    wait_task(api, api.nodes('pve').qemu.post(vmid=100))
    with pytest.raises(ResourceException) as err:
        api.nodes('pve').qemu(100).status.reboot.post()
    assert err.value.content == 'VM 100 not running'
    wait_task(api, api.nodes('pve').qemu(100).status.start.post())
    pid = api.nodes('pve').qemu(100).status.current.get()['pid']
    assert wait_task(api, api.nodes('pve').qemu(100).status.reboot.post())['exitstatus'] == 'OK'
    current = api.nodes('pve').qemu(100).status.current.get()
    assert current['status'] == 'running' and current['pid'] != pid


def test_https_download_and_certificate_verification(pvesim_fresh, file_server, tmp_path):
    """download-url over HTTPS: an unknown CA fails the task like wget (exit code 5) unless
    verify-certificates=0."""
    import ssl
    from tests.pvesim import tls
    dummy_ca, cert, key = tls.generate(str(tmp_path / 'other-ca'))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    file_server.httpd.socket = context.wrap_socket(file_server.httpd.socket, server_side=True)
    url, dummy = file_server.add('secure.iso', b'secure' * 100)
    url = url.replace('http://', 'https://')
    api = proxmox(pvesim_fresh)
    status = wait_task(api, api.nodes('pve').storage('local')('download-url').post(
        url=url, content='iso', filename='secure.iso'))
    assert status['exitstatus'].startswith('download failed: command ') and status['exitstatus'].endswith('exit code 5')
    status = wait_task(api, api.nodes('pve').storage('local')('download-url').post(
        url=url, content='iso', filename='secure.iso', **{'verify-certificates': 0}))
    assert status['exitstatus'] == 'OK'
