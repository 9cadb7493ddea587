# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pipeline's no-op re-run against the raw tools doing the same work, in one lab.

After one full run of ``playbooks/site.yml`` (the demo's lab: pvesim, the artefact mirror, the
real bpg/proxmox provider, and as root the SSH test hosts), each round times:

- pipeline: ``ansible-playbook playbooks/site.yml`` again, which changes nothing (token check,
  templates verified, Terraform plans no change, inventory, node roles idempotent);
- raw: what an operator would run by hand to learn the same: ``terraform plan
  -detailed-exitcode`` of the same configuration copy and state, and the node roles
  (``node_base``, ``node_docker``) in check mode against the same inventory.

Rounds alternate the order. Reported: the ratio of the medians (pipeline / raw); no goal is
set, it says what the bookkeeping (checks, records, re-validation) costs on top of the tools.
Without root (no test hosts) the node roles have no hosts on either side.
Run: python tests/bench/bench_site_noop.py [--rounds N]
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
sys.path[:0] = [os.path.join(ROOT, '.collections'), ROOT, os.path.join(ROOT, 'tests', 'demo')]

# pylint: disable=wrong-import-position
import lab as lablib  # noqa: E402
from ansible_collections.eminfra.pipeline.plugins.module_utils import _proxmox_env  # noqa: E402
from ansible_collections.eminfra.pipeline.plugins.module_utils import _terraform  # noqa: E402
from ansible_collections.eminfra.pipeline.plugins.module_utils._state import TERRAFORM_PROJECT_PATH  # noqa: E402
from tests.bench._report import ratio_report  # noqa: E402

NODE_ROLES = '''---
- name: node_base, as the ansible_base step runs it
  hosts: base
  gather_facts: true
  roles:
    - role: eminfra.pipeline.node_base

- name: node_docker, as the ansible_docker step runs it
  hosts: docker
  gather_facts: true
  roles:
    - role: eminfra.pipeline.node_docker
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix='bench-site-noop-')
    lab_args = argparse.Namespace(lab_dir=os.path.join(tmp, 'lab'), state_dir=os.path.join(tmp, 'state'),
                                  prefix='embnch', token='full', hosts='auto', artefact_mib=8,
                                  fresh=True)
    try:
        lab = lablib.up(lab_args)
        site_args = argparse.Namespace(lab_dir=lab_args.lab_dir, label='bench', quiet=True, playbook_args=[])
        first = lablib.site(site_args)
        if first['rc'] != 0:
            raise SystemExit(f'bench_site_noop: the first pipeline run failed; see {first["log"]}')

        # The raw side: the wrapper's own configuration copy, data dir, state and environment.
        proxmox = _proxmox_env.load(os.path.join(lab_args.state_dir, 'proxmox.env'))
        variables = {'intent_cluster_file': os.path.join(ROOT, 'inventory', 'dev', 'cluster.yaml'),
                     'intent_nodes_file': os.path.join(ROOT, 'inventory', 'dev', 'nodes.yaml')}
        with open(lab['vars_file'], encoding='utf-8') as handle:
            variables['ssh_public_key'] = json.load(handle)['terraform_apply_ssh_public_key']
        runner = _terraform.TerraformRunner(
            run_command=_terraform.default_run_command, binary=_terraform.find_binary(None),
            project_path=os.path.join(ROOT, TERRAFORM_PROJECT_PATH),
            workdir=os.path.join(lab_args.state_dir, 'cache', 'terraform'),
            manifest=os.path.join(lab_args.state_dir, 'cache', 'templates', 'manifest.json'),
            variables=variables, proxmox=proxmox)
        plan_path = os.path.join(tmp, 'raw.tfplan')
        roles_playbook = os.path.join(tmp, 'node-roles.yml')
        with open(roles_playbook, 'w', encoding='utf-8') as handle:
            handle.write(NODE_ROLES)
        env = lablib.ansible_env(lab)

        def pipeline() -> float:
            start = time.perf_counter()
            result = lablib.site(site_args)
            spent = time.perf_counter() - start
            if result['rc'] != 0 or result['changed_on_nodes'] or result['terraform_counts'] not in (
                    None, {'add': 0, 'change': 0, 'destroy': 0}):
                raise SystemExit(f'bench_site_noop: the re-run was not a no-op; see {result["log"]}')
            return spent

        def raw() -> float:
            start = time.perf_counter()
            plan = subprocess.run([runner.binary, f'-chdir={runner.chdir}', 'plan', '-input=false', '-no-color',
                                   '-detailed-exitcode', f'-out={plan_path}'], env=runner.env(True), cwd=runner.chdir,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
            roles = subprocess.run([os.path.join(lablib.BIN, 'ansible-playbook'), '-i', lablib.INVENTORY, '-i',
                                    lab['groups_file'], roles_playbook, '--check', '-e', f'@{lab["vars_file"]}'],
                                   cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   check=False)
            spent = time.perf_counter() - start
            if plan.returncode != 0:
                raise SystemExit(f'bench_site_noop: raw terraform plan exited {plan.returncode}: {plan.stderr}')
            if roles.returncode != 0:
                raise SystemExit(f'bench_site_noop: the node roles in check mode failed:\n{roles.stdout[-3000:]}')
            return spent

        pipeline_times, raw_times = [], []
        for index in range(args.rounds):
            order = ((pipeline, pipeline_times), (raw, raw_times))
            for one, times in (order if index % 2 == 0 else order[::-1]):
                times.append(one())
        ratio_report('bench_site_noop', 'no-op site.yml re-run vs raw terraform plan + node roles in check mode (same lab)',
                     {'pipeline': pipeline_times, 'raw': raw_times}, ('pipeline', 'raw'), digits=2,
                     test_hosts=bool(lab['hosts']), rounds=args.rounds)
        return 0
    finally:
        lablib.down(lab_args)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
