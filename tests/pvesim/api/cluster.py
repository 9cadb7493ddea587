# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Cluster-wide reads: resources and the next free VMID."""

from __future__ import annotations


from tests.pvesim.api.base import Ctx
from tests.pvesim.api.lxc import _ct_summary
from tests.pvesim.api.nodes import _node_entry
from tests.pvesim.api.qemu import _vm_summary
from tests.pvesim.state import VM, param_error


def _guest_summary(vm: VM) -> dict:
    return _ct_summary(vm) if vm.type == 'lxc' else _vm_summary(vm)


def resource_entry(vm: VM) -> dict:
    """A guest as /cluster/resources and a pool's members list it."""
    entry = _guest_summary(vm)
    entry.update({'id': f'{vm.type}/{vm.vmid}', 'type': vm.type, 'node': vm.node,
                  'template': 1 if vm.template else 0})
    entry.pop('pid', None)
    entry.pop('maxswap', None)
    entry['maxcpu'] = entry.pop('cpus')
    return entry


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
            entry = resource_entry(vm)
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
