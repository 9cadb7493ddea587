# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""50 concurrent clients (reads plus create/delete cycles) must see zero errors. Timing is
measured by tests/bench/bench_pvesim.py, not asserted here."""

from __future__ import annotations

import pytest

from tests.pvesim.load import run_load


@pytest.mark.slow
def test_fifty_clients_without_an_error(pvesim_fresh):
    tokenid, secret = pvesim_fresh.token('full')
    result = run_load(pvesim_fresh.api_url, pvesim_fresh.ca_path, tokenid, secret, clients=50, seconds=3)
    assert result.errors == []
    assert result.requests > 50
    # every VM created by the load was deleted again, and nothing is left locked
    assert pvesim_fresh.control('vms') == []


def test_large_cluster_resource_listing(pvesim_fresh):
    pvesim_fresh.control('add_vms', count=10000, start=1000)
    tokenid, secret = pvesim_fresh.token('full')
    import requests
    response = requests.get(f'{pvesim_fresh.api_url}/cluster/resources', params={'type': 'vm'}, verify=pvesim_fresh.ca_path,
                            headers={'Authorization': f'PVEAPIToken={tokenid}={secret}'}, timeout=120)
    data = response.json()['data']
    assert len(data) == 10000 and data[0]['id'] == 'qemu/1000' and data[-1]['vmid'] == 10999
    # the noacl token sees none of them
    tokenid, secret = pvesim_fresh.token('noacl')
    response = requests.get(f'{pvesim_fresh.api_url}/cluster/resources', params={'type': 'vm'}, verify=pvesim_fresh.ca_path,
                            headers={'Authorization': f'PVEAPIToken={tokenid}={secret}'}, timeout=120)
    assert response.json()['data'] == []
