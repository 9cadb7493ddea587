# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Concurrent API clients against a running simulator (used by a test and the benchmark)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import requests

READS = ['/version', '/cluster/resources', '/nodes/pve/qemu', '/nodes/pve/storage/local/content',
         '/access/permissions', '/nodes/pve/storage', '/cluster/nextid']


@dataclass
class LoadResult:
    clients: int
    seconds: float
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else 0.0


def run_load(api_url: str, ca_path: str, tokenid: str, secret: str, clients: int = 50, seconds: float = 10.0,
             writes: bool = True, vmid_base: int = 100000) -> LoadResult:
    """``clients`` threads, each with its own keep-alive session, for ``seconds``: mostly reads,
    and (``writes``) a VM create -> task poll -> delete cycle every tenth iteration."""
    result = LoadResult(clients, seconds)
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    start_barrier = threading.Barrier(clients)

    def client(index: int) -> None:
        session = requests.Session()
        # verify is passed per request: a Session.verify would lose to REQUESTS_CA_BUNDLE from
        # the environment (requests merges environment settings over session settings)
        session.headers['Authorization'] = f'PVEAPIToken={tokenid}={secret}'
        count = 0
        errors: list[str] = []
        latencies: list[float] = []

        def call(method: str, path: str, **kw):
            nonlocal count
            begin = time.monotonic()
            try:
                response = session.request(method, f'{api_url}{path}', timeout=60, verify=ca_path, **kw)
            except requests.RequestException as exc:
                errors.append(f'{method} {path}: {exc!r}')
                return None
            finally:
                latencies.append(time.monotonic() - begin)
                count += 1
            if response.status_code != 200:
                errors.append(f'{method} {path}: {response.status_code} {response.reason}')
                return None
            return response.json()['data']

        def wait(upid: str) -> bool:
            while time.monotonic() < deadline + 30:
                status = call('GET', f'/nodes/pve/tasks/{upid}/status')
                if status is None:
                    return False
                if status['status'] == 'stopped':
                    if status['exitstatus'] != 'OK':
                        errors.append(f"task {upid}: {status['exitstatus']}")
                        return False
                    return True
                time.sleep(0.02)
            errors.append(f'task {upid} did not finish')
            return False

        start_barrier.wait()
        iteration = 0
        vmid = vmid_base + index * 1000
        while time.monotonic() < deadline:
            iteration += 1
            if writes and iteration % 10 == 0:
                vmid += 1
                upid = call('POST', '/nodes/pve/qemu', data={'vmid': vmid, 'name': f'load-{vmid}', 'cores': 1,
                                                             'net0': 'virtio,bridge=vmbr0'})
                if upid and wait(upid):
                    call('GET', f'/nodes/pve/qemu/{vmid}/config')
                    upid = call('DELETE', f'/nodes/pve/qemu/{vmid}')
                    if upid:
                        wait(upid)
                continue
            call('GET', READS[(index + iteration) % len(READS)])
        session.close()
        with lock:
            result.requests += count
            result.errors.extend(errors)
            result.latencies.extend(latencies)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    begin = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 120)
    result.seconds = time.monotonic() - begin
    return result
