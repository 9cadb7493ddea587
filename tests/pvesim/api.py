# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The served API as data: ``ROUTES`` lists every (method, schema path, parameters, permission
check, handler). Tests enumerate it to hold the simulator to the official schema."""

from __future__ import annotations

import base64
import bz2
import gzip
import hashlib
import ipaddress
import os
import random
import re
import shutil
import ssl
import struct
import subprocess
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Callable

from tests.pvesim.acl import Checker, PermissionDenied
from tests.pvesim.params import B, Int, N, Param, S, declared, parse_property_string
from tests.pvesim.state import (IMPORT_RE, ISO_RE, VZTMPL_RE, VM, ApiError, Simulator, Task,
                                TaskError, format_size, image_virtual_size, param_error, parse_size,
                                volume_format)

NODE = S(optional=False, pattern=r'[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?')
VMID = Int(optional=False, minimum=100, maximum=999999999)
STORAGE = S(optional=False, pattern=r'[a-z][a-z0-9\-_.]*[a-z0-9]')
CONTENT_DL = S(optional=False, enum=('iso', 'vztmpl', 'import'))
CHECKSUM_ALGOS = ('md5', 'sha1', 'sha224', 'sha256', 'sha384', 'sha512')


@dataclass
class Ctx:
    sim: Simulator
    authid: str
    checker: Checker
    params: dict[str, object]
    files: dict[str, tuple[str, str]] = field(default_factory=dict)  # part -> (filename, tmp path)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[[Ctx], object]
    params: dict[str, Param]
    check: list | None = None     # the schema's ``check``; None means "user: all" plus handler checks
    node_proxy: bool = True       # proxyto node: an unknown node fails the hostname lookup
    multipart: bool = False


# ---------------------------------------------------------------------------------------------
# property-string formats used by the handlers
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


# ---------------------------------------------------------------------------------------------
# helpers
def _node(ctx: Ctx) -> str:
    return str(ctx.params['node'])


def _perm(ctx: Ctx, path: str, privs: list[str], any_of: bool = False) -> None:
    ctx.checker.require(path, privs, any_of)


def _vm_perm(ctx: Ctx, vmid: int, pool: object, privs: list[str], any_of: bool = False) -> None:
    """RPCEnvironment::check_vm_perm: the pool first (quietly), then /vms/<vmid>."""
    if pool and ctx.checker.has(f'/pool/{pool}', privs, any_of):
        return
    _perm(ctx, f'/vms/{vmid}', privs, any_of)


def _bool(value: object) -> int:
    return 1 if value in (1, '1', True, 'true', 'yes', 'on') else 0


def _encode_text(text: str) -> str:
    return re.sub(r'[^A-Za-z0-9\-_.+=/@! ]', lambda m: f'\\x{ord(m.group(0)):02x}', text)


def _url_host_is_loopback(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ''
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _open_url(url: str, verify: bool, method: str = 'GET'):
    if urllib.parse.urlsplit(url).scheme not in ('http', 'https'):
        raise TaskError(f"invalid URL scheme in '{url}'")
    if not _url_host_is_loopback(url):
        # the simulator never leaves the machine: only loopback URLs are fetched
        raise TaskError(f"unable to resolve host address '{urllib.parse.urlsplit(url).hostname}' (simulated network: loopback only)")
    context = ssl.create_default_context() if verify else ssl._create_unverified_context()  # noqa: S323
    request = urllib.request.Request(url, method=method, headers={'User-Agent': 'Wget/1.21.3'})
    return urllib.request.urlopen(request, timeout=30, context=context)  # noqa: S310


def _normalize_filename(name: str) -> str:
    """PVE::Storage::normalize_content_filename: drop directories, then replace unsafe characters."""
    name = re.sub(r'^.*[/\\]', '', name.rstrip('\n'))
    return re.sub(r'[^a-zA-Z0-9_.-]', '_', name)


def _check_file_name(content: str, filename: str, upload: bool) -> str | None:
    """The extension rules of download-url and upload; returns the import image format."""
    if content == 'iso':
        if not ISO_RE.fullmatch(filename):
            raise param_error({'filename': 'wrong file extension'})
    elif content == 'vztmpl':
        if not VZTMPL_RE.fullmatch(filename):
            raise param_error({'filename': 'wrong file extension'})
    elif content == 'import':
        if not IMPORT_RE.fullmatch(filename):
            raise param_error({'filename': 'invalid filename or wrong extension'})
        return filename.rsplit('.', 1)[1]
    elif upload:
        raise param_error({'content': f"upload content type '{content}' not allowed"})
    else:
        raise param_error({'content': f"upload content-type '{content}' is not allowed"})
    return None


def _file_based(store: dict) -> bool:
    return store['type'] in ('dir', 'nfs', 'cifs', 'btrfs', 'cephfs')


def _assert_file_validity(path: str, image_format: str | None) -> None:
    """What pve-storage checks on an untrusted file (with qemu-img): the declared image format
    must be what the file is, and no backing file."""
    with open(path, 'rb') as handle:
        header = handle.read(512)
    is_qcow2 = header[:4] == b'QFI\xfb'
    if is_qcow2 and len(header) >= 16 and struct.unpack('>Q', header[8:16])[0]:
        raise TaskError(f"backing file not allowed for untrusted image '{path}'!")
    if image_format == 'qcow2' and not is_qcow2:
        raise TaskError('failed to query file information with qemu-img')
    if image_format == 'vmdk' and not (header[:4] == b'KDMV' or header.startswith(b'# Disk DescriptorFile')):
        raise TaskError('failed to query file information with qemu-img')
    if image_format == 'ova' and not tarfile.is_tarfile(path):
        raise TaskError('failed to query file information with qemu-img')


def _file_digest(algorithm: str, path: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, 'rb') as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# version, nodes, cluster, access
def get_version(ctx: Ctx) -> object:
    version = ctx.sim.settings['version']
    return {'version': version, 'release': '.'.join(version.split('.')[:2]), 'repoid': ctx.sim.settings['repoid']}


def _node_entry(sim: Simulator, name: str, detail: bool) -> dict:
    node = sim.nodes[name]
    entry = {'node': name, 'status': 'online', 'id': f'node/{name}', 'type': 'node', 'level': ''}
    if detail:
        maxmem = int(node.get('maxmem', 34359738368))
        entry.update({'maxcpu': int(node.get('maxcpu', 8)), 'maxmem': maxmem, 'cpu': 0.02,
                      'mem': _node_mem(sim, name), 'uptime': int(time.time() - sim.started) + 86400,
                      'disk': 5368709120, 'maxdisk': 107374182400,
                      'ssl_fingerprint': node.get('ssl_fingerprint', '00:' * 31 + '00')})
    return entry


def _node_mem(sim: Simulator, name: str) -> int:
    used = 2147483648
    for vm in list(sim.vms.values()):
        if vm.node == name and vm.status == 'running':
            used += _vm_memory(vm)
    return used


def get_nodes(ctx: Ctx) -> object:
    return [_node_entry(ctx.sim, name, ctx.checker.has(f'/nodes/{name}', ['Sys.Audit']))
            for name in sorted(ctx.sim.nodes)]


def get_node_status(ctx: Ctx) -> object:
    sim = ctx.sim
    node = sim.nodes[_node(ctx)]
    maxmem = int(node.get('maxmem', 34359738368))
    used = _node_mem(sim, _node(ctx))
    cpus = int(node.get('maxcpu', 8))
    return {
        'boot-info': {'mode': 'efi', 'secureboot': 0},
        'cpu': 0.02,
        'cpuinfo': {'cores': cpus, 'cpus': cpus, 'model': 'Simulated CPU', 'sockets': 1, 'mhz': '2400.000',
                    'hvm': '1', 'flags': 'fpu vme de pse'},
        'current-kernel': {'machine': 'x86_64', 'release': '6.14.11-4-pve', 'sysname': 'Linux',
                           'version': '#1 SMP PREEMPT_DYNAMIC PMX 6.14.11-4'},
        'loadavg': ['0.10', '0.08', '0.05'],
        'memory': {'available': maxmem - used, 'free': maxmem - used, 'total': maxmem, 'used': used},
        'pveversion': f"pve-manager/{sim.settings['version']}/{sim.settings['repoid']}",
        'rootfs': {'avail': 100 << 30, 'free': 100 << 30, 'total': 120 << 30, 'used': 20 << 30},
        'uptime': int(time.time() - sim.started) + 86400,
        'kversion': 'Linux 6.14.11-4-pve #1 SMP PREEMPT_DYNAMIC PMX 6.14.11-4',
        'idle': 0, 'wait': 0.0,
        'swap': {'free': 0, 'total': 0, 'used': 0},
        'ksm': {'shared': 0},
    }


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
    entry = {'vmid': vm.vmid, 'name': str(vm.config.get('name', f'VM {vm.vmid}')), 'status': vm.status,
             'maxmem': _vm_memory(vm), 'maxdisk': _vm_maxdisk(vm),
             'cpus': int(vm.config.get('cores', 1)) * int(vm.config.get('sockets', 1)),
             'cpu': 0.01 if running else 0, 'mem': _vm_memory(vm) // 4 if running else 0, 'disk': 0,
             'uptime': int(time.time() - vm.started_at) if running and vm.started_at else 0,
             'netin': 0, 'netout': 0, 'diskread': 0, 'diskwrite': 0}
    if running:
        entry['pid'] = vm.pid
    if vm.template:
        entry['template'] = 1
    if vm.config.get('tags'):
        entry['tags'] = str(vm.config['tags'])
    if vm.lock:
        entry['lock'] = vm.lock
    return entry


def _guest_summary(vm: VM) -> dict:
    return _ct_summary(vm) if vm.type == 'lxc' else _vm_summary(vm)


def get_cluster_resources(ctx: Ctx) -> object:
    sim = ctx.sim
    wanted = ctx.params.get('type')
    out: list[dict] = []
    if wanted in (None, 'vm'):
        with sim.lock:
            vms = sorted(sim.vms.values(), key=lambda v: v.vmid)
        for vm in vms:
            if not ctx.checker.has(f'/vms/{vm.vmid}', ['VM.Audit']):
                continue
            entry = _guest_summary(vm)
            entry.update({'id': f'{vm.type}/{vm.vmid}', 'type': vm.type, 'node': vm.node,
                          'template': 1 if vm.template else 0})
            entry.pop('pid', None)
            entry.pop('maxswap', None)
            entry['maxcpu'] = entry.pop('cpus')
            if vm.pool:
                entry['pool'] = vm.pool
            out.append(entry)
    if wanted in (None, 'node'):
        for name in sorted(sim.nodes):
            entry = _node_entry(sim, name, True)
            entry.pop('ssl_fingerprint', None)
            entry['cgroup-mode'] = 2
            out.append(entry)
    if wanted in (None, 'storage'):
        for storeid, store in sorted(sim.storages.items()):
            if not ctx.checker.has(f'/storage/{storeid}', ['Datastore.Audit', 'Datastore.AllocateSpace'], True):
                continue
            for name in store.get('nodes') or sorted(sim.nodes):
                used = sim.storage_usage(storeid)
                out.append({'id': f'storage/{name}/{storeid}', 'type': 'storage', 'storage': storeid,
                            'node': name, 'status': 'available', 'content': ','.join(sorted(store['content'])),
                            'plugintype': store['type'], 'shared': 1 if store.get('shared') else 0,
                            'disk': used, 'maxdisk': int(store['total'])})
    if wanted in (None, 'sdn'):
        for name in sorted(sim.nodes):
            out.append({'id': f'sdn/{name}/{sim.sdn_zone}', 'type': 'sdn', 'sdn': sim.sdn_zone,
                        'node': name, 'status': 'ok'})
    return out


def get_pools(ctx: Ctx) -> object:
    """PVE::API2::Pool index: the pools the caller may audit; with poolid, that pool and its members."""
    sim = ctx.sim
    pools = sim.access.pools
    poolid = ctx.params.get('poolid')
    if poolid is None:
        return [{'poolid': name} | ({'comment': str(sim.pools[name]['comment'])}
                                    if sim.pools.get(name, {}).get('comment') is not None else {})
                for name in sorted(pools) if ctx.checker.has(f'/pool/{name}', ['Pool.Audit'])]
    poolid = str(poolid)
    ctx.checker.require(f'/pool/{poolid}', ['Pool.Audit'])
    if poolid not in pools:
        raise ApiError(500, f"pool '{poolid}' does not exist")
    wanted = ctx.params.get('type')
    members: list[dict] = []
    with sim.lock:
        vms = [sim.vms[v] for v in sorted(pools[poolid]['vms']) if v in sim.vms]
    for vm in vms:
        if wanted not in (None, vm.type):
            continue
        entry = _guest_summary(vm)
        entry.update({'id': f'{vm.type}/{vm.vmid}', 'type': vm.type, 'node': vm.node,
                      'template': 1 if vm.template else 0})
        entry.pop('pid', None)
        entry.pop('maxswap', None)
        entry['maxcpu'] = entry.pop('cpus')
        members.append(entry)
    if wanted in (None, 'storage'):
        for storeid in sorted(pools[poolid]['storage']):
            for name in sorted(sim.nodes):
                members.append({'id': f'storage/{name}/{storeid}', 'type': 'storage', 'storage': storeid,
                                'node': name, 'status': 'available'})
    entry = {'poolid': poolid, 'members': members}
    if sim.pools.get(poolid, {}).get('comment') is not None:
        entry['comment'] = str(sim.pools[poolid]['comment'])
    return [entry]


def get_pool(ctx: Ctx) -> object:
    """GET /pools/{poolid} (the older per-pool path, still served): the pool and its members."""
    if ctx.params['poolid'] not in ctx.sim.access.pools:
        raise ApiError(500, f"pool '{ctx.params['poolid']}' does not exist")
    entry = get_pools(ctx)[0]
    entry.pop('poolid')
    return entry


def get_nextid(ctx: Ctx) -> object:
    sim = ctx.sim
    wanted = ctx.params.get('vmid')
    with sim.lock:
        if wanted is not None:
            if int(wanted) in sim.vms:
                raise param_error({'vmid': f'VM {wanted} already exists'})
            return str(wanted)
        vmid = 100
        while vmid in sim.vms:
            vmid += 1
        return str(vmid)


# RPCEnvironment::get_effective_permissions: these plus every path with an ACL entry
PERMISSION_ROOTS = ['/', '/access', '/access/groups', '/nodes', '/pool', '/sdn', '/storage', '/vms']


def get_permissions(ctx: Ctx) -> object:
    sim = ctx.sim
    target = ctx.params.get('userid')
    authid = ctx.authid
    if target:
        target = str(target)
        owner = authid.split('!', 1)[0]
        own = target == authid or (target.startswith(owner + '!') and '!' not in authid)
        if not own:
            ctx.checker.require('/access', ['Sys.Audit'])
        authid = target
    checker = Checker(sim.access, authid)
    if ctx.params.get('path'):
        # one path: answered even when empty ({path: {}})
        path = str(ctx.params['path'])
        return {path: {priv: 1 if prop else 0 for priv, prop in sorted(checker.privs(path).items())}}
    out = {}
    for path in sorted(set(PERMISSION_ROOTS) | set(sim.access.acl_paths())):
        privs = checker.privs(path)
        if privs:  # paths with nothing are left out
            out[path] = {priv: 1 if prop else 0 for priv, prop in sorted(privs.items())}
    return out


def get_network(ctx: Ctx) -> object:
    """Node interfaces: one physical NIC and the scenario's bridges on it."""
    wanted = ctx.params.get('type')
    rows = [{'iface': 'eno1', 'type': 'eth', 'active': 1, 'exists': 1, 'method': 'manual', 'method6': 'manual',
             'families': ['inet'], 'priority': 1}]
    for index, bridge in enumerate(ctx.sim.bridges):
        row = {'iface': bridge, 'type': 'bridge', 'active': 1, 'autostart': 1, 'method': 'manual',
               'method6': 'manual', 'families': ['inet'], 'bridge_ports': 'eno1' if index == 0 else '',
               'bridge_vlan_aware': 0, 'priority': index + 2}
        if index == 0:
            row.update({'method': 'static', 'address': '192.168.100.2', 'netmask': '24',
                        'cidr': '192.168.100.2/24', 'gateway': '192.168.100.1'})
        rows.append(row)
    if wanted in ('any_bridge', 'any_local_bridge'):
        return [r for r in rows if r['type'] in ('bridge', 'OVSBridge')]
    if wanted and wanted != 'include_sdn':
        return [r for r in rows if r['type'] == wanted]
    return rows


