# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pg state backend against the local default: the wrapper's apply of k3s-dev (4 VMs, the real
bpg/proxmox provider, pvesim) and a following no-change run, with the state in a real PostgreSQL
server on loopback (tests/postgres) and with the local state, in one run.

Each round times create + no-change run on each backend and destroys (untimed), alternating the
order. Goal: ratio (median, pg / local) <= 1.25.
Run: python tests/bench/bench_terraform_pg.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [os.path.join(ROOT, '.collections'), ROOT]

# pylint: disable=wrong-import-position
from ansible_collections.eminfra.pipeline.plugins.module_utils import _proxmox_env  # noqa: E402
from ansible_collections.eminfra.pipeline.plugins.module_utils import _terraform  # noqa: E402
from ansible_collections.eminfra.pipeline.plugins.module_utils import _terraform_backend as tf_backend  # noqa: E402
from tests.bench._report import ratio_report  # noqa: E402
from tests.bench.bench_terraform import FIXTURES, make_runner, upload_artefacts  # noqa: E402
from tests.postgres import fixtures as pg_fixtures  # noqa: E402
from tests.pvesim import fixtures as pvesim_fixtures  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    bindir = pg_fixtures.find_bindir()
    if not bindir:
        print('bench_terraform_pg: skipped, PostgreSQL is not installed (Debian package postgresql)')
        return 0
    binary = _terraform.find_binary(None)
    tmp = tempfile.mkdtemp(prefix='bench-terraform-pg-')
    sim = pvesim_fixtures.start(os.path.join(tmp, 'sim'))
    server = pg_fixtures.start(bindir)
    try:
        manifest = os.path.join(tmp, 'manifest.json')
        shutil.copy(os.path.join(FIXTURES, 'manifest.json'), manifest)
        upload_artefacts(sim, manifest)
        proxmox = _proxmox_env.load(sim.env_files['full'])
        pg = tf_backend.PgBackend(server.conn_str(), 'bench')

        def runner(backend):
            one = make_runner(binary, os.path.join(tmp, backend), manifest, proxmox)
            one.use_backend(backend, pg=pg if backend == 'pg' else None)
            return one

        times = {'local': [], 'pg': []}
        for backend in times:  # warm-up: each initialises its data dir once (excluded)
            runner(backend).execute(check_mode=True)

        def round_of(backend):
            start = time.perf_counter()
            created = runner(backend).execute()
            again = runner(backend).execute()
            times[backend].append(time.perf_counter() - start)
            assert created['counts']['add'] == 4 and again['changed'] is False, (created, again)
            runner(backend).execute(state='absent')

        for index in range(args.rounds):
            for backend in (('local', 'pg') if index % 2 == 0 else ('pg', 'local')):
                round_of(backend)

        ratio_report('bench_terraform_pg', 'terraform_apply_wrapper create + no-change run, pg backend vs local state '
                     '(k3s-dev, bpg/proxmox, 4 VMs in pvesim, PostgreSQL on loopback)', times, ('pg', 'local'),
                     goal=1.25, terraform=binary, postgresql=server.version, rounds=args.rounds)
        return 0
    finally:
        pg_fixtures.stop(server)
        pvesim_fixtures.stop(sim)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
