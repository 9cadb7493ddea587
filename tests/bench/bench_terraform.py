# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""terraform_apply_wrapper overhead: the wrapper's apply against raw `terraform plan -out` +
`terraform apply PLAN` of the same configuration (k3s-dev, the real bpg/proxmox provider from
make setup's mirror), both against the same pvesim, in one run.

Each round creates the four fixture VMs (timed) and destroys them again (untimed), alternating
raw and wrapper so that both see the same simulator state. Goal: ratio (median) <= 1.10.
Run: python tests/bench/bench_terraform.py [--rounds N]
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
sys.path[:0] = [os.path.join(ROOT, '.collections'), ROOT]

# pylint: disable=wrong-import-position
from ansible_collections.eminfra.pipeline.plugins.module_utils import _proxmox_env  # noqa: E402
from ansible_collections.eminfra.pipeline.plugins.module_utils import _terraform  # noqa: E402
from tests.bench._report import ratio_report  # noqa: E402
from tests.pvesim import fixtures as pvesim_fixtures  # noqa: E402
from tests.pvesim.state import qcow2_image  # noqa: E402

FIXTURES = os.path.join(ROOT, 'terraform', 'tests', 'fixtures')


def upload_artefacts(sim, manifest_path):
    import requests
    token_id, secret = sim.token('full')
    headers = {'Authorization': f'PVEAPIToken={token_id}={secret}'}
    with open(manifest_path, encoding='utf-8') as handle:
        manifest = json.load(handle)
    for name in ('ubuntu', 'talos'):
        filename = manifest[name]['proxmox_volid'].split('/', 1)[1]
        body = b'x' * 65536
        if filename.endswith('.qcow2'):
            # The upload is checked like pve-storage checks an import image: a qcow2 must be one.
            body = qcow2_image(1 << 30, body)
        response = requests.post(f'{sim.api_url}/nodes/pve/storage/local/upload', headers=headers,
                                 data={'content': 'import'}, files={'filename': (filename, body)},
                                 verify=sim.ca_path, timeout=60)
        response.raise_for_status()
        upid = response.json()['data']
        for dummy in range(400):
            status = requests.get(f'{sim.api_url}/nodes/pve/tasks/{upid}/status', headers=headers,
                                  verify=sim.ca_path, timeout=30).json()['data']
            if status['status'] == 'stopped':
                if status.get('exitstatus') != 'OK':
                    raise SystemExit(f'bench_terraform: uploading {filename} failed: {status.get("exitstatus")}')
                break
            time.sleep(0.05)


def make_runner(binary, work, manifest, proxmox):
    return _terraform.TerraformRunner(
        run_command=_terraform.default_run_command, binary=binary,
        project_path=os.path.join(ROOT, 'terraform', 'environments', 'k3s-dev'), workdir=work, manifest=manifest,
        variables={'intent_cluster_file': os.path.join(FIXTURES, 'cluster.yaml'),
                   'intent_nodes_file': os.path.join(FIXTURES, 'nodes.yaml')},
        proxmox=proxmox)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    binary = _terraform.find_binary(None)
    tmp = tempfile.mkdtemp(prefix='bench-terraform-')
    sim = pvesim_fixtures.start(os.path.join(tmp, 'sim'))
    try:
        manifest = os.path.join(tmp, 'manifest.json')
        shutil.copy(os.path.join(FIXTURES, 'manifest.json'), manifest)
        upload_artefacts(sim, manifest)
        proxmox = _proxmox_env.load(sim.env_files['full'])

        # Raw Terraform: the same copy of the configuration, the same environment, the same backend.
        raw = make_runner(binary, os.path.join(tmp, 'raw'), manifest, proxmox)
        raw.prepare()
        raw.init()

        def raw_terraform(*argv, provider=True):
            proc = subprocess.run([binary, f'-chdir={raw.chdir}', *argv], env=raw.env(provider), cwd=raw.chdir,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
            if proc.returncode not in (0, 2):
                raise SystemExit(f'raw terraform {argv[0]} failed: {proc.stderr}')

        wrapper_times, raw_times = [], []
        # Warm-up: the wrapper initialises its own data dir once (excluded, like the raw init).
        warm = make_runner(binary, os.path.join(tmp, 'wrapper'), manifest, proxmox)
        warm.execute(check_mode=True)

        def raw_round():
            start = time.perf_counter()
            raw_terraform('plan', '-input=false', '-no-color', '-detailed-exitcode', f'-out={raw.plan_path}')
            raw_terraform('apply', '-input=false', '-no-color', raw.plan_path)
            raw_times.append(time.perf_counter() - start)
            raw_terraform('destroy', '-input=false', '-no-color', '-auto-approve')

        def wrapper_round():
            runner = make_runner(binary, os.path.join(tmp, 'wrapper'), manifest, proxmox)
            start = time.perf_counter()
            result = runner.execute()
            wrapper_times.append(time.perf_counter() - start)
            assert result['counts']['add'] == 4, result
            make_runner(binary, os.path.join(tmp, 'wrapper'), manifest, proxmox).execute(state='absent')

        for index in range(args.rounds):
            # Alternate the order so neither side always runs first.
            for one in ((raw_round, wrapper_round) if index % 2 == 0 else (wrapper_round, raw_round)):
                one()

        ratio_report('bench_terraform', 'terraform_apply_wrapper vs raw terraform plan -out + apply (k3s-dev, '
                     'bpg/proxmox, 4 VMs in pvesim)', {'raw': raw_times, 'wrapper': wrapper_times}, ('wrapper', 'raw'),
                     goal=1.10, terraform=binary, rounds=args.rounds,
                     ratio_of_fastest=round(min(wrapper_times) / min(raw_times), 3))
        return 0
    finally:
        pvesim_fixtures.stop(sim)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