def get_pci_mappings(ctx: Ctx) -> object:
    out = []
    for mapping_id, entry in sorted(ctx.sim.mappings.get('pci', {}).items()):
        if not ctx.checker.has(f'/mapping/pci/{mapping_id}', ['Mapping.Modify', 'Mapping.Use', 'Mapping.Audit'], True):
            continue
        row = {'id': mapping_id, 'description': str(entry.get('description', '')),
               'map': [str(m) for m in entry.get('map', [])]}
        if ctx.params.get('check-node'):
            row['checks'] = []
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------------
# storage
def _storage_visible(ctx: Ctx, storeid: str) -> bool:
    return ctx.checker.has(f'/storage/{storeid}', ['Datastore.Audit', 'Datastore.AllocateSpace'], True)


def _storage_status_entry(sim: Simulator, storeid: str) -> dict:
    store = sim.storages[storeid]
    used = sim.storage_usage(storeid)
    total = int(store['total'])
    return {'storage': storeid, 'type': store['type'], 'content': ','.join(sorted(store['content'])),
            'active': 1, 'enabled': 1 if store.get('enabled', True) else 0, 'shared': 1 if store.get('shared') else 0,
            'total': total, 'used': used, 'avail': max(total - used, 0),
            'used_fraction': (used / total) if total else 0.0}


def get_node_storage(ctx: Ctx) -> object:
    sim = ctx.sim
    out = []
    wanted_content = set(str(ctx.params['content']).split(',')) if ctx.params.get('content') else None
    for storeid, store in sorted(sim.storages.items()):
        if ctx.params.get('storage') and ctx.params['storage'] != storeid:
            continue
        if not _storage_visible(ctx, storeid):
            continue
        if wanted_content and not wanted_content & set(store['content']):
            continue
        if ctx.params.get('enabled') and not store.get('enabled', True):
            continue
        out.append(_storage_status_entry(sim, storeid))
    return out


def get_storage_config_list(ctx: Ctx) -> object:
    out = []
    for storeid, store in sorted(ctx.sim.storages.items()):
        if ctx.params.get('type') and ctx.params['type'] != store['type']:
            continue
        if not _storage_visible(ctx, storeid):
            continue
        entry = {'storage': storeid, 'type': store['type'], 'content': ','.join(sorted(store['content'])),
                 'digest': hashlib.sha1(repr(sorted(store.items())).encode()).hexdigest()}
        if store['type'] == 'dir':
            entry['path'] = store.get('path', '/var/lib/vz')
        if store['type'] == 'lvmthin':
            entry.update({'thinpool': 'data', 'vgname': 'pve'})
        if store.get('shared'):
            entry['shared'] = 1
        out.append(entry)
    return out


def get_storage_status(ctx: Ctx) -> object:
    storeid = str(ctx.params['storage'])
    ctx.sim.storage(storeid)
    entry = _storage_status_entry(ctx.sim, storeid)
    entry.pop('storage')
    entry.pop('used_fraction')
    return entry


def get_storage_content(ctx: Ctx) -> object:
    storeid = str(ctx.params['storage'])
    ctx.sim.storage(storeid)
    out = []
    for entry in ctx.sim.list_volumes(storeid):
        if ctx.params.get('content') and entry['content'] != ctx.params['content']:
            continue
        if ctx.params.get('vmid') is not None and entry.get('vmid') != ctx.params['vmid']:
            continue
        # VM images are listed only where the caller may audit the VM (or allocate on the storage)
        if entry['content'] in ('images', 'rootdir') and not (
                ctx.checker.has(f"/vms/{entry['vmid']}", ['VM.Audit'])
                or ctx.checker.has(f'/storage/{storeid}', ['Datastore.Allocate'])):
            continue
        out.append(entry)
    return out


def _resolve_volume(ctx: Ctx) -> tuple[str, str, str, int | None, str]:
    volume = str(ctx.params['volume'])
    storeid = ctx.params.get('storage')
    if ':' not in volume:
        if not storeid:
            raise ApiError(500, f"unable to parse volume ID '{volume}'")
        volume = f'{storeid}:{volume}'
    try:
        parsed = ctx.sim.parse_volid(volume)
    except ValueError as exc:
        raise ApiError(500, str(exc)) from None
    if storeid and parsed[0] != storeid:
        raise ApiError(500, f"volume '{volume}' is not on storage '{storeid}'")
    return parsed


def _check_volume_access(ctx: Ctx, storeid: str, content: str, owner: int | None, vmid: int | None = None) -> None:
    if content in ('iso', 'vztmpl', 'import'):
        _perm(ctx, f'/storage/{storeid}', ['Datastore.AllocateSpace', 'Datastore.Audit'], True)
    elif owner is not None and vmid is not None and owner == vmid:
        return
    else:
        _perm(ctx, f'/storage/{storeid}', ['Datastore.Allocate'])


def get_volume(ctx: Ctx) -> object:
    storeid, content, name, owner, path = _resolve_volume(ctx)
    _check_volume_access(ctx, storeid, content, owner)
    if not os.path.exists(path):
        raise ApiError(500, f"volume '{storeid}:{name}' does not exist")
    stat = os.stat(path)
    size = image_virtual_size(path) if content in ('images', 'import') else stat.st_size
    return {'path': path, 'size': size, 'used': stat.st_size, 'format': _fmt(content, name)}


def _fmt(content: str, name: str) -> str:
    return volume_format(content, name)


def delete_volume(ctx: Ctx) -> object:
    storeid, content, name, owner, path = _resolve_volume(ctx)
    _perm(ctx, f'/storage/{storeid}', ['Datastore.Allocate'])
    if not os.path.exists(path):
        raise ApiError(500, f"volume '{storeid}:{name}' does not exist")
    if owner is not None and owner in ctx.sim.vms:
        vm = ctx.sim.vms[owner]
        if any(name in str(value) for value in vm.config.values()):
            raise ApiError(500, f"unable to delete volume '{storeid}:{name}' - still in use by VM {owner}")

    def work(task: Task) -> None:
        os.unlink(path)
        task.write(f"Removed volume '{storeid}:{name}'")
    return ctx.sim.start_task(_node(ctx), 'imgdel', _encode_text(f'{storeid}:{name}'), ctx.authid, work)


def get_url_metadata(ctx: Ctx) -> object:
    url = str(ctx.params['url'])
    verify = _bool(ctx.params.get('verify-certificates', 1))
    try:
        with _open_url(url, bool(verify), 'HEAD') as response:
            headers = response.headers
            final = response.geturl()
    except urllib.error.HTTPError as exc:
        raise ApiError(500, f"invalid server response: '{exc.code} {exc.reason}'") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ApiError(500, f"invalid server response: '500 Can't connect ({exc})'") from None
    except TaskError as exc:
        raise ApiError(500, str(exc)) from None
    result: dict[str, object] = {}
    disposition = headers.get('Content-Disposition', '')
    match = re.search(r'filename="?([^";]+)"?', disposition)
    filename = match.group(1) if match else os.path.basename(urllib.parse.urlsplit(final).path)
    if filename:
        result['filename'] = filename
    if headers.get('Content-Length'):
        result['size'] = int(headers['Content-Length'])
    if headers.get('Content-Type'):
        result['mimetype'] = headers['Content-Type'].split(';')[0].strip()
    return result


DECOMPRESSORS = {'gz': ['zcat'], 'lzo': ['lzop', '-d', '-c'], 'zst': ['zstd', '-q', '-d', '-c'],
                 'bz2': ['bzcat', '-q']}


