# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""QEMU guests (qemu-server's API2/Qemu.pm): config, create, clone, power, resize, template, destroy."""

from __future__ import annotations

import os
import re
import struct

from tests.pvesim.acl import PermissionDenied
from tests.pvesim.api.base import Ctx, _bool, _node, _perm, _vm_perm
from tests.pvesim.api.guests import (check_bridge, check_volume_exists, config_digest, create_cleanup, destroy_guest,
                                     finish_create, free_disk_name, guest_summary, list_guests, new_uuid,
                                     print_settings, random_mac, reboot_guest, remove_guest_files, reserve_new_guest,
                                     snapshot_list, stop_guest)
from tests.pvesim.api.storage import _check_volume_access
from tests.pvesim.params import B, Int, N, Param, S, declared, parse_property_string
from tests.pvesim.state import (ApiError, Simulator, Task, TaskError, VM, format_size, image_virtual_size,
                                param_error, parse_size)


_DRIVE_SUB = {
    'file': S(optional=False), 'size': S(), 'format': S(enum=('raw', 'qcow', 'qed', 'qcow2', 'vmdk', 'cloop')),
    'import-from': S(), 'media': S(enum=('cdrom', 'disk')), 'cache': S(enum=('none', 'writethrough', 'writeback', 'unsafe', 'directsync')),
    'discard': S(enum=('ignore', 'on')), 'iothread': B(), 'ssd': B(), 'backup': B(), 'replicate': B(),
    'serial': S(), 'aio': S(enum=('native', 'threads', 'io_uring')), 'snapshot': B(), 'ro': B(),
}
DRIVE = S(subkeys=_DRIVE_SUB, default_key='file')  # the union, for reading stored drives
_BUS_LACKS = {'scsi': set(), 'virtio': {'ssd'}, 'sata': {'iothread', 'ro'}, 'ide': {'iothread', 'ro'}}
BUS_DRIVE = {bus: S(subkeys={k: v for k, v in _DRIVE_SUB.items() if k not in lacks}, default_key='file')
             for bus, lacks in _BUS_LACKS.items()}
_NET_MODELS = ('e1000', 'e1000-82540em', 'e1000-82544gc', 'e1000-82545em', 'e1000e', 'i82551', 'i82557b',
               'i82559er', 'ne2k_isa', 'ne2k_pci', 'pcnet', 'rtl8139', 'virtio', 'vmxnet3')
NET = S(subkeys={'model': S(optional=False, enum=_NET_MODELS), 'macaddr': S(pattern=r'[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}'),
                 'bridge': S(), 'firewall': B(), 'link_down': B(), 'mtu': Int(minimum=1, maximum=65520),
                 'queues': Int(minimum=0, maximum=64), 'rate': N(minimum=0), 'tag': Int(minimum=1, maximum=4094),
                 'trunks': S()},
        default_key='model', key_alias={m: ('model', 'macaddr') for m in _NET_MODELS})
IPCONFIG = S(subkeys={'ip': S(), 'gw': S(), 'ip6': S(), 'gw6': S()})
HOSTPCI = S(subkeys={'host': S(), 'mapping': S(), 'pcie': B(), 'rombar': B(), 'x-vga': B(), 'romfile': S(),
                     'mdev': S(), 'device-id': S(), 'vendor-id': S(), 'sub-device-id': S(),
                     'sub-vendor-id': S(), 'legacy-igd': B(), 'driver': S(enum=('vfio', 'keep'))},
            default_key='host')
AGENT = S(subkeys={'enabled': B(optional=False), 'freeze-fs': B(), 'fstrim_cloned_disks': B(),
                   'type': S(enum=('virtio', 'isa'))}, default_key='enabled')
MEMORY = S(subkeys={'current': Int(optional=False, minimum=16)}, default_key='current')

