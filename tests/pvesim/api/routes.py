# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The served API as data: ``ROUTES`` lists every (method, schema path, parameters, permission
check, handler). Tests enumerate it to hold the simulator to the official schema."""

from __future__ import annotations

import re
import urllib.request

from tests.pvesim.api.access import get_permissions, get_token_info
from tests.pvesim.api.agent import agent_network, agent_ping
from tests.pvesim.api.base import CHECKSUM_ALGOS, CONTENT_DL, NODE, Route, STORAGE, VMID, _VMP
from tests.pvesim.api.cluster import get_cluster_resources, get_nextid
from tests.pvesim.api.lxc import (LXC_CONFIG_PARAMS, LXC_CREATE_PARAMS, create_lxc, ct_delete, ct_reboot, ct_resize,
                                  ct_shutdown, ct_start, ct_stop, get_ct_config, get_ct_index, get_ct_interfaces,
                                  get_ct_snapshots, get_ct_status, list_lxc, put_ct_config)
from tests.pvesim.api.nodes import get_network, get_node_status, get_nodes, get_pci_mappings, get_version
from tests.pvesim.api.pools import get_pool, get_pools
from tests.pvesim.api.qemu import (VM_CONFIG_PARAMS, create_qemu, get_vm_config, get_vm_index, get_vm_snapshots,
                                   get_vm_status, list_qemu, post_vm_config, put_vm_config, vm_clone, vm_delete,
                                   vm_reboot, vm_resize, vm_shutdown, vm_start, vm_stop, vm_template)
from tests.pvesim.api.storage import (delete_volume, get_node_storage, get_storage_config_list, get_storage_content,
                                      get_storage_status, get_url_metadata, get_volume, post_download_url,
                                      post_upload)
from tests.pvesim.api.tasks import delete_task, get_task_index, get_task_log, get_task_status, list_tasks
from tests.pvesim.params import B, Int, S


_SP = {'node': NODE, 'storage': STORAGE}
_TP = {'node': NODE, 'upid': S(optional=False)}
_CONFIG_ANY = ['perm', '/vms/{vmid}', ['VM.Config.Disk', 'VM.Config.CDROM', 'VM.Config.CPU', 'VM.Config.Memory',
                                       'VM.Config.Network', 'VM.Config.HWType', 'VM.Config.Options',
                                       'VM.Config.Cloudinit'], 'any', 1]
_VM_AUDIT = ['perm', '/vms/{vmid}', ['VM.Audit']]
_VM_ALLOCATE = ['perm', '/vms/{vmid}', ['VM.Allocate']]
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
          _VM_ALLOCATE),
    Route('GET', '/nodes/{node}/qemu/{vmid}/config', get_vm_config,
          {**_VMP, 'current': B(), 'snapshot': S()}, _VM_AUDIT),
    Route('POST', '/nodes/{node}/qemu/{vmid}/config', post_vm_config,
          {**_VMP, **VM_CONFIG_PARAMS, 'delete': S(), 'digest': S(max_length=64), 'skiplock': B(),
           'background_delay': Int(minimum=1, maximum=30)}, _CONFIG_ANY),
    Route('PUT', '/nodes/{node}/qemu/{vmid}/config', put_vm_config,
          {**_VMP, **VM_CONFIG_PARAMS, 'delete': S(), 'digest': S(max_length=64), 'skiplock': B()}, _CONFIG_ANY),
    Route('GET', '/nodes/{node}/qemu/{vmid}/status/current', get_vm_status, dict(_VMP),
          _VM_AUDIT),
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
          _VM_ALLOCATE),
    Route('POST', '/nodes/{node}/qemu/{vmid}/agent/ping', agent_ping, dict(_VMP),
          ['perm', '/vms/{vmid}', ['VM.GuestAgent.Audit', 'VM.GuestAgent.Unrestricted'], 'any', 1]),
    Route('GET', '/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces', agent_network, dict(_VMP),
          ['perm', '/vms/{vmid}', ['VM.GuestAgent.Audit', 'VM.GuestAgent.Unrestricted'], 'any', 1]),
    Route('GET', '/nodes/{node}/qemu/{vmid}/snapshot', get_vm_snapshots, dict(_VMP),
          _VM_AUDIT),
    Route('GET', '/nodes/{node}/lxc', list_lxc, {'node': NODE}),
    Route('POST', '/nodes/{node}/lxc', create_lxc, LXC_CREATE_PARAMS),
    Route('GET', '/nodes/{node}/lxc/{vmid}', get_ct_index, dict(_VMP)),
    Route('DELETE', '/nodes/{node}/lxc/{vmid}', ct_delete,
          {**_VMP, 'destroy-unreferenced-disks': B(), 'force': B(), 'purge': B()},
          _VM_ALLOCATE),
    Route('GET', '/nodes/{node}/lxc/{vmid}/config', get_ct_config,
          {**_VMP, 'current': B(), 'snapshot': S()}, _VM_AUDIT),
    Route('PUT', '/nodes/{node}/lxc/{vmid}/config', put_ct_config,
          {**_VMP, **LXC_CONFIG_PARAMS, 'delete': S(), 'digest': S(max_length=64), 'revert': S()},
          ['perm', '/vms/{vmid}', ['VM.Config.Disk', 'VM.Config.CPU', 'VM.Config.Memory', 'VM.Config.Network',
                                   'VM.Config.Options'], 'any', 1]),
    Route('GET', '/nodes/{node}/lxc/{vmid}/status/current', get_ct_status, dict(_VMP),
          _VM_AUDIT),
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
          _VM_AUDIT),
    Route('GET', '/nodes/{node}/lxc/{vmid}/snapshot', get_ct_snapshots, dict(_VMP),
          _VM_AUDIT),
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


__all__ = ['COMPILED', 'ROUTES', 'find_route']