def _decompress(compression: str, src: str, dest: str) -> None:
    """Run the decompressor PVE uses (zcat, lzop, zstd, bzcat) when installed; gz and bz2 fall
    back to Python's own modules so the simulator needs no extra packages."""
    command = DECOMPRESSORS[compression]
    shown = ' '.join([*command, src])
    if shutil.which(command[0]):
        with open(dest, 'wb') as out:
            proc = subprocess.run([*command, src], stdout=out, stderr=subprocess.PIPE, check=False)  # noqa: S603
        if proc.returncode:
            raise TaskError(f"command '{shown}' failed: exit code {proc.returncode}")
        return
    opener = {'gz': gzip.open, 'bz2': bz2.open}.get(compression)
    if opener is None:
        raise TaskError(f"command '{shown}' failed: exec failed: No such file or directory")
    try:
        with opener(src, 'rb') as handle, open(dest, 'wb') as out:
            shutil.copyfileobj(handle, out, 1 << 20)
    except OSError as exc:
        raise TaskError(f"command '{shown}' failed: {exc}") from None


def _fetch(task: Task, url: str, verify: bool, tmp: str) -> None:
    """Download like wget does for PVE; failures end the task with wget's exit code."""
    wget = f"download failed: command 'wget --progress=dot:giga -O {tmp} {url}' failed: exit code"
    try:
        with _open_url(url, verify) as response, open(tmp, 'wb') as out:
            total = 0
            for chunk in iter(lambda: response.read(1 << 20), b''):
                out.write(chunk)
                total += len(chunk)
        task.write(f'{total} bytes received')
    except urllib.error.HTTPError as exc:
        task.write(f'ERROR {exc.code}: {exc.reason}.')
        raise TaskError(f'{wget} 8') from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, 'reason', exc)
        task.write(f'failed: {reason}.')
        raise TaskError(f'{wget} {5 if isinstance(reason, ssl.SSLError) else 4}') from None


def post_download_url(ctx: Ctx) -> object:
    """pve-storage API2::Storage::Status download_url + pve-common Tools::download_file_from_url."""
    sim = ctx.sim
    storeid = str(ctx.params['storage'])
    content = str(ctx.params['content'])
    url = str(ctx.params['url'])
    store = sim.storage(storeid)
    if not _file_based(store):
        raise ApiError(500, f"can't upload to storage type '{store['type']}', not a file based storage!")
    if content not in store['content']:
        raise ApiError(500, f"storage '{storeid}' is not configured for content-type '{content}'")
    filename = _normalize_filename(str(ctx.params['filename']))
    image_format = _check_file_name(content, filename, upload=False)
    dest = sim.volume_path(storeid, content, filename)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    checksum = ctx.params.get('checksum')
    algorithm = ctx.params.get('checksum-algorithm') if checksum else None
    compression = ctx.params.get('compression')
    verify = bool(_bool(ctx.params.get('verify-certificates', 1)))

    def work(task: Task) -> None:
        if compression:
            if content != 'iso':
                raise TaskError(f'decompression not supported for {content}')
            if compression not in DECOMPRESSORS:
                raise TaskError('no decompression method found')
        task.write(f'downloading {url} to {dest}')
        if os.path.isfile(dest):
            if algorithm:
                got = _file_digest(str(algorithm), dest)
                if got.lower() == str(checksum).lower():
                    task.write('calculating checksum of existing file...OK, got correct file already, no need to download')
                    return
                task.write('calculating checksum of existing file...')
                raise TaskError(f"checksum mismatch: got '{got}' != expect '{checksum}', aborting")
            raise TaskError(f"refusing to override existing file '{dest}'")
        tmp = f'{dest}.tmp_dwnl.{task.pid}'
        tmp_decomp = f'{dest}.tmp_dcom.{task.pid}'
        try:
            _fetch(task, url, verify, tmp)
            if algorithm:
                got = _file_digest(str(algorithm), tmp)
                if got.lower() != str(checksum).lower():
                    task.write('calculating checksum...')
                    raise TaskError(f"checksum mismatch: got '{got}' != expect '{checksum}'")
                task.write('calculating checksum...OK, checksum verified')
            current = tmp
            if compression:
                task.write(f'decompressing {tmp} to {tmp_decomp}')
                _decompress(str(compression), tmp, tmp_decomp)
                os.unlink(tmp)
                current = tmp_decomp
            try:
                _assert_file_validity(current, image_format)
            except TaskError as exc:
                raise TaskError(f'failed to verify file: {exc}') from None
            os.replace(current, dest)
        finally:
            for leftover in (tmp, tmp_decomp):
                if os.path.exists(leftover):
                    os.unlink(leftover)
        task.write(f"download of '{url}' to '{dest}' finished")
    return sim.start_task(_node(ctx), 'download', _encode_text(filename), ctx.authid, work)


def post_upload(ctx: Ctx) -> object:
    """pve-storage API2::Storage::Status upload (the file arrives as the ``filename`` part)."""
    sim = ctx.sim
    storeid = str(ctx.params['storage'])
    content = str(ctx.params['content'])
    store = sim.storage(storeid)
    if not _file_based(store):
        raise ApiError(500, f"can't upload to storage type '{store['type']}'")
    upload = ctx.files.get('filename')
    if upload is None:
        raise ApiError(500, 'missing temporary file name')
    filename = _normalize_filename(upload[0])
    image_format = _check_file_name(content, filename, upload=True)
    if content not in store['content']:
        raise ApiError(500, f"storage '{storeid}' does not support '{content}' content")
    dest = sim.volume_path(storeid, content, filename)
    checksum = ctx.params.get('checksum')
    algorithm = ctx.params.get('checksum-algorithm')
    tmp = upload[1]
    ctx.files.pop('filename')  # the task owns the temporary file now
    node = _node(ctx)

    def work(task: Task) -> None:
        try:
            task.write(f'starting file import from: {tmp}')
            if algorithm:
                got = _file_digest(str(algorithm), tmp)
                if got.lower() != str(checksum).lower():
                    task.write('calculating checksum...')
                    raise TaskError(f"checksum mismatch: got '{got}' != expect '{checksum}'")
                task.write('calculating checksum...OK, checksum verified')
            _assert_file_validity(tmp, image_format)
            task.write(f'target node: {node}')
            task.write(f'target file: {dest}')
            task.write(f'file size is: {os.path.getsize(tmp)}')
            task.write(f'command: cp -- {tmp} {dest}')
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.move(tmp, dest)  # like the real server, an existing file is overwritten
            task.write('finished file import successfully')
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return sim.start_task(node, 'imgcopy', '', ctx.authid, work)


# ---------------------------------------------------------------------------------------------
# tasks
def _task(ctx: Ctx) -> Task:
    upid = str(ctx.params['upid'])
    match = re.fullmatch(r'UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):'
                         r'([0-9A-Fa-f]{8}):([^:\s]+):([^:\s]*):([^:\s]+):', upid)
    if not match:
        raise ApiError(500, f"unable to parse worker upid '{upid}'")
    task = ctx.sim.tasks.get(upid)
    if task is None:
        raise ApiError(500, 'no such task')
    if task.user != ctx.authid:
        _perm(ctx, f'/nodes/{task.node}', ['Sys.Audit'])
    return task


def get_task_index(ctx: Ctx) -> object:
    _task(ctx)
    return [{'name': 'log'}, {'name': 'status'}]


def get_task_status(ctx: Ctx) -> object:
    task = _task(ctx)
    with ctx.sim.lock:
        out = {'upid': task.upid, 'node': task.node, 'pid': task.pid, 'pstart': task.pstart,
               'starttime': task.starttime, 'type': task.type, 'id': task.id, 'user': task.user,
               'status': task.status}
        if task.status == 'stopped':
            out['exitstatus'] = task.exitstatus
    return out


def get_task_log(ctx: Ctx) -> object:
    task = _task(ctx)
    start = int(ctx.params.get('start') or 0)
    limit = int(ctx.params.get('limit') or 50)
    with ctx.sim.lock:
        lines = list(task.log)
    if not lines:
        lines = ['no content']
    return [{'n': index + 1, 't': text} for index, text in enumerate(lines)][start:start + limit]


def list_tasks(ctx: Ctx) -> object:
    sim = ctx.sim
    node = _node(ctx)
    params = ctx.params
    source = params.get('source', 'archive')
    statusfilter = set(str(params['statusfilter']).split(',')) if params.get('statusfilter') else None
    may_audit = ctx.checker.has(f'/nodes/{node}', ['Sys.Audit'])
    with sim.lock:
        tasks = sorted(sim.tasks.values(), key=lambda t: (t.starttime, t.pid), reverse=True)
        rows = []
        for task in tasks:
            if task.node != node or (task.user != ctx.authid and not may_audit):
                continue
            running = task.status == 'running'
            if (source == 'archive' and running) or (source == 'active' and not running):
                continue
            if params.get('userfilter') and str(params['userfilter']) not in task.user:
                continue
            if params.get('typefilter') and params['typefilter'] != task.type:
                continue
            if params.get('vmid') is not None and task.id != str(params['vmid']):
                continue
            if params.get('since') is not None and task.starttime < int(params['since']):
                continue
            if params.get('until') is not None and task.starttime > int(params['until']):
                continue
            kind = 'ok' if task.exitstatus == 'OK' else 'warning' if str(task.exitstatus).startswith('WARNINGS') else 'error'
            if params.get('errors') and (running or kind == 'ok'):
                continue
            if statusfilter and (running or kind not in statusfilter):
                continue
            row = {'upid': task.upid, 'node': task.node, 'pid': task.pid, 'pstart': task.pstart,
                   'starttime': task.starttime, 'type': task.type, 'id': task.id, 'user': task.user}
            if not running:
                row['status'] = task.exitstatus
                row['endtime'] = int(task.endtime or task.starttime)
            rows.append(row)
    start = int(params.get('start') or 0)
    limit = int(params['limit']) if params.get('limit') is not None else 50
    return rows[start:start + limit]


def get_token_info(ctx: Ctx) -> object:
    userid = str(ctx.params['userid'])
    name = str(ctx.params['tokenid'])
    user = ctx.sim.access.users.get(userid)
    if user is None:
        raise ApiError(500, f"no such user ('{userid}')")
    token = user['tokens'].get(name)
    if token is None:
        raise ApiError(500, f"no such token '{name}' for user '{userid}'")
    out: dict[str, object] = {'privsep': 1 if token.get('privsep', True) else 0, 'expire': int(token.get('expire', 0))}
    if token.get('comment'):
        out['comment'] = token['comment']
    return out


def delete_task(ctx: Ctx) -> object:
    upid = str(ctx.params['upid'])
    task = ctx.sim.tasks.get(upid)
    if task is None:
        raise ApiError(500, 'no such task')
    if task.user != ctx.authid:
        _perm(ctx, f'/nodes/{task.node}', ['Sys.Modify'])
    with ctx.sim.lock:
        if task.status == 'running':
            task.write('received interrupt')
            task.status = 'stopped'
            task.exitstatus = 'interrupted by signal'
    return None


# ---------------------------------------------------------------------------------------------
# qemu
def list_qemu(ctx: Ctx) -> object:
    node = _node(ctx)
    with ctx.sim.lock:
        vms = [vm for vm in ctx.sim.vms.values() if vm.node == node and vm.type == 'qemu']
    return [_vm_summary(vm) for vm in sorted(vms, key=lambda v: v.vmid)
            if ctx.checker.has(f'/vms/{vm.vmid}', ['VM.Audit'])]


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


def _check_serial(ctx: Ctx, vmid: int, settings: dict[str, object], pool: object = None) -> None:
    if ctx.authid == 'root@pam':
        return
    for key in settings:
        if re.fullmatch(r'serial\d+', key):
            if settings[key] == 'socket':
                _vm_perm(ctx, vmid, pool, ['VM.Config.HWType'])
            else:
                raise ApiError(500, f"only root can set '{key}' config for real devices")


def _check_hostpci(ctx: Ctx, vmid: int, settings: dict[str, object], pool: object = None) -> None:
    if ctx.authid == 'root@pam':
        return
    for key in settings:
        if not re.fullmatch(r'hostpci\d+', key):
            continue
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