VM_CONFIG_PARAMS: dict[str, Param] = {
    'name': S(), 'description': S(max_length=8192), 'tags': S(), 'memory': MEMORY,
    'balloon': Int(minimum=0), 'cores': Int(minimum=1), 'sockets': Int(minimum=1), 'cpu': S(),
    'numa': B(),
    'ostype': S(enum=('other', 'wxp', 'w2k', 'w2k3', 'w2k8', 'wvista', 'win7', 'win8', 'win10', 'win11', 'l24',
                      'l26', 'solaris')),
    'scsihw': S(enum=('lsi', 'lsi53c810', 'virtio-scsi-pci', 'virtio-scsi-single', 'megasas', 'pvscsi')),
    'bios': S(enum=('seabios', 'ovmf')), 'machine': S(), 'boot': S(), 'bootdisk': S(),
    'onboot': B(), 'agent': AGENT, 'vga': S(), 'serial[n]': S(pattern=r'(/dev/.+|socket)'),
    'scsi[n]': BUS_DRIVE['scsi'], 'virtio[n]': BUS_DRIVE['virtio'], 'sata[n]': BUS_DRIVE['sata'],
    'ide[n]': BUS_DRIVE['ide'], 'efidisk0': S(),
    'net[n]': NET, 'ipconfig[n]': IPCONFIG, 'hostpci[n]': HOSTPCI, 'ciuser': S(), 'cipassword': S(),
    'citype': S(enum=('configdrive2', 'nocloud', 'opennebula')), 'ciupgrade': B(), 'cicustom': S(),
    'sshkeys': S(), 'nameserver': S(), 'searchdomain': S(), 'tablet': B(), 'protection': B(),
    'kvm': B(), 'acpi': B(), 'hotplug': S(), 'startup': S(), 'smbios1': S(max_length=512),
    'vmgenid': S(), 'template': B(),
    'keyboard': S(enum=('de', 'de-ch', 'da', 'en-gb', 'en-us', 'es', 'fi', 'fr', 'fr-be', 'fr-ca', 'fr-ch', 'hu', 'is',
                        'it', 'ja', 'lt', 'mk', 'nl', 'no', 'pl', 'pt', 'pt-br', 'sv', 'sl', 'tr')),
}
DISK_RE = re.compile(r'(scsi|virtio|sata|ide)\d+\Z|efidisk0\Z|tpmstate0\Z')
# qemu-server API2/Qemu.pm option groups, for check_vm_modify_config_perm
CPU_KEYS = {'cores', 'cpu', 'runningcpu', 'cpulimit', 'cpuunits', 'numa', 'smp', 'sockets', 'vcpus'}
MEMORY_KEYS = {'memory', 'balloon', 'shares', 'allow-ksm'}
HWTYPE_KEYS = {'acpi', 'hotplug', 'kvm', 'machine', 'runningmachine', 'scsihw', 'smbios1', 'tablet', 'vga',
               'watchdog', 'audio0', 'rng0'}
GENERAL_KEYS = {'agent', 'autostart', 'bios', 'description', 'keyboard', 'localtime', 'migrate_downtime',
                'migrate_speed', 'name', 'onboot', 'ostype', 'protection', 'reboot', 'startdate', 'startup', 'tdf',
                'template'}
DISK_OPTION_KEYS = {'boot', 'bootdisk', 'vmstatestorage'}
CLOUDINIT_KEYS = {'cicustom', 'cipassword', 'citype', 'ciuser', 'ciupgrade', 'nameserver', 'searchdomain', 'sshkeys'}


def _vm_memory(vm: VM) -> int:
    raw = str(vm.config.get('memory', '512'))
    match = re.match(r'(?:current=)?(\d+)', raw)
    return int(match.group(1) if match else 512) * 1048576


def _vm_maxdisk(vm: VM) -> int:
    for key in sorted(vm.config):
        if DISK_RE.match(key) and 'media=cdrom' not in str(vm.config[key]):
            match = re.search(r'size=(\d+[KMGT]?)', str(vm.config[key]))
            if match:
                return parse_size(match.group(1))
    return 0


