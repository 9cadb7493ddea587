# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The QEMU guest agent: ping and network interfaces."""

from __future__ import annotations

import time

from tests.pvesim.api.base import Ctx
from tests.pvesim.api.qemu import IPCONFIG, NET, _agent_enabled, _vm_for
from tests.pvesim.params import parse_property_string
from tests.pvesim.state import ApiError, Simulator, VM


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