def _random_mac() -> str:
    return 'BC:24:11:' + ':'.join(f'{random.randint(0, 255):02X}' for dummy in range(3))


def _print_net(net: dict[str, object]) -> str:
    parts = [f"{net['model']}={net.get('macaddr') or _random_mac()}"]
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
    index = 0
    while True:
        name = f'{prefix}-{vmid}-disk-{index}{ext}'
        if name not in taken and not os.path.exists(sim.volume_path(storeid, 'images', name, vmid)):
            taken.add(name)
            return name
        index += 1


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
    out = {}
    for key, value in settings.items():
        if re.fullmatch(r'net\d+', key):
            net, dummy = parse_property_string(str(value), NET)
            out[key] = _print_net(net)
        else:
            out[key] = value
    return out


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
    with sim.lock:
        if vmid in sim.vms:
            # create_and_lock_config -> PVE::Cluster::check_vmid_unused
            other = sim.vms[vmid]
            raise ApiError(500, f"unable to create VM {vmid} - {other.kind} {vmid} already exists on node '{other.node}'")
        vm = VM(vmid, node, {}, pool=pool)
        vm.lock = 'create'
        sim.vms[vmid] = vm
        sim.set_pool(vmid, pool)
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
            config.setdefault('smbios1', f'uuid={_uuid()}')
            config.setdefault('vmgenid', _uuid())
            if 'boot' not in config:
                order = [k for k in sorted(config) if DISK_RE.match(k) or re.fullmatch(r'net\d+', k)]
                if order:
                    config['boot'] = 'order=' + ';'.join(order)
        except Exception:
            cleanup()
            raise
        with sim.lock:
            vm.config = config
            vm.lock = None
        if start:
            _do_start(sim, vm, task)

    def cleanup() -> None:
        with sim.lock:
            if sim.vms.get(vmid) is vm and vm.lock == 'create':
                sim.vms.pop(vmid, None)
                sim.set_pool(vmid, None)
                _remove_vm_files(sim, vmid)
    return sim.start_task(node, 'qmcreate', str(vmid), ctx.authid, work, cleanup)


def _uuid() -> str:
    return str(uuid.uuid4())


def _remove_vm_files(sim: Simulator, vmid: int) -> None:
    for storeid in sim.storages:
        shutil.rmtree(os.path.join(sim.storage_root(storeid), 'images', str(vmid)), ignore_errors=True)


def _vm_for(ctx: Ctx) -> VM:
    return ctx.sim.vm(int(ctx.params['vmid']), _node(ctx))


def get_vm_index(ctx: Ctx) -> object:
    _vm_for(ctx)
    return [{'subdir': name} for name in ('config', 'pending', 'status', 'agent', 'resize', 'clone', 'template')]


def _digest(config: dict[str, object]) -> str:
    text = ''.join(f'{k}: {config[k]}\n' for k in sorted(config))
    return hashlib.sha1(text.encode()).hexdigest()


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
    out['digest'] = _digest(config)
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
        if digest and digest != _digest(vm.config):
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
            net, dummy = parse_property_string(str(value), NET)
            if net.get('bridge') and net['bridge'] not in sim.bridges:
                raise TaskError(f"bridge '{net['bridge']}' does not exist")
        if DISK_RE.match(key):
            drive, dummy = parse_property_string(str(value), DRIVE)
            volid = str(drive.get('file', ''))
            if ':' in volid and volid not in ('none',):
                try:
                    dummy_s, dummy_c, dummy_n, dummy_o, path = sim.parse_volid(volid)
                except (ValueError, ApiError):
                    continue
                if not os.path.exists(path):
                    raise TaskError(f"volume '{volid}' does not exist")
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


def _do_stop(sim: Simulator, vm: VM, task: Task) -> None:
    with sim.lock:
        vm.status = 'stopped'
        vm.started_at = None
        vm.pid = None


def vm_stop(ctx: Ctx) -> object:
    vm = _vm_for(ctx)
    return ctx.sim.start_task(_node(ctx), 'qmstop', str(vm.vmid), ctx.authid, lambda task: _do_stop(ctx.sim, vm, task))


def vm_shutdown(ctx: Ctx) -> object:
    vm = _vm_for(ctx)

    def work(task: Task) -> None:
        _do_stop(ctx.sim, vm, task)  # a stopped VM is simply left stopped
    return ctx.sim.start_task(_node(ctx), 'qmshutdown', str(vm.vmid), ctx.authid, work)


def vm_reboot(ctx: Ctx) -> object:
    vm = _vm_for(ctx)
    if vm.status != 'running':
        raise ApiError(500, f'VM {vm.vmid} not running')

    def work(task: Task) -> None:
        _do_stop(ctx.sim, vm, task)
        _do_start(ctx.sim, vm, task)
    return ctx.sim.start_task(_node(ctx), 'qmreboot', str(vm.vmid), ctx.authid, work)


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
                    net['macaddr'] = _random_mac()
                    new_config[key] = _print_net(net)
                else:
                    new_config[key] = value
            new_config['smbios1'] = f'uuid={_uuid()}'
            new_config['vmgenid'] = _uuid()
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
                _remove_vm_files(sim, newid)
    return sim.start_task(_node(ctx), 'qmclone', str(src.vmid), ctx.authid, work, cleanup)


def vm_delete(ctx: Ctx) -> object:
    sim = ctx.sim
    vm = _vm_for(ctx)
    if str(vm.config.get('protection', 0)) == '1':
        raise ApiError(500, f"can't remove VM {vm.vmid} - protection mode enabled")
    if vm.status == 'running':
        raise ApiError(500, f'VM {vm.vmid} is running - destroy failed')
    if vm.lock and not ctx.params.get('skiplock'):
        raise ApiError(500, f'VM is locked ({vm.lock})')
    with sim.lock:
        vm.lock = 'destroyed'

    def work(task: Task) -> None:
        _remove_vm_files(sim, vm.vmid)
        with sim.lock:
            sim.vms.pop(vm.vmid, None)
            sim.ip_leases.pop(vm.vmid, None)
            sim.set_pool(vm.vmid, None)
        task.write(f'Removed VM {vm.vmid}')

    def cleanup() -> None:
        with sim.lock:
            vm.lock = None
    return sim.start_task(_node(ctx), 'qmdestroy', str(vm.vmid), ctx.authid, work, cleanup)


# ---------------------------------------------------------------------------------------------
# guest agent
def _agent_guard(ctx: Ctx) -> tuple[VM, float]:
    sim = ctx.sim
    vm = _vm_for(ctx)
    # qemu-server's assert_agent_available: any 'agent' setting counts as configured; with
    # enabled=0 the VM has no agent channel, so the ping never answers
    if 'agent' not in vm.config:
        raise ApiError(500, 'No QEMU guest agent configured')
    if vm.status != 'running' or vm.started_at is None:
        raise ApiError(500, f'VM {vm.vmid} is not running')
    elapsed = time.time() - vm.started_at
    if not _agent_enabled(vm) or sim.has_fault('agent_never_up', vm.vmid) \
            or elapsed < float(sim.settings['agent_delay']):
        raise ApiError(500, 'QEMU guest agent is not running')
    return vm, elapsed


def agent_ping(ctx: Ctx) -> object:
    _agent_guard(ctx)
    return {'result': {}}


def _vm_ipv4(sim: Simulator, vm: VM) -> tuple[str, int] | None:
    raw = vm.config.get('ipconfig0')
    if raw is None:
        return None
    parsed, err = parse_property_string(str(raw), IPCONFIG)
    ip = str(parsed.get('ip') or '') if not err else ''
    if ip == 'dhcp':
        with sim.lock:
            if vm.vmid not in sim.ip_leases:
                sim.ip_leases[vm.vmid] = f"{sim.settings['dhcp_prefix']}{100 + len(sim.ip_leases) % 150}"
            return sim.ip_leases[vm.vmid], 24
    if '/' in ip:
        address, prefix = ip.split('/', 1)
        return address, int(prefix)
    return None


def agent_network(ctx: Ctx) -> object:
    sim = ctx.sim
    vm, elapsed = _agent_guard(ctx)
    mac = 'bc:24:11:00:00:01'
    net0 = vm.config.get('net0')
    if net0:
        net, dummy = parse_property_string(str(net0), NET)
        mac = str(net.get('macaddr', mac)).lower()
    suffix = mac.split(':')
    link_local = f'fe80::{int(suffix[0], 16) ^ 2:x}{suffix[1]}:{suffix[2]}ff:fe{suffix[3]}:{suffix[4]}{suffix[5]}'
    eth_addrs = [{'ip-address': link_local, 'ip-address-type': 'ipv6', 'prefix': 64}]
    if elapsed >= float(sim.settings['agent_delay']) + float(sim.settings['agent_linklocal']):
        ipv4 = _vm_ipv4(sim, vm)
        if ipv4:
            eth_addrs.insert(0, {'ip-address': ipv4[0], 'ip-address-type': 'ipv4', 'prefix': ipv4[1]})
    return {'result': [
        {'name': 'lo', 'hardware-address': '00:00:00:00:00:00',
         'ip-addresses': [{'ip-address': '127.0.0.1', 'ip-address-type': 'ipv4', 'prefix': 8},
                          {'ip-address': '::1', 'ip-address-type': 'ipv6', 'prefix': 128}],
         'statistics': {'rx-bytes': 0, 'rx-packets': 0, 'tx-bytes': 0, 'tx-packets': 0,
                        'rx-errs': 0, 'rx-dropped': 0, 'tx-errs': 0, 'tx-dropped': 0}},
        {'name': 'eth0', 'hardware-address': mac, 'ip-addresses': eth_addrs,
         'statistics': {'rx-bytes': 1024, 'rx-packets': 10, 'tx-bytes': 2048, 'tx-packets': 12,
                        'rx-errs': 0, 'rx-dropped': 0, 'tx-errs': 0, 'tx-dropped': 0}},
    ]}


_VMP = {'node': NODE, 'vmid': VMID}


# ---------------------------------------------------------------------------------------------
# lxc containers (pve-container's API2/LXC.pm, API2/LXC/Config.pm and API2/LXC/Status.pm)
_LXC_NET_SUB = {
    'name': S(optional=False, pattern=r'[-_.\w\d]+'), 'bridge': S(pattern=r'[-_.\w\d]+'), 'firewall': B(),
    'gw': S(), 'gw6': S(), 'host-managed': B(), 'hwaddr': S(pattern=r'[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}'),
    'ip': S(), 'ip6': S(), 'link_down': B(), 'mtu': Int(minimum=64, maximum=65535), 'rate': N(),
    'tag': Int(minimum=1, maximum=4094), 'trunks': S(pattern=r'\d+(?:;\d+)*'), 'type': S(enum=('veth',)),
}
LXC_NET = S(subkeys=_LXC_NET_SUB)
_MOUNT_SUB = {'volume': S(optional=False), 'acl': B(), 'mountoptions': S(), 'quota': B(), 'replicate': B(),
              'ro': B(), 'shared': B(), 'size': S()}
ROOTFS = S(subkeys=_MOUNT_SUB, default_key='volume')
MOUNTPOINT = S(subkeys={**_MOUNT_SUB, 'mp': S(optional=False), 'backup': B(), 'keepattrs': B()},
               default_key='volume')
FEATURES = S(subkeys={'force_rw_sys': B(), 'fuse': B(), 'keyctl': B(), 'mknod': B(), 'mount': S(), 'nesting': B()})
LXC_DEV = S(subkeys={'path': S(), 'deny-write': B(), 'gid': Int(minimum=0), 'mode': S(), 'uid': Int(minimum=0)},
            default_key='path')