def _vm_summary(vm: VM) -> dict:
    running = vm.status == 'running'
    entry = guest_summary(vm, {
        'vmid': vm.vmid, 'name': str(vm.config.get('name', f'VM {vm.vmid}')), 'status': vm.status,
        'maxmem': _vm_memory(vm), 'maxdisk': _vm_maxdisk(vm),
        'cpus': int(vm.config.get('cores', 1)) * int(vm.config.get('sockets', 1)),
        'cpu': 0.01 if running else 0, 'mem': _vm_memory(vm) // 4 if running else 0, 'disk': 0})
    if running:
        entry['pid'] = vm.pid
    return entry


def list_qemu(ctx: Ctx) -> object:
    return list_guests(ctx, 'qemu', _vm_summary)


def _check_modify_perms(ctx: Ctx, vmid: int, keys, pool: object = None) -> None:
    """qemu-server's check_vm_modify_config_perm, option by option."""
    if ctx.authid == 'root@pam':
        return

    def need(privs: list[str], any_of: bool = False) -> None:
        _vm_perm(ctx, vmid, pool, privs, any_of)

    for key in keys:
        if DISK_RE.match(key) or key == 'cdrom' or re.fullmatch(r'(unused|serial|usb|hostpci|virtiofs)\d+', key) \
                or key == 'tags':
            continue  # value-dependent: checked with the disks, serial ports and devices
        if key in CPU_KEYS or re.fullmatch(r'numa\d+', key):
            need(['VM.Config.CPU'])
        elif key in MEMORY_KEYS:
            need(['VM.Config.Memory'])
        elif key in HWTYPE_KEYS:
            need(['VM.Config.HWType'])
        elif key in GENERAL_KEYS:
            need(['VM.Config.Options'])
            if key == 'startup':
                _perm(ctx, '/', ['Sys.Modify'])
        elif key == 'freeze':
            need(['VM.PowerMgmt'])
        elif key in DISK_OPTION_KEYS:
            need(['VM.Config.Disk'])
        elif re.fullmatch(r'net\d+', key):
            need(['VM.Config.Network'])
        elif key in CLOUDINIT_KEYS or re.fullmatch(r'ipconfig\d+', key):
            need(['VM.Config.Cloudinit', 'VM.Config.Network'], True)
        else:
            raise ApiError(500, f"only root can set '{key}' config")


def _device_keys(ctx: Ctx, settings: dict[str, object], pattern: str) -> list[str]:
    """The settings' device keys to check: none for root@pam, who may pass any device."""
    return [] if ctx.authid == 'root@pam' else [key for key in settings if re.fullmatch(pattern, key)]


def _check_serial(ctx: Ctx, vmid: int, settings: dict[str, object], pool: object = None) -> None:
    for key in _device_keys(ctx, settings, r'serial\d+'):
        if settings[key] == 'socket':
            _vm_perm(ctx, vmid, pool, ['VM.Config.HWType'])
        else:
            raise ApiError(500, f"only root can set '{key}' config for real devices")


def _check_hostpci(ctx: Ctx, vmid: int, settings: dict[str, object], pool: object = None) -> None:
    for key in _device_keys(ctx, settings, r'hostpci\d+'):
        device, dummy = parse_property_string(str(settings[key]), HOSTPCI)
        if device.get('host'):
            raise ApiError(500, f"only root can set '{key}' config for non-mapped devices")
        if not device.get('mapping'):
            raise ApiError(500, "either 'host' or 'mapping' must be set.")
        _perm(ctx, f"/mapping/pci/{device['mapping']}", ['Mapping.Use'])
        _vm_perm(ctx, vmid, pool, ['VM.Config.HWType'])
        if device.get('romfile') is not None:
            raise param_error({key: "only root@pam can set 'romfile' option"})


def _check_bridges(ctx: Ctx, settings: dict[str, object]) -> None:
    if ctx.authid == 'root@pam':
        return
    for key in sorted(settings):
        if not re.fullmatch(r'net\d+', key):
            continue
        net, dummy = parse_property_string(str(settings[key]), NET)
        bridge = net.get('bridge')
        if not bridge:
            continue
        path = f'/sdn/zones/{ctx.sim.sdn_zone}/{bridge}'
        if net.get('tag'):
            _perm(ctx, f"{path}/{net['tag']}", ['SDN.Use'])
        tags: set[int] = set()
        for part in str(net.get('trunks') or '').split(';'):
            if '-' in part:
                low, high = part.split('-', 1)
                tags.update(range(int(low), int(high) + 1))
            elif part.strip():
                tags.add(int(part))
        for tag in sorted(tags):
            _perm(ctx, f'{path}/{tag}', ['SDN.Use'])
        if not net.get('tag') and not tags:
            _perm(ctx, path, ['SDN.Use'])


def _check_storage_access(ctx: Ctx, vmid: int, settings: dict[str, object]) -> list[tuple[str, dict]]:
    """PVE's check_storage_access; returns the new disks to allocate as (key, parsed drive)."""
    sim = ctx.sim
    new_disks = []
    for key in sorted(settings):
        if not DISK_RE.match(key):
            continue
        drive, dummy = parse_property_string(str(settings[key]), DRIVE)
        volid = str(drive.get('file', ''))
        is_cdrom = drive.get('media') == 'cdrom'
        if volid in ('', 'none', 'cloudinit') or volid.endswith(':cloudinit'):
            if volid.endswith(':cloudinit'):
                storeid = volid.split(':', 1)[0]
                _perm(ctx, f'/storage/{storeid}', ['Datastore.AllocateSpace'])
                sim.storage(storeid)
                new_disks.append((key, drive))
            continue
        if is_cdrom and volid == 'cdrom':
            _perm(ctx, '/', ['Sys.Console'])
            continue
        match = re.fullmatch(r'(?:([a-z][a-z0-9\-_.]*[a-z0-9]):)?(\d+(?:\.\d+)?)', volid)
        if not is_cdrom and match:
            storeid = match.group(1)
            if not storeid:
                raise ApiError(500, 'no storage ID specified (and no default storage)')
            _perm(ctx, f'/storage/{storeid}', ['Datastore.AllocateSpace'])
            store = sim.storage(storeid)
            if 'images' not in store['content']:
                raise param_error({'storage': f"storage '{storeid}' does not support vm images"})
            source = drive.get('import-from')
            if source:
                try:
                    src_store, src_content, dummy_name, src_owner, src_path = sim.parse_volid(str(source))
                except ValueError:
                    raise ApiError(500, 'Only root can pass arbitrary filesystem paths.') from None
                if src_content not in ('images', 'import'):
                    raise param_error({key: f"{source} has wrong type '{src_content}' - needs to be 'images' or 'import'"})
                if src_owner:
                    _perm(ctx, f'/vms/{src_owner}', ['VM.Clone'])
                _check_volume_access(ctx, src_store, src_content, src_owner, vmid)
                if not os.path.exists(src_path):
                    raise ApiError(500, f"volume '{source}' does not exist")
            new_disks.append((key, drive))
            continue
        try:
            storeid, content, dummy_name, owner, dummy_path = sim.parse_volid(volid)
        except ValueError:
            raise ApiError(500, 'Only root can pass arbitrary filesystem paths.') from None
        _check_volume_access(ctx, storeid, content, owner, vmid)
    return new_disks


def declared_config_key(key: str) -> Param | None:
    return declared(VM_CONFIG_PARAMS, key)


def _print_net(net: dict[str, object]) -> str:
    parts = [f"{net['model']}={net.get('macaddr') or random_mac()}"]
    for key in sorted(net):
        if key not in ('model', 'macaddr'):
            parts.append(f'{key}={net[key]}')
    return ','.join(parts)


def _disk_name(sim: Simulator, storeid: str, vmid: int, taken: set[str], cloudinit: bool = False,
               prefix: str = 'vm') -> str:
    store = sim.storage(storeid)
    ext = '.qcow2' if store['type'] in ('dir', 'nfs', 'cifs') else ''
    if cloudinit:
        return f'vm-{vmid}-cloudinit{ext}'
    return free_disk_name(sim, storeid, vmid, taken, ext, prefix)


def _allocate(sim: Simulator, vmid: int, key: str, drive: dict, task: Task | None, taken: set[str]) -> str:
    """Create the volume for one new disk; return the drive string for the config."""
    volid = str(drive['file'])
    storeid = volid.split(':', 1)[0]
    if volid.endswith(':cloudinit'):
        name = _disk_name(sim, storeid, vmid, taken, cloudinit=True)
        path = sim.volume_path(storeid, 'images', name, vmid)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as handle:
            handle.truncate(4 << 20)
        return f'{sim.volid_for(storeid, "images", name, vmid)},media=cdrom'
    source = drive.get('import-from')
    if source:
        dummy_store, dummy_content, dummy_name, dummy_owner, src_path = sim.parse_volid(str(source))
        size = image_virtual_size(src_path)
    else:
        size = int(float(volid.split(':', 1)[1]) * (1 << 30))
    store = sim.storage(storeid)
    if sim.storage_usage(storeid) + (os.path.getsize(src_path) if source else 0) > int(store['total']):
        raise TaskError(f"unable to create image: not enough free space on storage '{storeid}'")
    name = _disk_name(sim, storeid, vmid, taken)
    path = sim.volume_path(storeid, 'images', name, vmid)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if source:
        if task:
            task.write(f"importing disk '{source}' to VM {vmid} ...")
        sparse_copy(src_path, path)
        # file storages keep the image format (a qcow2 stays small, its header has the size);
        # block storages (lvmthin, zfs ...) hold raw volumes of the full virtual size
        raw_target = store['type'] not in ('dir', 'nfs', 'cifs', 'btrfs', 'cephfs')
        if raw_target or not _is_qcow2(path):
            with open(path, 'r+b') as handle:
                if raw_target and _is_qcow2(path):
                    handle.write(b'\0' * 512)  # converted: no qcow2 header left on a raw volume
                if os.path.getsize(path) < size:
                    handle.truncate(size)
        if task:
            task.write(f'Successfully imported disk as \'{key}:{sim.volid_for(storeid, "images", name, vmid)}\'')
    else:
        with open(path, 'wb') as handle:
            handle.truncate(size)
    rest = [f'{k}={v}' for k, v in drive.items() if k not in ('file', 'import-from', 'size')]
    return ','.join([sim.volid_for(storeid, 'images', name, vmid), *rest, f'size={format_size(size)}'])


def sparse_copy(src: str, dest: str, data: bool = True) -> None:
    """Copy ``src`` keeping holes (only data extents are written); ``data=False`` makes an
    empty file of the same size, like a linked clone that shares its base's blocks."""
    size = os.path.getsize(src)
    with open(src, 'rb') as fin, open(dest, 'wb') as fout:
        fout.truncate(size)
        if not data:
            return
        fd = fin.fileno()
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:  # no more data after offset
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            fin.seek(start)
            fout.seek(start)
            remaining = end - start
            while remaining > 0:
                chunk = fin.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                fout.write(chunk)
                remaining -= len(chunk)
            offset = end


def _is_qcow2(path: str) -> bool:
    with open(path, 'rb') as handle:
        return handle.read(4) == b'QFI\xfb'


def _normalise_settings(settings: dict[str, object]) -> dict[str, object]:
    return print_settings(settings, NET, _print_net)


def create_qemu(ctx: Ctx) -> object:
    sim = ctx.sim
    node = _node(ctx)
    vmid = int(ctx.params['vmid'])
    pool = ctx.params.get('pool')
    settings = {k: v for k, v in ctx.params.items() if k not in ('node', 'vmid', 'pool', 'start', 'storage', 'force')}
    if pool is not None and pool not in sim.pools:
        raise PermissionDenied(f"Permission check failed (pool '{pool}' does not exist)")
    if ctx.params.get('storage'):
        _perm(ctx, f"/storage/{ctx.params['storage']}", ['Datastore.AllocateSpace'])
    if ctx.params.get('start'):
        _vm_perm(ctx, vmid, pool, ['VM.PowerMgmt'])
    if not ctx.checker.has(f'/vms/{vmid}', ['VM.Allocate']) and not (
            pool and ctx.checker.has(f'/pool/{pool}', ['VM.Allocate'])):
        raise PermissionDenied('Permission check failed')
    # the order of qemu-server's create_vm
    new_disks = _check_storage_access(ctx, vmid, settings)
    _check_modify_perms(ctx, vmid, settings, pool)
    _check_serial(ctx, vmid, settings, pool)
    _check_hostpci(ctx, vmid, settings, pool)
    _check_bridges(ctx, settings)
    settings = _normalise_settings(settings)
    for key, value in list(settings.items()):
        if key in VM_CONFIG_PARAMS and VM_CONFIG_PARAMS[key].type == 'boolean':
            settings[key] = int(value)
    vm = reserve_new_guest(sim, vmid, node, pool, 'qemu', 'VM')
    cleanup = create_cleanup(sim, vm)
    start = _bool(ctx.params.get('start', 0))
    new_keys = {key for key, dummy in new_disks}

    def work(task: Task) -> None:
        taken: set[str] = set()
        config: dict[str, object] = {}
        try:
            for key, value in settings.items():
                if key not in new_keys:
                    config[key] = value
            for key, drive in new_disks:
                config[key] = _allocate(sim, vmid, key, drive, task, taken)
            config.setdefault('smbios1', f'uuid={new_uuid()}')
            config.setdefault('vmgenid', new_uuid())
            if 'boot' not in config:
                order = [k for k in sorted(config) if DISK_RE.match(k) or re.fullmatch(r'net\d+', k)]
                if order:
                    config['boot'] = 'order=' + ';'.join(order)
        except Exception:
            cleanup()
            raise
        finish_create(sim, vm, config)
        if start:
            _do_start(sim, vm, task)
    return sim.start_task(node, 'qmcreate', str(vmid), ctx.authid, work, cleanup)


def _vm_for(ctx: Ctx) -> VM:
    return ctx.sim.vm(int(ctx.params['vmid']), _node(ctx))


def get_vm_index(ctx: Ctx) -> object:
    _vm_for(ctx)
    return [{'subdir': name} for name in ('config', 'pending', 'status', 'agent', 'resize', 'clone', 'template')]


def get_vm_config(ctx: Ctx) -> object:
    vm = _vm_for(ctx)
    with ctx.sim.lock:
        config = dict(vm.config)
    out: dict[str, object] = {}
    for key, value in config.items():
        decl = VM_CONFIG_PARAMS.get(key) or VM_CONFIG_PARAMS.get(re.sub(r'\d+$', '[n]', key))
        if decl is not None and decl.type in ('integer', 'boolean'):
            out[key] = int(value)
        elif decl is not None and decl.type == 'number':
            out[key] = float(value)
        else:
            out[key] = str(value)
    if vm.lock:
        out['lock'] = vm.lock
    out['digest'] = config_digest(config)
    return out


def _update_config(ctx: Ctx, sync: bool) -> object:
    sim = ctx.sim
    vm = _vm_for(ctx)
    vmid = vm.vmid
    settings = {k: v for k, v in ctx.params.items()
                if k not in ('node', 'vmid', 'digest', 'delete', 'skiplock', 'background_delay', 'revert', 'force')}
    deletes = [k for k in re.split(r'[,;\s]+', str(ctx.params.get('delete') or '')) if k]
    if ctx.params.get('skiplock') and ctx.authid != 'root@pam':
        raise param_error({'skiplock': 'Only root may use this option.'})
    if not deletes and not settings and not ctx.params.get('revert'):
        raise ApiError(500, 'no options specified')
    for key in deletes:
        if key in settings:
            raise param_error({'delete': f"you can't use '-{key}' and -delete {key}' at the same time"})
        if declared_config_key(key) is None:
            raise param_error({'delete': f"unknown option '{key}'"})
    # the order of qemu-server's update_vm_api
    _check_modify_perms(ctx, vmid, deletes)
    _check_modify_perms(ctx, vmid, settings)
    new_disks = _check_storage_access(ctx, vmid, settings)
    _check_bridges(ctx, settings)
    for key in sorted(set(settings) | set(deletes)):  # per option, as the update itself does
        if DISK_RE.match(key):
            value = settings.get(key, vm.config.get(key, ''))
            _perm(ctx, f'/vms/{vmid}', ['VM.Config.CDROM' if 'media=cdrom' in str(value) else 'VM.Config.Disk'])
    _check_serial(ctx, vmid, settings)
    _check_hostpci(ctx, vmid, settings)
    settings = _normalise_settings(settings)
    digest = ctx.params.get('digest')
    with sim.lock:
        if digest and digest != config_digest(vm.config):
            raise ApiError(500, 'detected modified configuration - file changed by other user? Try again.')
        if vm.lock and not ctx.params.get('skiplock'):
            raise ApiError(500, f"VM is locked ({vm.lock})")
    new_keys = {key for key, dummy in new_disks}

    def apply(task: Task | None) -> None:
        taken: set[str] = set()
        allocated = {key: _allocate(sim, vmid, key, drive, task, taken) for key, drive in new_disks}
        with sim.lock:
            for key in deletes:
                vm.config.pop(key, None)
            for key, value in settings.items():
                if key not in new_keys:
                    vm.config[key] = int(value) if VM_CONFIG_PARAMS.get(key, S()).type == 'boolean' else value
            vm.config.update(allocated)
    if sync:
        try:
            apply(None)
        except TaskError as exc:
            raise ApiError(500, str(exc)) from None
        return None
    return sim.start_task(_node(ctx), 'qmconfig', str(vmid), ctx.authid, apply)


def post_vm_config(ctx: Ctx) -> object:
    return _update_config(ctx, sync=False)


def put_vm_config(ctx: Ctx) -> object:
    return _update_config(ctx, sync=True)


def _agent_enabled(vm: VM) -> bool:
    value = vm.config.get('agent')
    if value is None:
        return False
    parsed, err = parse_property_string(str(value), AGENT)
    return not err and bool(parsed.get('enabled'))


def get_vm_status(ctx: Ctx) -> object:
    vm = _vm_for(ctx)
    entry = _vm_summary(vm)
    entry.update({'qmpstatus': vm.status, 'ha': {'managed': 0}, 'agent': 1 if _agent_enabled(vm) else 0})
    if vm.status == 'running':
        entry.update({'running-machine': 'pc-i440fx-10.0+pve0', 'running-qemu': '10.0.2'})
    return entry


def _do_start(sim: Simulator, vm: VM, task: Task) -> None:
    with sim.lock:
        if vm.status == 'running':
            raise TaskError(f'VM {vm.vmid} already running')
        config = dict(vm.config)
    for key, value in sorted(config.items()):
        if re.fullmatch(r'net\d+', key):
            check_bridge(sim, value, NET)
        if DISK_RE.match(key):
            drive, dummy = parse_property_string(str(value), DRIVE)
            volid = str(drive.get('file', ''))
            if ':' in volid and volid not in ('none',):
                check_volume_exists(sim, volid)
        if re.fullmatch(r'hostpci\d+', key):
            device, dummy = parse_property_string(str(value), HOSTPCI)
            if device.get('mapping') and device['mapping'] not in sim.mappings.get('pci', {}):
                raise TaskError(f"PCI mapping '{device['mapping']}' not found")
    with sim.lock:
        sim.mark_running(vm)
    task.write(f'VM {vm.vmid} started with PID {vm.pid}.')


def vm_start(ctx: Ctx) -> object:
    vm = _vm_for(ctx)
    if ctx.params.get('skiplock') and ctx.authid != 'root@pam':
        raise param_error({'skiplock': 'Only root may use this option.'})

    def work(task: Task) -> None:
        # qemu-server checks these in the worker (QemuServer::vm_start), so they fail the task
        if vm.lock:
            raise TaskError(f'VM is locked ({vm.lock})')
        if vm.template:
            raise TaskError("you can't start a vm if it's a template")
        _do_start(ctx.sim, vm, task)
    return ctx.sim.start_task(_node(ctx), 'qmstart', str(vm.vmid), ctx.authid, work)


def vm_stop(ctx: Ctx) -> object:
    vm = _vm_for(ctx)
    return ctx.sim.start_task(_node(ctx), 'qmstop', str(vm.vmid), ctx.authid, lambda task: stop_guest(ctx.sim, vm, task))


def vm_shutdown(ctx: Ctx) -> object:
    vm = _vm_for(ctx)

    def work(task: Task) -> None:
        stop_guest(ctx.sim, vm, task)  # a stopped VM is simply left stopped
    return ctx.sim.start_task(_node(ctx), 'qmshutdown', str(vm.vmid), ctx.authid, work)


def vm_reboot(ctx: Ctx) -> object:
    return reboot_guest(ctx, _vm_for(ctx), 'qmreboot', _do_start)


def vm_resize(ctx: Ctx) -> object:
    sim = ctx.sim
    vm = _vm_for(ctx)
    disk = str(ctx.params['disk'])
    size_text = str(ctx.params['size'])
    match = re.fullmatch(r'(\+)?(\d+(?:\.\d+)?)([KMGT])?', size_text)
    if not match:
        raise param_error({'size': 'value does not match the regex pattern'})
    value = vm.config.get(disk)
    if value is None:
        raise ApiError(500, f"disk '{disk}' does not exist")
    drive, dummy = parse_property_string(str(value), DRIVE)
    current = parse_size(str(drive.get('size', '0')))
    amount = parse_size(match.group(2) + (match.group(3) or ''))
    new = current + amount if match.group(1) else amount
    if new < current:
        raise ApiError(500, "shrinking disks is not supported")

    def work(task: Task) -> None:
        dummy_s, dummy_c, dummy_n, dummy_o, path = sim.parse_volid(str(drive['file']))
        if os.path.exists(path):
            with open(path, 'r+b') as handle:
                if _is_qcow2(path):
                    handle.seek(24)
                    handle.write(struct.pack('>Q', new))  # the virtual size in the qcow2 header
                else:
                    handle.truncate(new)
        drive['size'] = format_size(new)
        with sim.lock:
            vm.config[disk] = ','.join([str(drive['file'])] + [f'{k}={v}' for k, v in drive.items() if k != 'file'])
        task.write(f"Image resized to {format_size(new)}")
    return sim.start_task(_node(ctx), 'resize', str(vm.vmid), ctx.authid, work)


def vm_template(ctx: Ctx) -> object:
    sim = ctx.sim
    vm = _vm_for(ctx)
    if vm.lock:
        raise ApiError(500, f'VM is locked ({vm.lock})')
    if vm.template and not ctx.params.get('disk'):
        raise ApiError(500, "you can't convert a template to a template")
    if vm.status == 'running':
        raise ApiError(500, "you can't convert a VM to template if VM is running")

    def work(task: Task) -> None:
        with sim.lock:
            config = dict(vm.config)
        for key, value in sorted(config.items()):
            if not DISK_RE.match(key) or 'media=cdrom' in str(value):
                continue
            drive, dummy = parse_property_string(str(value), DRIVE)
            storeid, content, name, owner, path = sim.parse_volid(str(drive['file']))
            base = name.replace('vm-', 'base-', 1)
            new_path = sim.volume_path(storeid, content, base, owner)
            os.replace(path, new_path)
            new_volid = sim.volid_for(storeid, content, base, owner)
            config[key] = ','.join([new_volid] + [f'{k}={v}' for k, v in drive.items() if k != 'file'])
        config['template'] = 1
        with sim.lock:
            vm.config = config
    return sim.start_task(_node(ctx), 'qmtemplate', str(vm.vmid), ctx.authid, work)


def vm_clone(ctx: Ctx) -> object:
    sim = ctx.sim
    src = _vm_for(ctx)
    newid = int(ctx.params['newid'])
    with sim.lock:
        if newid in sim.vms:
            raise ApiError(500, f'unable to create VM {newid}: config file already exists')
    full = _bool(ctx.params['full']) if 'full' in ctx.params else (0 if src.template else 1)
    if not src.template and not full:
        raise param_error({'full': 'linked clone feature is not supported for drive (only for templates)'})
    target_store = ctx.params.get('storage')
    config = dict(src.config)
    for key, value in sorted(config.items()):
        if DISK_RE.match(key) and 'media=cdrom' not in str(value):
            drive, dummy = parse_property_string(str(value), DRIVE)
            storeid = str(target_store or str(drive['file']).split(':', 1)[0])
            _perm(ctx, f'/storage/{storeid}', ['Datastore.AllocateSpace'])
        if re.fullmatch(r'net\d+', key):
            _check_bridges(ctx, {key: value})
    with sim.lock:
        if newid in sim.vms:
            raise ApiError(500, f'unable to create VM {newid}: config file already exists')
        clone = VM(newid, src.node, {}, pool=ctx.params.get('pool'))
        clone.lock = 'clone'
        sim.vms[newid] = clone
        sim.set_pool(newid, clone.pool)
        src_lock = src.lock
        src.lock = src_lock or 'clone'

    def work(task: Task) -> None:
        taken: set[str] = set()
        new_config: dict[str, object] = {}
        try:
            for key, value in config.items():
                if key in ('template', 'vmgenid', 'smbios1'):
                    continue
                if DISK_RE.match(key) and 'media=cdrom' not in str(value) or str(value).endswith('-cloudinit,media=cdrom') or \
                        re.search(r'vm-\d+-cloudinit', str(value)):
                    drive, dummy = parse_property_string(str(value), DRIVE)
                    storeid, content, name, owner, path = sim.parse_volid(str(drive['file']))
                    target = str(target_store or storeid)
                    cloudinit = 'cloudinit' in name
                    new_name = _disk_name(sim, target, newid, taken, cloudinit=cloudinit)
                    new_path = sim.volume_path(target, 'images', new_name, newid)
                    os.makedirs(os.path.dirname(new_path), exist_ok=True)
                    sparse_copy(path, new_path, data=bool(full) or cloudinit)
                    volid = sim.volid_for(target, 'images', new_name, newid)
                    if not full and not cloudinit:
                        volid = f'{storeid}:{name}/{new_name}'
                    new_config[key] = ','.join([volid] + [f'{k}={v}' for k, v in drive.items() if k != 'file'])
                    task.write(f'clone {key}: {drive["file"]} -> {volid}')
                elif re.fullmatch(r'net\d+', key):
                    net, dummy = parse_property_string(str(value), NET)
                    net['macaddr'] = random_mac()
                    new_config[key] = _print_net(net)
                else:
                    new_config[key] = value
            new_config['smbios1'] = f'uuid={new_uuid()}'
            new_config['vmgenid'] = new_uuid()
            new_config['name'] = str(ctx.params.get('name') or f'Copy-of-VM-{config.get("name", src.vmid)}')
            if ctx.params.get('description'):
                new_config['description'] = ctx.params['description']
        except Exception:
            cleanup()
            raise
        finally:
            with sim.lock:
                src.lock = src_lock
        with sim.lock:
            clone.config = new_config
            clone.lock = None

    def cleanup() -> None:
        with sim.lock:
            src.lock = src_lock
            if sim.vms.get(newid) is clone and clone.lock == 'clone':
                sim.vms.pop(newid, None)
                remove_guest_files(sim, newid)
    return sim.start_task(_node(ctx), 'qmclone', str(src.vmid), ctx.authid, work, cleanup)


def vm_delete(ctx: Ctx) -> object:
    vm = _vm_for(ctx)
    if str(vm.config.get('protection', 0)) == '1':
        raise ApiError(500, f"can't remove VM {vm.vmid} - protection mode enabled")
    if vm.status == 'running':
        raise ApiError(500, f'VM {vm.vmid} is running - destroy failed')
    if vm.lock and not ctx.params.get('skiplock'):
        raise ApiError(500, f'VM is locked ({vm.lock})')
    return destroy_guest(ctx, vm, 'qmdestroy', 'VM')


def get_vm_snapshots(ctx: Ctx) -> object:
    return snapshot_list(_vm_for(ctx))
