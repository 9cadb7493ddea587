# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Version, nodes and their network and PCI mappings."""

from __future__ import annotations

import time

from tests.pvesim.api.base import Ctx, _node
from tests.pvesim.api.qemu import _vm_memory
from tests.pvesim.state import Simulator


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