LXC_CONFIG_PARAMS: dict[str, Param] = {
    'arch': S(enum=('amd64', 'i386', 'arm64', 'armhf', 'riscv32', 'riscv64')),
    'cmode': S(enum=('shell', 'console', 'tty')), 'console': B(), 'cores': Int(minimum=1, maximum=8192),
    'cpulimit': N(minimum=0, maximum=8192), 'cpuunits': Int(minimum=0, maximum=500000), 'debug': B(),
    'description': S(max_length=8192), 'dev[n]': LXC_DEV,
    'entrypoint': S(pattern=r'[^\x00-\x08\x10-\x1F\x7F]+'),
    'env': S(pattern=r'(?:\w+=[^\x00-\x08\x10-\x1F\x7F]*)(?:\0\w+=[^\x00-\x08\x10-\x1F\x7F]*)*'),
    'features': FEATURES, 'hookscript': S(), 'hostname': S(max_length=255),
    'lock': S(enum=('backup', 'create', 'destroyed', 'disk', 'fstrim', 'migrate', 'mounted', 'rollback', 'snapshot',
                    'snapshot-delete')),
    'memory': Int(minimum=16), 'mp[n]': MOUNTPOINT, 'nameserver': S(), 'net[n]': LXC_NET, 'onboot': B(),
    'ostype': S(enum=('debian', 'devuan', 'ubuntu', 'centos', 'fedora', 'opensuse', 'archlinux', 'alpine', 'gentoo',
                      'nixos', 'unmanaged')),
    'protection': B(), 'rootfs': ROOTFS, 'searchdomain': S(), 'startup': S(), 'swap': Int(minimum=0), 'tags': S(),
    'template': B(), 'timezone': S(), 'tty': Int(minimum=0, maximum=6), 'unprivileged': B(),
    'unused[n]': S(subkeys={'volume': S(optional=False)}, default_key='volume'),
}
LXC_CREATE_PARAMS: dict[str, Param] = {
    **_VMP, **LXC_CONFIG_PARAMS, 'ostemplate': S(optional=False, max_length=255), 'bwlimit': N(minimum=0),
    'force': B(), 'ha-managed': B(), 'ignore-unpack-errors': B(), 'password': S(min_length=5), 'pool': S(),
    'restore': B(), 'ssh-public-keys': S(), 'start': B(), 'storage': S(pattern=STORAGE.pattern), 'unique': B(requires='restore'),
}
# the values the API takes but never writes to the container's config
_LXC_CREATE_ONLY = ('node', 'vmid', 'ostemplate', 'bwlimit', 'force', 'ha-managed', 'ignore-unpack-errors',
                    'password', 'pool', 'restore', 'ssh-public-keys', 'start', 'storage', 'unique', 'unprivileged')
NEW_VOLUME_RE = re.compile(r'(?:([a-z][a-z0-9\-_.]*[a-z0-9]):)?(\d+(?:\.\d+)?)\Z')
_SSH_KEY_RE = re.compile(r'(?:\S+\s+)?((?:ssh|ecdsa|sk)-[a-z0-9@.-]+)\s+([A-Za-z0-9+/]+={0,2})(?:\s.*)?\Z')
_OSTYPES = ('debian', 'devuan', 'ubuntu', 'centos', 'fedora', 'opensuse', 'archlinux', 'alpine', 'gentoo', 'nixos')


def _ct_for(ctx: Ctx) -> VM:
    return ctx.sim.ct(int(ctx.params['vmid']), _node(ctx))


def _mib(value: object, default: int) -> int:
    try:
        return int(str(value)) * 1048576
    except ValueError:
        return default * 1048576


def _ct_rootfs_size(ct: VM) -> int:
    parsed, err = parse_property_string(str(ct.config.get('rootfs', '')), ROOTFS)
    if err or not parsed.get('size'):
        return 0
    try:
        return parse_size(str(parsed['size']))
    except ValueError:
        return 0


def _ct_summary(ct: VM) -> dict:
    """PVE::LXC::vmstatus for one container."""
    running = ct.status == 'running'
    maxmem = _mib(ct.config.get('memory', 512), 512)
    entry = {'vmid': ct.vmid, 'name': str(ct.config.get('hostname') or f'CT{ct.vmid}'), 'status': ct.status,
             'type': 'lxc', 'maxmem': maxmem, 'maxswap': _mib(ct.config.get('swap', 512), 512),
             'maxdisk': _ct_rootfs_size(ct), 'cpus': int(ct.config.get('cores', 1)),
             'cpu': 0.01 if running else 0, 'mem': maxmem // 8 if running else 0,
             'disk': _ct_rootfs_size(ct) // 10 if running else 0,
             'uptime': int(time.time() - ct.started_at) if running and ct.started_at else 0,
             'netin': 0, 'netout': 0, 'diskread': 0, 'diskwrite': 0}
    if ct.template:
        entry['template'] = 1
    if ct.config.get('tags'):
        entry['tags'] = str(ct.config['tags'])
    if ct.lock:
        entry['lock'] = ct.lock
    return entry


def list_lxc(ctx: Ctx) -> object:
    node = _node(ctx)
    with ctx.sim.lock:
        cts = [ct for ct in ctx.sim.vms.values() if ct.node == node and ct.type == 'lxc']
    return [_ct_summary(ct) for ct in sorted(cts, key=lambda c: c.vmid)
            if ctx.checker.has(f'/vms/{ct.vmid}', ['VM.Audit'])]


def _validate_ssh_keys(text: str) -> None:
    """PVE::Tools::validate_ssh_public_keys: every non-empty line must be a public key."""
    for line in text.split('\n'):
        if not line.strip():
            continue
        match = _SSH_KEY_RE.fullmatch(line.strip())
        valid = False
        if match:
            try:
                blob = base64.b64decode(match.group(2), validate=True)
                length = struct.unpack('>I', blob[:4])[0]
                valid = blob[4:4 + length].decode() == match.group(1)
            except (ValueError, struct.error, UnicodeDecodeError):
                valid = False
        if not valid:
            raise ApiError(500, 'SSH public key validation error')


def _check_ct_vnet(ctx: Ctx, raw_net: str) -> None:
    """check_bridge_access -> PVE::GuestHelpers::check_vnet_access, as for VMs."""
    net, dummy = parse_property_string(raw_net, LXC_NET)
    bridge = net.get('bridge')
    if not bridge:
        return
    path = f'/sdn/zones/{ctx.sim.sdn_zone}/{bridge}'
    tags = {int(part) for part in str(net.get('trunks') or '').split(';') if part.strip()}
    if net.get('tag'):
        _perm(ctx, f"{path}/{net['tag']}", ['SDN.Use'])
    for tag in sorted(tags):
        _perm(ctx, f'{path}/{tag}', ['SDN.Use'])
    if not net.get('tag') and not tags:
        _perm(ctx, path, ['SDN.Use'])


def _check_ct_modify_perms(ctx: Ctx, vmid: int, pool: object, old: dict | None, new: dict[str, object],
                           deletes: list[str], unprivileged: bool) -> None:
    """PVE::LXC::check_ct_modify_config_perm, option by option (sorted: Perl's hash order is random)."""
    if ctx.authid == 'root@pam':
        return

    def need(privs: list[str]) -> None:
        _vm_perm(ctx, vmid, pool, privs)

    for opt, deleting in [(k, False) for k in sorted(new)] + [(k, True) for k in deletes]:
        if opt in ('cores', 'cpuunits', 'cpulimit'):
            need(['VM.Config.CPU'])
        elif opt == 'rootfs' or re.fullmatch(r'mp\d+', opt):
            need(['VM.Config.Disk'])
            if deleting:
                continue
            mount, dummy = parse_property_string(str(new[opt]), MOUNTPOINT if opt != 'rootfs' else ROOTFS)
            volid = str(mount.get('volume', ''))
            if volid.startswith('/'):
                kind = 'device' if volid.startswith('/dev/') else 'bind'
                raise PermissionDenied(f'Permission check failed (mount point type {kind} is only allowed for root@pam)')
            match = NEW_VOLUME_RE.fullmatch(volid)
            if match:
                if match.group(1):
                    _perm(ctx, f'/storage/{match.group(1)}', ['Datastore.AllocateSpace'])
            else:
                try:
                    storeid, content, dummy_name, owner, dummy_path = ctx.sim.parse_volid(volid)
                except ValueError:
                    raise ApiError(500, 'Only root can pass arbitrary filesystem paths.') from None
                _check_volume_access(ctx, storeid, content, owner, vmid)
        elif opt in ('memory', 'swap'):
            need(['VM.Config.Memory'])
        elif re.fullmatch(r'net\d+', opt):
            need(['VM.Config.Network'])
            if (old or {}).get(opt):
                _check_ct_vnet(ctx, str(old[opt]))
            if not deleting and new.get(opt):
                _check_ct_vnet(ctx, str(new[opt]))
        elif re.fullmatch(r'dev\d+', opt):
            raise PermissionDenied('Permission check failed (configuring device passthrough is only allowed for root@pam)')
        elif opt in ('nameserver', 'searchdomain', 'hostname'):
            need(['VM.Config.Network'])
        elif opt == 'features':
            if not unprivileged:
                raise PermissionDenied('Permission check failed (changing feature flags for privileged container '
                                       'is only allowed for root@pam)')
            nesting_changed = other_changed = False
            if not deleting and (old or {}).get('features'):
                # an existing container with features: each flag compared as written
                wanted = parse_property_string(str(new[opt]), FEATURES)[0]
                before = parse_property_string(str(old['features']), FEATURES)[0]
                for flag in sorted(set(before) | set(wanted)):
                    if str(before.get(flag, '')) != str(wanted.get(flag, '')):
                        if flag == 'nesting':
                            nesting_changed = True
                        else:
                            other_changed = True
            else:
                # a new container, one without features, or the features deleted: only a lone
                # nesting=1 is not root's business
                flags = parse_property_string(str((old or {}).get('features', '') if deleting else new[opt]),
                                              FEATURES)[0]
                if len(flags) == 1 and flags.get('nesting'):
                    nesting_changed = True
                elif flags:
                    other_changed = True
            if other_changed:
                raise PermissionDenied('Permission check failed (changing feature flags (except nesting) is only '
                                       'allowed for root@pam)')
            if nesting_changed:
                need(['VM.Allocate'])
        elif opt == 'hookscript':
            raise PermissionDenied('Permission check failed (changing the hookscript is only allowed for root@pam)')
        elif opt == 'tags':
            # PVE::GuestHelpers::assert_tag_permissions: VM.Config.Options on the guest itself
            # (not the pool); with the default free-form tag access no tag needs more
            _perm(ctx, f'/vms/{vmid}', ['VM.Config.Options'])
        else:
            need(['VM.Config.Options'])


def _ct_storage(ctx: Ctx, storeid: str) -> None:
    """$check_and_activate_storage in LXC.pm's create_vm."""
    store = ctx.sim.storage(storeid)
    if 'rootdir' not in store['content']:
        raise param_error({'storage': f"storage '{storeid}' does not support container directories"})
    _perm(ctx, f'/storage/{storeid}', ['Datastore.AllocateSpace'])


def _ct_disk_name(sim: Simulator, storeid: str, vmid: int, taken: set[str]) -> str:
    ext = '.raw' if _file_based(sim.storage(storeid)) else ''
    index = 0
    while True:
        name = f'vm-{vmid}-disk-{index}{ext}'
        if name not in taken and not os.path.exists(sim.volume_path(storeid, 'images', name, vmid)):
            taken.add(name)
            return name
        index += 1


def _print_mount(mount: dict[str, object], key: str = 'volume') -> str:
    return ','.join([str(mount[key])] + [f'{k}={mount[k]}' for k in sorted(mount) if k != key])


def _ct_allocate(sim: Simulator, vmid: int, key: str, raw_value: str, task: Task | None, taken: set[str]) -> str:
    """A new 'STORAGE:SIZE_GiB' mount point becomes a volume; anything else is kept as given."""
    mount, dummy = parse_property_string(raw_value, MOUNTPOINT if key != 'rootfs' else ROOTFS)
    match = NEW_VOLUME_RE.fullmatch(str(mount['volume']))
    if not match:
        return _print_mount(mount)
    storeid = match.group(1)
    size = int(float(match.group(2)) * (1 << 30))
    store = sim.storage(storeid)
    if sim.storage_usage(storeid) + size > int(store['total']):
        raise TaskError(f"unable to create image: not enough free space on storage '{storeid}'")
    name = _ct_disk_name(sim, storeid, vmid, taken)
    path = sim.volume_path(storeid, 'images', name, vmid)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as handle:
        handle.truncate(size)
    volid = sim.volid_for(storeid, 'images', name, vmid)
    if task:
        task.write(f"Formatting '{path}', fmt=raw size={size}")
    mount['volume'] = volid
    mount['size'] = format_size(size)
    return _print_mount(mount)


