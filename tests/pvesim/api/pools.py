# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Resource pools (PVE::API2::Pool)."""

from __future__ import annotations


from tests.pvesim.api.base import Ctx
from tests.pvesim.api.cluster import resource_entry
from tests.pvesim.state import ApiError


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
        members.append(resource_entry(vm))
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
