# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark of template downloads: a 1 GiB artefact from the mirror over loopback.

Measured in one run, each figure against a baseline taken in the same run:
- throughput of ``_download.fetch`` (stream, SHA-256 and write in one pass, fsync before the
  file may be recorded) as a ratio to ``curl -o FILE`` (transfer and write only; goal >= 0.9).
  This headline asks more of fetch than of curl: curl neither hashes nor fsyncs, and its
  time ends while its file is still dirty in the page cache. So it is also given against
  ``curl -o FILE && sync FILE`` (the same durability as fetch) and against
  ``curl -o FILE && sha256sum FILE`` (what a download-then-hash tool such as get_url does),
  and fetch is also timed without the final fsync (``durable=False``; the writes themselves
  are unchanged). Every measurement is the best of ``--rounds`` interleaved rounds, as the
  machine is shared, and the load average is printed with the figures;
- peak RSS of the process running ``fetch`` (VmHWM of a fresh subprocess; goal <= 100 MiB),
  next to the peak RSS of a bare Python interpreter;
- resume share: after the connection drops at half the file, the bytes the next run transfers
  divided by the file size (goal <= 0.55).

Usage: python tests/bench/bench_templates.py [--size 1G] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, '.collections')]

from tests.bench._report import write_output  # noqa: E402
from tests.pvesim.mirror import parse_size  # noqa: E402
from tests.pvesim.mirror_fixtures import MirrorProcess  # noqa: E402

ARTEFACT = '/bench/release-20251113/noble-server-cloudimg-amd64.img'

CHILD = r'''
import json, sys, time
sys.path[:0] = sys.argv[5:]


def peak_kib():
    # VmHWM is this process's own peak; ru_maxrss would carry the parent's peak across exec.
    with open('/proc/self/status', encoding='ascii') as handle:
        for line in handle:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    return 0


from ansible_collections.eminfra.pipeline.plugins.module_utils import _download
url, dest, retries, durable = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == 'durable'
sys.path[:0] = sys.argv[5:]
began = time.perf_counter()
out = {}
try:
    result = _download.fetch(url, dest, retries=retries, timeout=60, durable=durable)
    _download.finish(dest)
    out.update(ok=True, sha256=result.sha256, size=result.size, bytes_transferred=result.bytes_transferred,
               resumed=result.resumed)
except _download.DownloadError as exc:
    out.update(ok=False, error=str(exc))
out['elapsed'] = time.perf_counter() - began
out['maxrss_kib'] = peak_kib()
print(json.dumps(out))
'''

BARE = ("print(next(int(line.split()[1]) for line in open('/proc/self/status') "
        "if line.startswith('VmHWM:')))")