def _print_ct_net(net: dict[str, object]) -> str:
    net.setdefault('hwaddr', _random_mac())
    net.setdefault('type', 'veth')
    return ','.join([f"name={net['name']}"] + [f'{k}={net[k]}' for k in sorted(net) if k != 'name'])


def _ct_settings(settings: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in settings.items():
        decl = declared(LXC_CONFIG_PARAMS, key)
        if re.fullmatch(r'net\d+', key):
            net, dummy = parse_property_string(str(value), LXC_NET)
            out[key] = _print_ct_net(net)
        elif decl is not None and decl.type == 'boolean':
            out[key] = int(value)
        else:
            out[key] = value
    return out


def create_lxc(ctx: Ctx) -> object:
    sim = ctx.sim
    node = _node(ctx)
    vmid = int(ctx.params['vmid'])
    params = dict(ctx.params)
    restore, force = _bool(params.get('restore', 0)), _bool(params.get('force', 0))
    # PVE 9: containers are unprivileged unless asked otherwise; a privileged one is as good as
    # root on the host, so it takes Sys.Modify on / (checked before anything else)
    unprivileged = bool(_bool(params.get('unprivileged', 1)))
    if not unprivileged and not restore:
        _perm(ctx, '/', ['Sys.Modify'])
    with sim.lock:
        existing = sim.vms.get(vmid)
    if existing is not None and not (restore and force and existing.type == 'lxc'):
        # PVE::Cluster::check_vmid_unused, first thing in create_vm
        raise ApiError(500, f"{existing.kind} {vmid} already exists on node '{existing.node}'")
    if restore:
        raise ApiError(500, 'restoring a backup is not simulated')
    if params.get('ssh-public-keys') is not None:
        _validate_ssh_keys(str(params['ssh-public-keys']))
    pool = params.get('pool')
    if pool is not None and pool not in sim.pools:
        raise PermissionDenied(f"Permission check failed (pool '{pool}' does not exist)")
    if not ctx.checker.has(f'/vms/{vmid}', ['VM.Allocate']) and not (
            pool and ctx.checker.has(f'/pool/{pool}', ['VM.Allocate'])):
        raise PermissionDenied('Permission check failed')
    storage = str(params.get('storage') or 'local')
    settings = {k: v for k, v in params.items() if k not in _LXC_CREATE_ONLY}
    _check_ct_modify_perms(ctx, vmid, pool, None, settings, [], unprivileged)
    ostemplate = str(params['ostemplate'])
    if ostemplate == '-':
        raise ApiError(500, 'pipe requires cli environment')
    try:
        tmpl_store, tmpl_content, tmpl_name, tmpl_owner, tmpl_path = sim.parse_volid(ostemplate)
    except ValueError:
        if ctx.authid != 'root@pam':
            raise ApiError(500, 'Only root can pass arbitrary filesystem paths.') from None
        raise ApiError(500, f"unable to parse volume ID '{ostemplate}'") from None
    if ctx.authid != 'root@pam':
        if tmpl_content != 'vztmpl':
            raise ApiError(500, f"unable to use volume {ostemplate} - content type needs to be 'vztmpl'")
        _check_volume_access(ctx, tmpl_store, tmpl_content, tmpl_owner, vmid)
    for key in [k for k in settings if re.fullmatch(r'unused\d+', k)]:
        del settings[key]  # "ignoring 'unusedN', cannot create/restore with unused volume"
    mounts = sorted(k for k in settings if k == 'rootfs' or re.fullmatch(r'mp\d+', k))
    if mounts and 'rootfs' not in mounts:
        raise ApiError(500, "mount points configured, but 'rootfs' not set - aborting")
    for key in mounts:
        if re.fullmatch(r'\d+(?:\.\d+)?', str(settings[key])):
            settings[key] = f'{storage}:{settings[key]}'  # a bare size: on 'storage'
        mount, dummy = parse_property_string(str(settings[key]), MOUNTPOINT if key != 'rootfs' else ROOTFS)
        volid = str(mount['volume'])
        if volid.startswith('/'):
            if ctx.authid != 'root@pam':
                raise ApiError(500, 'Only root can pass arbitrary filesystem paths.')
            continue
        match = NEW_VOLUME_RE.fullmatch(volid)
        storeid = (match.group(1) or storage) if match else volid.split(':', 1)[0]
        if match and not match.group(1):
            settings[key] = _print_mount({**mount, 'volume': f'{storeid}:{match.group(2)}'})
        _ct_storage(ctx, storeid)
    if 'rootfs' not in settings:
        _ct_storage(ctx, storage)
        settings['rootfs'] = f'{storage}:4'  # the API's default: 4 GiB on 'storage'
    start = bool(_bool(params.get('start', 0)))
    settings = _ct_settings(settings)
    with sim.lock:
        if vmid in sim.vms:  # create_and_lock_config
            raise ApiError(500, f"unable to create CT {vmid} - {sim.vms[vmid].kind} {vmid} already exists on node "
                                f"'{sim.vms[vmid].node}'")
        ct = VM(vmid, node, {}, pool=pool, type='lxc')
        ct.lock = 'create'
        sim.vms[vmid] = ct
        sim.set_pool(vmid, pool)

    def work(task: Task) -> None:
        if not os.path.isfile(tmpl_path):  # PVE::Storage::abs_filesystem_path
            raise TaskError(f"unable to create CT {vmid} - can't find file '{ostemplate}'")
        taken: set[str] = set()
        config: dict[str, object] = {}
        for key, value in settings.items():
            config[key] = _ct_allocate(sim, vmid, key, str(value), task, taken) \
                if key == 'rootfs' or re.fullmatch(r'mp\d+', key) else value
        task.write(f"extracting archive '{tmpl_path}'")
        task.write(f'Total bytes read: {os.path.getsize(tmpl_path)}')
        config.setdefault('arch', 'amd64')
        task.write(f"Detected container architecture: {config['arch']}")
        if 'ostype' not in config:
            # the real server reads the distribution from the extracted tree; the template name
            # carries it for the appliance index's templates
            config['ostype'] = next((os_ for os_ in _OSTYPES if tmpl_name.startswith(os_)), 'unmanaged')
        if unprivileged:
            config['unprivileged'] = 1
        # the defaults create_vm sets
        config.setdefault('hostname', f'CT{vmid}')
        config.setdefault('memory', 512)
        config.setdefault('swap', 512)
        if params.get('ssh-public-keys'):
            task.write('Installing SSH public keys for root')
        task.write("Creating SSH host key 'ssh_host_ed25519_key' - this may take some time ...")
        with sim.lock:
            ct.config = config
            ct.lock = None
        if start:
            _ct_do_start(sim, ct, task)

    def cleanup() -> None:
        with sim.lock:
            if sim.vms.get(vmid) is ct and ct.lock == 'create':
                sim.vms.pop(vmid, None)
                sim.set_pool(vmid, None)
                _remove_vm_files(sim, vmid)
    return sim.start_task(node, 'vzcreate', str(vmid), ctx.authid, work, cleanup)


def get_ct_index(ctx: Ctx) -> object:
    _ct_for(ctx)
    return [{'subdir': name} for name in ('config', 'pending', 'status', 'vncproxy', 'termproxy', 'vncwebsocket',
                                          'spiceproxy', 'migrate', 'clone', 'rrd', 'rrddata', 'firewall', 'snapshot',
                                          'resize', 'interfaces')]


def get_ct_config(ctx: Ctx) -> object:
    ct = _ct_for(ctx)
    with ctx.sim.lock:
        config = dict(ct.config)
        lock = ct.lock
    out: dict[str, object] = {}
    for key, value in config.items():
        decl = declared(LXC_CONFIG_PARAMS, key)
        if decl is not None and decl.type in ('integer', 'boolean'):
            out[key] = int(value)
        elif decl is not None and decl.type == 'number':
            number = float(value)
            out[key] = int(number) if number.is_integer() else number
        elif key == 'description':
            # kept as comment lines in the config file: each line comes back with its newline
            lines = str(value).split('\n')
            while lines and lines[-1] == '':
                lines.pop()
            out[key] = ''.join(f'{line}\n' for line in lines)
        else:
            out[key] = str(value)
    if lock:
        out['lock'] = lock
    out['digest'] = _digest(config)
    return out


def put_ct_config(ctx: Ctx) -> object:
    sim = ctx.sim
    ct = _ct_for(ctx)
    vmid = ct.vmid
    settings = {k: v for k, v in ctx.params.items() if k not in ('node', 'vmid', 'digest', 'delete', 'revert')}
    deletes = [k for k in re.split(r'[,;\s]+', str(ctx.params.get('delete') or '')) if k]
    if not deletes and not settings and not ctx.params.get('revert'):
        raise ApiError(500, 'no options specified')
    with sim.lock:
        if ct.lock:
            raise ApiError(500, f'CT is locked ({ct.lock})')
        digest = ctx.params.get('digest')
        if digest and digest != _digest(ct.config):
            raise ApiError(500, 'detected modified configuration - file changed by other user? Try again.')
        old = dict(ct.config)
    unprivileged = str(old.get('unprivileged', 0)) == '1'
    # the order of API2/LXC/Config.pm update_vm: the deletions' privileges, then their names,
    # then the new values' privileges
    _check_ct_modify_perms(ctx, vmid, None, old, {}, deletes, unprivileged)
    for key in deletes:
        if declared(LXC_CONFIG_PARAMS, key) is None:
            raise param_error({'delete': f"unknown option '{key}'"})
        if key in settings:
            raise param_error({'delete': f"you can't use '-{key}' and -delete {key}' at the same time"})
    _check_ct_modify_perms(ctx, vmid, None, old, settings, [], unprivileged)
    for key in sorted(set(settings) | set(deletes)):
        if key == 'unprivileged' and key in settings:  # update_pct_config: whatever the value
            raise ApiError(500, f"unable to modify read-only option: '{key}'")
        if key == 'rootfs' and key in deletes:
            raise ApiError(500, "unable to delete required option 'rootfs'")
    settings = _ct_settings(settings)
    taken: set[str] = set()
    try:
        allocated = {key: _ct_allocate(sim, vmid, key, str(value), None, taken)
                     for key, value in settings.items() if re.fullmatch(r'mp\d+', key) and key not in old}
    except TaskError as exc:
        raise ApiError(500, str(exc)) from None
    with sim.lock:
        for key in deletes:
            value = ct.config.pop(key, None)
            if value is not None and re.fullmatch(r'mp\d+', key):
                mount, dummy = parse_property_string(str(value), MOUNTPOINT)
                index = next(i for i in range(256) if f'unused{i}' not in ct.config)
                ct.config[f'unused{index}'] = mount['volume']
        for key, value in settings.items():
            ct.config[key] = allocated.get(key, value)
    return None


def get_ct_status(ctx: Ctx) -> object:
    ct = _ct_for(ctx)
    entry = _ct_summary(ct)
    entry['ha'] = {'managed': 0}
    return entry


def _ct_do_start(sim: Simulator, ct: VM, task: Task) -> None:
    with sim.lock:
        config = dict(ct.config)
    for key, value in sorted(config.items()):
        if re.fullmatch(r'net\d+', key):
            net, dummy = parse_property_string(str(value), LXC_NET)
            if net.get('bridge') and net['bridge'] not in sim.bridges:
                raise TaskError(f"bridge '{net['bridge']}' does not exist")
        if key == 'rootfs' or re.fullmatch(r'mp\d+', key):
            mount, dummy = parse_property_string(str(value), MOUNTPOINT if key != 'rootfs' else ROOTFS)
            volid = str(mount.get('volume', ''))
            if ':' in volid:
                try:
                    dummy_s, dummy_c, dummy_n, dummy_o, path = sim.parse_volid(volid)
                except (ValueError, ApiError):
                    continue
                if not os.path.exists(path):
                    raise TaskError(f"volume '{volid}' does not exist")
    with sim.lock:
        sim.mark_running(ct)
    task.write(f'CT {ct.vmid} started')


def _ct_running_guard(ct: VM) -> None:
    if ct.status != 'running':
        raise ApiError(500, f'CT {ct.vmid} not running')


def ct_start(ctx: Ctx) -> object:
    ct = _ct_for(ctx)
    if ctx.params.get('skiplock') and ctx.authid != 'root@pam':
        raise param_error({'skiplock': 'Only root may use this option.'})
    if ct.status == 'running':
        raise ApiError(500, f'CT {ct.vmid} already running')
    skiplock = bool(ctx.params.get('skiplock'))

    def work(task: Task) -> None:
        # pve-container checks these in the worker (API2/LXC/Status.pm), so they fail the task
        if ct.template:
            raise TaskError("you can't start a CT if it's a template")
        if ct.lock and not skiplock and ct.lock != 'mounted':
            raise TaskError(f'CT is locked ({ct.lock})')
        if str(ct.config.get('unprivileged', 0)) == '1':
            for key in sorted(k for k in ct.config if k == 'rootfs' or re.fullmatch(r'mp\d+', k)):
                mount, dummy = parse_property_string(str(ct.config[key]), MOUNTPOINT if key != 'rootfs' else ROOTFS)
                if mount.get('quota'):
                    raise TaskError('Quotas are not supported by unprivileged containers.')
        _ct_do_start(ctx.sim, ct, task)
    return ctx.sim.start_task(_node(ctx), 'vzstart', str(ct.vmid), ctx.authid, work)


def _ct_stop_work(sim: Simulator, ct: VM, skiplock: bool) -> Callable[[Task], None]:
    def work(task: Task) -> None:
        if ct.lock and not skiplock and ct.lock != 'mounted':
            raise TaskError(f'CT is locked ({ct.lock})')
        _do_stop(sim, ct, task)
    return work


def ct_stop(ctx: Ctx) -> object:
    ct = _ct_for(ctx)
    if ctx.params.get('skiplock') and ctx.authid != 'root@pam':
        raise param_error({'skiplock': 'Only root may use this option.'})
    _ct_running_guard(ct)
    return ctx.sim.start_task(_node(ctx), 'vzstop', str(ct.vmid), ctx.authid,
                              _ct_stop_work(ctx.sim, ct, bool(ctx.params.get('skiplock'))))


def ct_shutdown(ctx: Ctx) -> object:
    ct = _ct_for(ctx)
    _ct_running_guard(ct)
    return ctx.sim.start_task(_node(ctx), 'vzshutdown', str(ct.vmid), ctx.authid, _ct_stop_work(ctx.sim, ct, False))


def ct_reboot(ctx: Ctx) -> object:
    ct = _ct_for(ctx)
    if ct.status != 'running':
        raise ApiError(500, f'VM {ct.vmid} not running')  # sic: the reboot endpoint says VM

    def work(task: Task) -> None:
        _do_stop(ctx.sim, ct, task)
        _ct_do_start(ctx.sim, ct, task)
    return ctx.sim.start_task(_node(ctx), 'vzreboot', str(ct.vmid), ctx.authid, work)


def ct_delete(ctx: Ctx) -> object:
    sim = ctx.sim
    ct = _ct_for(ctx)
    if str(ct.config.get('protection', 0)) == '1':
        raise ApiError(500, f"can't remove CT {ct.vmid} - protection mode enabled")
    if ct.lock:
        raise ApiError(500, f'CT is locked ({ct.lock})')
    force = bool(_bool(ctx.params.get('force', 0)))
    if ct.status == 'running' and not force:
        raise ApiError(500, f'unable to destroy CT {ct.vmid} - container is running')
    with sim.lock:
        ct.lock = 'destroyed'

    def work(task: Task) -> None:
        if ct.status == 'running':
            _do_stop(sim, ct, task)
        _remove_vm_files(sim, ct.vmid)
        with sim.lock:
            sim.vms.pop(ct.vmid, None)
            sim.set_pool(ct.vmid, None)
        task.write(f'Removed CT {ct.vmid}')

    def cleanup() -> None:
        with sim.lock:
            ct.lock = None
    return sim.start_task(_node(ctx), 'vzdestroy', str(ct.vmid), ctx.authid, work, cleanup)


def ct_resize(ctx: Ctx) -> object:
    sim = ctx.sim
    ct = _ct_for(ctx)
    disk = str(ctx.params['disk'])
    text = str(ctx.params['size'])
    digest = ctx.params.get('digest')
    if digest and digest != _digest(ct.config):
        raise ApiError(500, 'detected modified configuration - file changed by other user? Try again.')
    if ct.lock:
        raise ApiError(500, f'CT is locked ({ct.lock})')
    if disk not in ct.config:
        raise ApiError(500, f"disk '{disk}' does not exist")
    mount, dummy = parse_property_string(str(ct.config[disk]), MOUNTPOINT if disk != 'rootfs' else ROOTFS)
    volid = str(mount['volume'])
    try:
        storeid, dummy_content, dummy_name, dummy_owner, path = sim.parse_volid(volid)
    except ValueError:
        raise ApiError(500, f"{disk}: resizing a bind mount point is not possible") from None
    _perm(ctx, f'/storage/{storeid}', ['Datastore.AllocateSpace'])
    current = os.path.getsize(path) if os.path.exists(path) else 0
    grow = text.startswith('+')
    amount = parse_size(text.lstrip('+'))
    new_size = current + amount if grow else amount
    if new_size < current:
        raise ApiError(500, 'unable to shrink disk size')

    def work(task: Task) -> None:
        with open(path, 'r+b') as handle:
            handle.truncate(new_size)
        mount['size'] = format_size(new_size)
        with sim.lock:
            ct.config[disk] = _print_mount(mount)
        task.write(f"Size of logical volume changed to {format_size(new_size)}.")
    return sim.start_task(_node(ctx), 'resize', str(ct.vmid), ctx.authid, work)


def get_ct_interfaces(ctx: Ctx) -> object:
    """PVE::LXC::get_interfaces: from the running container's network namespace; nothing when stopped."""
    ct = _ct_for(ctx)
    if ct.status != 'running':
        return None
    out = [{'name': 'lo', 'hwaddr': '00:00:00:00:00:00', 'hardware-address': '00:00:00:00:00:00',
            'inet': '127.0.0.1/8', 'inet6': '::1/128',
            'ip-addresses': [{'ip-address': '127.0.0.1', 'ip-address-type': 'inet', 'prefix': 8},
                             {'ip-address': '::1', 'ip-address-type': 'inet6', 'prefix': 128}]}]
    for key in sorted((k for k in ct.config if re.fullmatch(r'net\d+', k)), key=lambda k: int(k[3:])):
        net, dummy = parse_property_string(str(ct.config[key]), LXC_NET)
        mac = str(net.get('hwaddr', '')).lower()
        parts = mac.split(':')
        link_local = f'fe80::{int(parts[0], 16) ^ 2:x}{parts[1]}:{parts[2]}ff:fe{parts[3]}:{parts[4]}{parts[5]}'
        entry: dict[str, object] = {'name': str(net['name']), 'hwaddr': mac, 'hardware-address': mac,
                                    'ip-addresses': []}
        addresses = entry['ip-addresses']
        ip = str(net.get('ip') or '')
        if ip == 'dhcp':
            with ctx.sim.lock:
                if ct.vmid not in ctx.sim.ip_leases:
                    ctx.sim.ip_leases[ct.vmid] = f"{ctx.sim.settings['dhcp_prefix']}{100 + len(ctx.sim.ip_leases) % 150}"
                ip = f'{ctx.sim.ip_leases[ct.vmid]}/24'
        if '/' in ip:
            address, prefix = ip.split('/', 1)
            entry['inet'] = ip
            addresses.append({'ip-address': address, 'ip-address-type': 'inet', 'prefix': int(prefix)})
        entry['inet6'] = f'{link_local}/64'
        addresses.append({'ip-address': link_local, 'ip-address-type': 'inet6', 'prefix': 64})
        out.append(entry)
    return out


def _snapshot_list(vm: VM) -> list:
    return [{'name': 'current', 'description': 'You are here!', 'digest': _digest(vm.config),
             'running': 1 if vm.status == 'running' else 0}]


def get_ct_snapshots(ctx: Ctx) -> object:
    return _snapshot_list(_ct_for(ctx))


def get_vm_snapshots(ctx: Ctx) -> object:
    return _snapshot_list(_vm_for(ctx))


# ---------------------------------------------------------------------------------------------
# the route table
_SP = {'node': NODE, 'storage': STORAGE}
_TP = {'node': NODE, 'upid': S(optional=False)}
_CONFIG_ANY = ['perm', '/vms/{vmid}', ['VM.Config.Disk', 'VM.Config.CDROM', 'VM.Config.CPU', 'VM.Config.Memory',
                                       'VM.Config.Network', 'VM.Config.HWType', 'VM.Config.Options',
                                       'VM.Config.Cloudinit'], 'any', 1]
_NET_ACCESS = ['or', ['perm', '/', ['Sys.Audit', 'Sys.Modify']], ['perm', '/nodes/{node}', ['Sys.AccessNetwork']]]

ROUTES: list[Route] = [
    Route('GET', '/version', get_version, {}, node_proxy=False),
    Route('GET', '/access/permissions', get_permissions, {'path': S(), 'userid': S()}, node_proxy=False),
    Route('GET', '/nodes', get_nodes, {}, node_proxy=False),
    Route('GET', '/nodes/{node}/status', get_node_status, {'node': NODE}, ['perm', '/nodes/{node}', ['Sys.Audit']]),
    Route('GET', '/cluster/resources', get_cluster_resources,
          {'type': S(enum=('vm', 'storage', 'node', 'sdn'))}, node_proxy=False),
    Route('GET', '/pools', get_pools,
          {'poolid': S(pattern=r'[A-Za-z0-9\-_]+'), 'type': S(enum=('qemu', 'lxc', 'storage'), requires='poolid')},
          node_proxy=False),
    Route('GET', '/pools/{poolid}', get_pool,
          {'poolid': S(optional=False), 'type': S(enum=('qemu', 'lxc', 'storage'))},
          ['perm', '/pool/{poolid}', ['Pool.Audit']], node_proxy=False),
    Route('GET', '/cluster/nextid', get_nextid, {'vmid': Int(minimum=100, maximum=999999999)}, node_proxy=False),
    Route('GET', '/nodes/{node}/network', get_network,
          {'node': NODE, 'type': S(enum=('bridge', 'bond', 'eth', 'alias', 'vlan', 'fabric', 'OVSBridge', 'OVSBond',
                                         'OVSPort', 'OVSIntPort', 'vnet', 'any_bridge', 'any_local_bridge',
                                         'include_sdn'))}),
    Route('GET', '/cluster/mapping/pci', get_pci_mappings, {'check-node': S()}, node_proxy=False),
    Route('GET', '/storage', get_storage_config_list,
          {'type': S(enum=('btrfs', 'cephfs', 'cifs', 'dir', 'esxi', 'iscsi', 'iscsidirect', 'lvm', 'lvmthin',
                           'nfs', 'pbs', 'rbd', 'zfs', 'zfspool'))}, node_proxy=False),
    Route('GET', '/nodes/{node}/storage', get_node_storage,
          {'node': NODE, 'content': S(), 'enabled': B(), 'format': B(), 'storage': S(pattern=STORAGE.pattern),
           'target': S()}),
    Route('GET', '/nodes/{node}/storage/{storage}/status', get_storage_status, dict(_SP),
          ['perm', '/storage/{storage}', ['Datastore.Audit', 'Datastore.AllocateSpace'], 'any', 1]),
    Route('GET', '/nodes/{node}/storage/{storage}/content', get_storage_content,
          {**_SP, 'content': S(), 'vmid': Int(minimum=100, maximum=999999999)},
          ['perm', '/storage/{storage}', ['Datastore.Audit', 'Datastore.AllocateSpace'], 'any', 1]),
    Route('GET', '/nodes/{node}/storage/{storage}/content/{volume}', get_volume,
          {'node': NODE, 'storage': S(pattern=STORAGE.pattern), 'volume': S(optional=False)}),
    Route('DELETE', '/nodes/{node}/storage/{storage}/content/{volume}', delete_volume,
          {'node': NODE, 'storage': S(pattern=STORAGE.pattern), 'volume': S(optional=False),
           'delay': Int(minimum=1, maximum=30)}),
    Route('GET', '/nodes/{node}/query-url-metadata', get_url_metadata,
          {'node': NODE, 'url': S(optional=False, pattern=r'https?://.*'), 'verify-certificates': B()}, _NET_ACCESS),
    Route('POST', '/nodes/{node}/storage/{storage}/download-url', post_download_url,
          {**_SP, 'url': S(optional=False, pattern=r'https?://.*'), 'content': CONTENT_DL,
           'filename': S(optional=False, max_length=255), 'checksum': S(requires='checksum-algorithm'),
           'checksum-algorithm': S(enum=CHECKSUM_ALGOS, requires='checksum'), 'compression': S(),
           'verify-certificates': B()},
          ['and', ['perm', '/storage/{storage}', ['Datastore.AllocateTemplate']], _NET_ACCESS]),
    Route('POST', '/nodes/{node}/storage/{storage}/upload', post_upload,
          {**_SP, 'content': CONTENT_DL, 'filename': S(optional=False, max_length=255),
           'checksum': S(requires='checksum-algorithm'),
           'checksum-algorithm': S(enum=CHECKSUM_ALGOS, requires='checksum'),
           'tmpfilename': S(pattern=r'/var/tmp/pveupload-[0-9a-f]+')},
          ['perm', '/storage/{storage}', ['Datastore.AllocateTemplate']], node_proxy=False, multipart=True),
    Route('GET', '/access/users/{userid}/token/{tokenid}', get_token_info,
          {'userid': S(optional=False, max_length=64), 'tokenid': S(optional=False, pattern=r'[A-Za-z][A-Za-z0-9.\-_]+')},
          ['or', ['userid-param', 'self'], ['userid-group', ['User.Modify']]], node_proxy=False),
    Route('GET', '/nodes/{node}/tasks', list_tasks,
          {'node': NODE, 'errors': B(), 'limit': Int(minimum=0), 'since': Int(), 'until': Int(),
           'source': S(enum=('archive', 'active', 'all')), 'start': Int(minimum=0), 'statusfilter': S(),
           'typefilter': S(), 'userfilter': S(), 'vmid': Int(minimum=100, maximum=999999999)}),
    Route('GET', '/nodes/{node}/tasks/{upid}', get_task_index, dict(_TP), node_proxy=False),
    Route('GET', '/nodes/{node}/tasks/{upid}/status', get_task_status, dict(_TP)),
    Route('GET', '/nodes/{node}/tasks/{upid}/log', get_task_log,
          {**_TP, 'start': Int(minimum=0), 'limit': Int(minimum=0), 'download': B()}),
    Route('DELETE', '/nodes/{node}/tasks/{upid}', delete_task, dict(_TP)),
    Route('GET', '/nodes/{node}/qemu', list_qemu, {'node': NODE, 'full': B()}),
    Route('POST', '/nodes/{node}/qemu', create_qemu,
          {**_VMP, **VM_CONFIG_PARAMS, 'pool': S(), 'start': B(), 'storage': S(pattern=STORAGE.pattern),
           'template': B()}),
    Route('GET', '/nodes/{node}/qemu/{vmid}', get_vm_index, dict(_VMP)),
    Route('DELETE', '/nodes/{node}/qemu/{vmid}', vm_delete,
          {**_VMP, 'purge': B(), 'skiplock': B(), 'destroy-unreferenced-disks': B()},
          ['perm', '/vms/{vmid}', ['VM.Allocate']]),
    Route('GET', '/nodes/{node}/qemu/{vmid}/config', get_vm_config,
          {**_VMP, 'current': B(), 'snapshot': S()}, ['perm', '/vms/{vmid}', ['VM.Audit']]),
    Route('POST', '/nodes/{node}/qemu/{vmid}/config', post_vm_config,
          {**_VMP, **VM_CONFIG_PARAMS, 'delete': S(), 'digest': S(max_length=64), 'skiplock': B(),
           'background_delay': Int(minimum=1, maximum=30)}, _CONFIG_ANY),
    Route('PUT', '/nodes/{node}/qemu/{vmid}/config', put_vm_config,
          {**_VMP, **VM_CONFIG_PARAMS, 'delete': S(), 'digest': S(max_length=64), 'skiplock': B()}, _CONFIG_ANY),
    Route('GET', '/nodes/{node}/qemu/{vmid}/status/current', get_vm_status, dict(_VMP),
          ['perm', '/vms/{vmid}', ['VM.Audit']]),
    Route('POST', '/nodes/{node}/qemu/{vmid}/status/start', vm_start,
          {**_VMP, 'skiplock': B(), 'timeout': Int(minimum=0)}, ['perm', '/vms/{vmid}', ['VM.PowerMgmt']]),
    Route('POST', '/nodes/{node}/qemu/{vmid}/status/stop', vm_stop,
          {**_VMP, 'skiplock': B(), 'timeout': Int(minimum=0), 'overrule-shutdown': B(), 'keepActive': B()},
          ['perm', '/vms/{vmid}', ['VM.PowerMgmt']]),
    Route('POST', '/nodes/{node}/qemu/{vmid}/status/shutdown', vm_shutdown,
          {**_VMP, 'skiplock': B(), 'timeout': Int(minimum=0), 'forceStop': B(), 'keepActive': B()},
          ['perm', '/vms/{vmid}', ['VM.PowerMgmt']]),
    Route('POST', '/nodes/{node}/qemu/{vmid}/status/reboot', vm_reboot, {**_VMP, 'timeout': Int(minimum=0)},
          ['perm', '/vms/{vmid}', ['VM.PowerMgmt']]),
    Route('PUT', '/nodes/{node}/qemu/{vmid}/resize', vm_resize,
          {**_VMP, 'disk': S(optional=False), 'size': S(optional=False, pattern=r'\+?\d+(\.\d+)?[KMGT]?'),
           'digest': S(max_length=64), 'skiplock': B()}, ['perm', '/vms/{vmid}', ['VM.Config.Disk']]),
    Route('POST', '/nodes/{node}/qemu/{vmid}/clone', vm_clone,
          {**_VMP, 'newid': VMID, 'name': S(), 'description': S(), 'full': B(), 'pool': S(),
           'storage': S(pattern=STORAGE.pattern), 'target': S(), 'format': S(enum=('raw', 'qcow2', 'vmdk')),
           'snapname': S(), 'bwlimit': Int(minimum=0)},
          ['and', ['perm', '/vms/{vmid}', ['VM.Clone']],
           ['or', ['perm', '/vms/{newid}', ['VM.Allocate']],
            ['perm', '/pool/{pool}', ['VM.Allocate'], 'require_param', 'pool']]]),
    Route('POST', '/nodes/{node}/qemu/{vmid}/template', vm_template, {**_VMP, 'disk': S()},
          ['perm', '/vms/{vmid}', ['VM.Allocate']]),
    Route('POST', '/nodes/{node}/qemu/{vmid}/agent/ping', agent_ping, dict(_VMP),
          ['perm', '/vms/{vmid}', ['VM.GuestAgent.Audit', 'VM.GuestAgent.Unrestricted'], 'any', 1]),
    Route('GET', '/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces', agent_network, dict(_VMP),
          ['perm', '/vms/{vmid}', ['VM.GuestAgent.Audit', 'VM.GuestAgent.Unrestricted'], 'any', 1]),
    Route('GET', '/nodes/{node}/qemu/{vmid}/snapshot', get_vm_snapshots, dict(_VMP),
          ['perm', '/vms/{vmid}', ['VM.Audit']]),
    Route('GET', '/nodes/{node}/lxc', list_lxc, {'node': NODE}),
    Route('POST', '/nodes/{node}/lxc', create_lxc, LXC_CREATE_PARAMS),
    Route('GET', '/nodes/{node}/lxc/{vmid}', get_ct_index, dict(_VMP)),
    Route('DELETE', '/nodes/{node}/lxc/{vmid}', ct_delete,
          {**_VMP, 'destroy-unreferenced-disks': B(), 'force': B(), 'purge': B()},
          ['perm', '/vms/{vmid}', ['VM.Allocate']]),
    Route('GET', '/nodes/{node}/lxc/{vmid}/config', get_ct_config,
          {**_VMP, 'current': B(), 'snapshot': S()}, ['perm', '/vms/{vmid}', ['VM.Audit']]),
    Route('PUT', '/nodes/{node}/lxc/{vmid}/config', put_ct_config,
          {**_VMP, **LXC_CONFIG_PARAMS, 'delete': S(), 'digest': S(max_length=64), 'revert': S()},
          ['perm', '/vms/{vmid}', ['VM.Config.Disk', 'VM.Config.CPU', 'VM.Config.Memory', 'VM.Config.Network',
                                   'VM.Config.Options'], 'any', 1]),
    Route('GET', '/nodes/{node}/lxc/{vmid}/status/current', get_ct_status, dict(_VMP),
          ['perm', '/vms/{vmid}', ['VM.Audit']]),
    Route('POST', '/nodes/{node}/lxc/{vmid}/status/start', ct_start, {**_VMP, 'debug': B(), 'skiplock': B()},
          ['perm', '/vms/{vmid}', ['VM.PowerMgmt']]),
    Route('POST', '/nodes/{node}/lxc/{vmid}/status/stop', ct_stop,
          {**_VMP, 'overrule-shutdown': B(), 'skiplock': B()}, ['perm', '/vms/{vmid}', ['VM.PowerMgmt']]),
    Route('POST', '/nodes/{node}/lxc/{vmid}/status/shutdown', ct_shutdown,
          {**_VMP, 'forceStop': B(), 'timeout': Int(minimum=0)}, ['perm', '/vms/{vmid}', ['VM.PowerMgmt']]),
    Route('POST', '/nodes/{node}/lxc/{vmid}/status/reboot', ct_reboot, {**_VMP, 'timeout': Int(minimum=0)},
          ['perm', '/vms/{vmid}', ['VM.PowerMgmt']]),
    Route('PUT', '/nodes/{node}/lxc/{vmid}/resize', ct_resize,
          {**_VMP, 'disk': S(optional=False, enum=('rootfs', *(f'mp{i}' for i in range(256)))),
           'size': S(optional=False, pattern=r'\+?\d+(\.\d+)?[KMGT]?'), 'digest': S(max_length=64)},
          ['perm', '/vms/{vmid}', ['VM.Config.Disk'], 'any', 1]),
    Route('GET', '/nodes/{node}/lxc/{vmid}/interfaces', get_ct_interfaces, dict(_VMP),
          ['perm', '/vms/{vmid}', ['VM.Audit']]),
    Route('GET', '/nodes/{node}/lxc/{vmid}/snapshot', get_ct_snapshots, dict(_VMP),
          ['perm', '/vms/{vmid}', ['VM.Audit']]),
]


def _compile(path: str) -> re.Pattern:
    # a trailing {volume} takes the rest of the path: clients send volume IDs such as
    # local:iso/x.iso with the slash unencoded
    pattern = re.sub(r'\\\{([a-z_-]+)\\\}',
                     lambda m: f'(?P<{m.group(1)}>.+)' if m.group(1) == 'volume' else f'(?P<{m.group(1)}>[^/]+)',
                     re.escape(path))
    return re.compile(pattern + r'\Z')


COMPILED = [(route, _compile(route.path)) for route in ROUTES]


def find_route(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route, pattern in COMPILED:
        if route.method != method:
            continue
        match = pattern.match(path)
        if match:
            return route, {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
    return None


__all__ = ['ROUTES', 'Route', 'Ctx', 'find_route', 'PermissionDenied', 'ApiError']
