# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pvesim benchmarks, each against a baseline measured in this run:

1. 50 concurrent clients for 10 s (reads plus VM create/delete cycles) against pvesim, versus
   the same 50 clients (reads only) against a bare threaded HTTPS server in its own process
   answering a fixed JSON body with the same TLS setup: requests/s, latency percentiles, errors.
   Both figures include the load generator's own cost (50 client threads in this process).
2. GET /cluster/resources with 10,000 VMs versus the same call with no VMs.

Prints the figures and writes them to tests/output/bench/pvesim.json.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import ssl
import statistics
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, '.collections')]

import requests  # noqa: E402

from tests.bench._report import write_output  # noqa: E402
from tests.pvesim import tls  # noqa: E402
from tests.pvesim.fixtures import start, stop  # noqa: E402
from tests.pvesim.load import run_load  # noqa: E402

CLIENTS = int(os.environ.get('PVESIM_BENCH_CLIENTS', '50'))
SECONDS = float(os.environ.get('PVESIM_BENCH_SECONDS', '10'))
VMS = int(os.environ.get('PVESIM_BENCH_VMS', '10000'))


class _Fixed(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    body = json.dumps({'data': {'version': '9.1.1'}}).encode()

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header('Content-Type', 'application/json;charset=UTF-8')
        self.send_header('Content-Length', str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format, *args) -> None:  # noqa: A002
        pass


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__(('127.0.0.1', 0), _Fixed)

    def finish_request(self, request, client_address) -> None:
        try:
            tls_sock = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        self.RequestHandlerClass(tls_sock, client_address, self)


def _serve_baseline(cert: str, key: str, port_queue) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = _TLSServer(context)
    port_queue.put(server.server_address[1])
    server.serve_forever()


def _baseline_load(tmp: str) -> dict:
    """The same clients against a bare TLS server in its own process (as pvesim runs in its own),
    so that both servers compete with the load generator in the same way."""
    ca, cert, key = tls.generate(os.path.join(tmp, 'baseline-tls'))
    context = multiprocessing.get_context('fork')
    ports = context.Queue()
    process = context.Process(target=_serve_baseline, args=(cert, key, ports), daemon=True)
    process.start()
    try:
        port = ports.get(timeout=30)
        result = run_load(f'https://127.0.0.1:{port}/api2/json', ca, 'x@pve!x', 'x',
                          clients=CLIENTS, seconds=SECONDS, writes=False)
    finally:
        process.terminate()
        process.join(10)
    return _summary(result)


def _summary(result) -> dict:
    return {'clients': result.clients, 'seconds': round(result.seconds, 2), 'requests': result.requests,
            'errors': len(result.errors), 'first_errors': result.errors[:3],
            'requests_per_s': round(result.rate, 1), 'p50_ms': round(result.percentile(0.5) * 1000, 2),
            'p95_ms': round(result.percentile(0.95) * 1000, 2), 'max_ms': round(result.percentile(1.0) * 1000, 2)}


def _time_get(sim, path: str, params: dict, repeat: int) -> tuple[float, int]:
    tokenid, secret = sim.token('full')
    session = requests.Session()
    headers = {'Authorization': f'PVEAPIToken={tokenid}={secret}'}
    times = []
    size = 0
    for dummy in range(repeat):
        begin = time.perf_counter()
        response = session.get(f'{sim.api_url}{path}', params=params, headers=headers, verify=sim.ca_path, timeout=300)
        times.append(time.perf_counter() - begin)
        assert response.status_code == 200, response.reason
        size = len(response.content)
    return statistics.median(times), size


def main() -> int:
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix='bench-pvesim-') as tmp:
        print(f'baseline: {CLIENTS} clients x {SECONDS:g} s against a bare TLS server ...', flush=True)
        baseline = _baseline_load(tmp)
        sim = start(os.path.join(tmp, 'sim'), extra=['--task-duration', '0.05'])
        try:
            print(f'pvesim:   {CLIENTS} clients x {SECONDS:g} s (reads + create/delete cycles) ...', flush=True)
            tokenid, secret = sim.token('full')
            load = _summary(run_load(sim.api_url, sim.ca_path, tokenid, secret, clients=CLIENTS, seconds=SECONDS))
            empty_time, empty_size = _time_get(sim, '/cluster/resources', {}, 20)
            begin = time.perf_counter()
            sim.control('add_vms', count=VMS, start=100000)
            add_time = time.perf_counter() - begin
            full_time, full_size = _time_get(sim, '/cluster/resources', {}, 10)
            vm_time, dummy = _time_get(sim, '/cluster/resources', {'type': 'vm'}, 10)
        finally:
            stop(sim)
    results['load'] = {'baseline_bare_tls_server': baseline, 'pvesim': load,
                       'throughput_ratio_vs_baseline': round(load['requests_per_s'] / baseline['requests_per_s'], 3)
                       if baseline['requests_per_s'] else None}
    results['cluster_resources'] = {
        'vms': VMS, 'add_vms_seconds': round(add_time, 2),
        'baseline_no_vms_ms': round(empty_time * 1000, 2), 'baseline_bytes': empty_size,
        'with_vms_ms': round(full_time * 1000, 2), 'with_vms_bytes': full_size,
        'type_vm_ms': round(vm_time * 1000, 2),
        'ratio_vs_baseline': round(full_time / empty_time, 1) if empty_time else None,
    }
    load_line = (f"load: pvesim {load['requests_per_s']} req/s (p50 {load['p50_ms']} ms, p95 {load['p95_ms']} ms, "
                 f"max {load['max_ms']} ms, errors {load['errors']}, {load['requests']} requests) vs bare TLS "
                 f"server {baseline['requests_per_s']} req/s: ratio {results['load']['throughput_ratio_vs_baseline']}")
    res = results['cluster_resources']
    res_line = (f"cluster/resources with {VMS} VMs: {res['with_vms_ms']} ms ({res['with_vms_bytes']} bytes; "
                f"type=vm {res['type_vm_ms']} ms) vs {res['baseline_no_vms_ms']} ms with none: ratio "
                f"{res['ratio_vs_baseline']}")
    print(load_line)
    print(res_line)
    write_output('pvesim.json', results)
    return 1 if load['errors'] or baseline['errors'] else 0


if __name__ == '__main__':
    sys.exit(main())