def child(url: str, dest: str, retries: int = 0, durable: bool = True) -> dict:
    proc = subprocess.run([sys.executable, '-c', CHILD, url, dest, str(retries), 'durable' if durable else 'cached',
                           ROOT, os.path.join(ROOT, '.collections')],
                          capture_output=True, text=True, check=False, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f'bench child failed:\n{proc.stderr}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def timed(argv: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(argv, check=True, timeout=900)
    return time.perf_counter() - began


def best(values):
    return min(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--size', default='1G')
    parser.add_argument('--rounds', type=int, default=3, help='rounds per measurement; the best is kept')
    args = parser.parse_args()
    size = parse_size(args.size)
    if not shutil.which('curl'):
        print('bench_templates: curl is not installed (tests/setup/install-debs.sh installs it); skipped')
        return 0
    work = tempfile.mkdtemp(prefix='bench-templates-')
    mirror = MirrorProcess.start(root=os.path.join(work, 'mirror'), artefacts={ARTEFACT: size},
                                 extra_args=['--precompute'])
    try:
        url = mirror.url_for(ARTEFACT)
        expected = mirror.digest(ARTEFACT)
        dest = os.path.join(work, 'image.img')
        mib = size / (1 << 20)

        curl_times, curl_sync_times, curl_hash_times, ours, cached = [], [], [], [], []
        for dummy in range(args.rounds):
            curl_times.append(timed(['curl', '-sS', '--fail', '--noproxy', '*', '-o', dest, url]))
            os.unlink(dest)
            began = time.perf_counter()
            subprocess.run(['curl', '-sS', '--fail', '--noproxy', '*', '-o', dest, url], check=True)
            subprocess.run(['sync', dest], check=True)
            curl_sync_times.append(time.perf_counter() - began)
            os.unlink(dest)
            began = time.perf_counter()
            subprocess.run(['curl', '-sS', '--fail', '--noproxy', '*', '-o', dest, url], check=True)
            subprocess.run(['sha256sum', dest], check=True, capture_output=True)
            curl_hash_times.append(time.perf_counter() - began)
            os.unlink(dest)
            result = child(url, dest)
            if not result['ok'] or result['sha256'] != expected:
                raise SystemExit(f'bench: fetch failed or wrong digest: {result}')
            ours.append(result)
            os.unlink(dest)
            result = child(url, dest, durable=False)
            if not result['ok'] or result['sha256'] != expected:
                raise SystemExit(f'bench: fetch failed or wrong digest: {result}')
            cached.append(result)
            os.unlink(dest)
        ours_time = best(r['elapsed'] for r in ours)
        cached_time = best(r['elapsed'] for r in cached)
        curl_time = best(curl_times)
        curl_hash_time = best(curl_hash_times)
        curl_sync_time = best(curl_sync_times)
        peak_kib = max(r['maxrss_kib'] for r in ours + cached)
        bare_kib = int(subprocess.run([sys.executable, '-c', BARE], capture_output=True, text=True,
                                      check=True).stdout.strip())

        # Resume: drop at half, then the next run continues.
        mirror.reset()
        mirror.fault(ARTEFACT, drop_after=size // 2)
        broken = child(url, dest, retries=0)
        if broken['ok']:
            raise SystemExit('bench: the drop fault did not break the first run')
        resumed = child(url, dest, retries=0)
        if not resumed['ok'] or resumed['sha256'] != expected or not resumed['resumed']:
            raise SystemExit(f'bench: resume failed: {resumed}')
        share = resumed['bytes_transferred'] / size

        figures = {
            'size_mib': round(mib),
            'curl_mib_s': round(mib / curl_time, 1),
            'curl_then_sync_mib_s': round(mib / curl_sync_time, 1),
            'curl_then_sha256sum_mib_s': round(mib / curl_hash_time, 1),
            'fetch_mib_s': round(mib / ours_time, 1),
            'fetch_without_fsync_mib_s': round(mib / cached_time, 1),
            'throughput_ratio_vs_curl': round(curl_time / ours_time, 3),
            'throughput_ratio_without_fsync_vs_curl': round(curl_time / cached_time, 3),
            'throughput_ratio_vs_curl_then_sync': round(curl_sync_time / ours_time, 3),
            'throughput_ratio_vs_curl_then_sha256sum': round(curl_hash_time / ours_time, 3),
            'peak_rss_mib': round(peak_kib / 1024, 1),
            'bare_python_rss_mib': round(bare_kib / 1024, 1),
            'resume_transfer_share': round(share, 3),
            'load_average_1m': round(os.getloadavg()[0], 2),
        }
        goals = {
            'throughput_ratio_vs_curl >= 0.9': figures['throughput_ratio_vs_curl'] >= 0.9,
            'peak_rss_mib <= 100': figures['peak_rss_mib'] <= 100,
            'resume_transfer_share <= 0.55': figures['resume_transfer_share'] <= 0.55,
        }
        for key, value in figures.items():
            print(f'{key:45s} {value}')
        for goal, met in goals.items():
            print(f'goal {goal:40s} {"met" if met else "NOT met"}')
        write_output('bench_templates.json', {'figures': figures, 'goals': goals, 'cpus': os.cpu_count(),
                                              'loadavg': os.getloadavg()})
    finally:
        mirror.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
