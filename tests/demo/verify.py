#!/usr/bin/env python
# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What a pipeline run against a lab (tests/demo/lab.py) must have left behind.

``python tests/demo/verify.py --lab-dir DIR --state-dir DIR CHECK...`` runs the named checks and
prints one line per check; exit 1 if any fails, with every failure listed. The molecule
scenarios' verify playbooks call it.

Checks:
``contracts``        proxmox.env (mode 0600), manifest.json, outputs.json and latest.env against
                     their schemas (_contracts), and the run's own directory runs/<RUN_ID>/.
``vms``              the VMs and containers in the simulator are exactly the intent's enabled nodes
                     (each a qemu VM, or a container for ``guest: lxc``).
``no_vms``           the simulator holds no VM and no container.
``nodes``            the roles' effects on each SSH-managed node, seen over SSH as its ssh_user.
``idempotent``       the last site run changed nothing on the nodes and Terraform changed nothing.
``secrets``          the token secret is in proxmox.env only: in no other file under the state
                     root, in no run log (site runs at -vvvv) or task result of the lab.
``latest:KEY=VALUE`` latest.env holds KEY=VALUE (``KEY=`` for empty or absent).
``log:LABEL~TEXT``   the output of the site run labelled LABEL contains TEXT.
``rc:LABEL=N``       the site run labelled LABEL exited N (0, or 1 for any failure).
``plan:LABEL=STEP,STEP`` the run labelled LABEL planned to run exactly these steps.
``absent:PATH``      PATH (relative to the state root) does not exist.
``mirror_untouched`` no artefact bytes were served by the mirror (GET requests with a body).
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import stat
import subprocess
import sys
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for entry in (os.path.join(REPO, '.collections'), REPO):
    if entry not in sys.path:
        sys.path.insert(0, entry)

# pylint: disable=wrong-import-position
import yaml  # noqa: E402

from ansible_collections.eminfra.pipeline.plugins.module_utils import _contracts  # noqa: E402
from ansible_collections.eminfra.pipeline.plugins.module_utils._envfile import read_env_file  # noqa: E402

INTENT_NODES = os.path.join(REPO, 'inventory', 'dev', 'nodes.yaml')


class Failed(Exception):
    pass


class Context:
    def __init__(self, lab_dir: str, state_dir: str) -> None:
        self.lab_dir = os.path.abspath(lab_dir)
        self.state = os.path.abspath(state_dir)
        with open(os.path.join(self.lab_dir, 'lab.json'), encoding='utf-8') as handle:
            self.lab = json.load(handle)

    def path(self, *parts: str) -> str:
        return os.path.join(self.state, *parts)

    def latest(self) -> dict[str, str]:
        return read_env_file(self.path('runs', 'latest.env'))

    def site_runs(self) -> list[dict]:
        runs = os.path.join(self.lab_dir, 'runs')
        out = []
        for name in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
            if name.startswith('site-') and name.endswith('.json'):
                with open(os.path.join(runs, name), encoding='utf-8') as handle:
                    data = json.load(handle)
                data['label'] = name[len('site-'):-len('.json')].split('-', 1)[-1]
                out.append(data)
        return out

    def site_run(self, label: str) -> dict:
        found = [run for run in self.site_runs() if run['label'] == label]
        if not found:
            raise Failed(f'no site run labelled {label!r} in {self.lab_dir}/runs')
        return found[-1]

    def sim(self, action: str) -> object:
        context = ssl.create_default_context(cafile=self.lab['pvesim']['ca'])
        request = urllib.request.Request(f'{self.lab["pvesim"]["control"]}{action}', data=b'{}',
                                         headers={'Content-Type': 'application/json'}, method='POST')
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
        with opener.open(request, timeout=30) as response:
            return json.loads(response.read())['data']

    def mirror_log(self) -> list[dict]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f'{self.lab["mirror"]["control"]}log', timeout=30) as response:
            data = json.loads(response.read())
        return data.get('log', data) if isinstance(data, dict) else data


def intent_nodes(ctx: Context | None = None) -> list[dict]:
    """The enabled nodes of the lab's intent (``up --intent``; default inventory/dev)."""
    path = INTENT_NODES
    if ctx is not None and ctx.lab.get('intent_dir'):
        path = os.path.join(ctx.lab['intent_dir'], 'nodes.yaml')
    with open(path, encoding='utf-8') as handle:
        nodes = yaml.safe_load(handle)['nodes']
    return [n for n in nodes if n.get('enabled', True)]


def check_contracts(ctx: Context) -> str:
    env_path = ctx.path('proxmox.env')
    mode = stat.S_IMODE(os.stat(env_path).st_mode)
    if mode & 0o077:
        raise Failed(f'{env_path} has mode {mode:o}, not 0600')
    _contracts.validate(read_env_file(env_path), _contracts.PROXMOX_ENV_SCHEMA, 'proxmox_env_valid', source=env_path)
    with open(ctx.path('cache', 'templates', 'manifest.json'), encoding='utf-8') as handle:
        manifest = json.load(handle)
    _contracts.validate(manifest, _contracts.MANIFEST_SCHEMA, 'templates_present', source='manifest.json')
    for name in ('ubuntu', 'talos'):
        if not os.path.isfile(manifest[name]['path']):
            raise Failed(f'manifest {name}.path {manifest[name]["path"]} does not exist')
    with open(ctx.path('cache', 'terraform', 'outputs.json'), encoding='utf-8') as handle:
        outputs = json.load(handle)
    _contracts.validate(outputs, _contracts.OUTPUTS_SCHEMA, 'terraform_outputs_valid', source='outputs.json')
    latest = ctx.latest()
    _contracts.validate(latest, _contracts.LATEST_ENV_SCHEMA, 'latest_env_valid', source='latest.env')
    run_dir = ctx.path('runs', latest['RUN_ID'])
    if not os.path.isdir(run_dir):
        raise Failed(f'the run directory {run_dir} is missing')
    wanted = sorted(n['name'] for n in intent_nodes(ctx) if n['os'] == 'ubuntu')
    if sorted(n['name'] for n in outputs['nodes']) != wanted:
        raise Failed(f'outputs.json nodes {[n["name"] for n in outputs["nodes"]]} != the intent\'s SSH-managed nodes {wanted}')
    return f'proxmox.env, manifest.json, outputs.json, latest.env valid; run dir {os.path.basename(run_dir)}'


def check_vms(ctx: Context) -> str:
    # VMs and containers share one id space; a container's name is its hostname.
    vms = ctx.sim('vms')
    found = sorted((vm['vmid'], vm.get('type', 'qemu'), vm.get('config', {}).get('name')
                    or vm.get('config', {}).get('hostname')) for vm in vms)
    wanted = sorted((n['vmid'], 'lxc' if n.get('guest') == 'lxc' else 'qemu', n['name']) for n in intent_nodes(ctx))
    if found != wanted:
        raise Failed(f'VMs and containers in the simulator {found} != the intent {wanted}')
    return f'{len(found)} VMs and containers: ' + ', '.join(f'{v} {n} ({t})' for v, t, n in found)


def check_no_vms(ctx: Context) -> str:
    vms = ctx.sim('vms')
    if vms:
        raise Failed(f'the simulator holds VMs or containers: {sorted(vm["vmid"] for vm in vms)}')
    return 'no VM and no container in the simulator'


NODE_PROBES = {
    'host name': ('hostname', lambda out, node: out.strip() == node['name']),
    'admin account': ('id -nG eminfra', lambda out, node: 'docker' in out.split()),
    'sshd hardening drop-in': ('cat /etc/ssh/sshd_config.d/01-eminfra-hardening.conf',
                               lambda out, node: 'MaxAuthTries 3' in out),
    'kernel parameters file': ('cat /etc/sysctl.d/90-eminfra-node.conf',
                               lambda out, node: 'net.ipv4.ip_forward = 1' in out or 'net.ipv4.ip_forward=1' in out),
    'ip_forward applied in the node': ('cat /proc/sys/net/ipv4/ip_forward', lambda out, node: out.strip() == '1'),
    'docker engine installed': ("dpkg-query -W -f='${Status}' docker.io", lambda out, node: 'install ok installed' in out),
    'docker log rotation': ('cat /etc/docker/daemon.json', lambda out, node: '"max-size": "10m"' in out),
}


def check_nodes(ctx: Context) -> str:
    hosts = ctx.lab.get('hosts')
    if not hosts:
        raise Failed(f'no test hosts: {ctx.lab.get("skipped_hosts")}')
    with open(ctx.path('cache', 'terraform', 'outputs.json'), encoding='utf-8') as handle:
        outputs = json.load(handle)
    lines = []
    for node in outputs['nodes']:
        for label, (command, ok) in NODE_PROBES.items():
            argv = ['ssh', '-i', hosts['key'], '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
                    '-o', f'UserKnownHostsFile={hosts["known_hosts"]}', '-o', 'StrictHostKeyChecking=yes',
                    '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'ConnectTimeout=10', '-p', str(node['ssh_port']),
                    f'{node["ssh_user"]}@{node["ipv4"]}', command]
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
            if proc.returncode != 0 or not ok(proc.stdout, node):
                raise Failed(f'{node["name"]}: {label}: `{command}` gave rc {proc.returncode}: {proc.stdout.strip()} {proc.stderr.strip()}')
        lines.append(f'{node["name"]} as {node["ssh_user"]}: {", ".join(NODE_PROBES)}')
    return '; '.join(lines)


def check_idempotent(ctx: Context) -> str:
    last = [run for run in ctx.site_runs() if run['rc'] == 0]
    if len(last) < 2:
        raise Failed('fewer than two successful site runs to compare')
    run = last[-1]
    if run['changed_on_nodes']:
        raise Failed(f'the last run changed the nodes: {run["changed_on_nodes"]}')
    if run['terraform_counts'] not in (None, {'add': 0, 'change': 0, 'destroy': 0}):
        raise Failed(f'the last run changed Terraform resources: {run["terraform_counts"]}')
    if run.get('mirror_bytes'):
        raise Failed(f'the last run fetched {run["mirror_bytes"]} artefact bytes from the mirror')
    return (f'run {run["run_id"]}: 0 changed on the nodes, Terraform {run["terraform_counts"]}, '
            f'{run.get("mirror_bytes", 0)} artefact bytes fetched')


def check_secrets(ctx: Context) -> str:
    secret = read_env_file(ctx.path('proxmox.env'))['PROXMOX_TOKEN_SECRET']
    needle = secret.encode()
    scanned = 0
    for directory, dummy, names in os.walk(ctx.state):
        for name in names:
            path = os.path.join(directory, name)
            if path == ctx.path('proxmox.env') or not os.path.isfile(path) or os.path.islink(path):
                continue
            scanned += 1
            with open(path, 'rb') as handle:
                if needle in handle.read():
                    raise Failed(f'the token secret is in {path}')
    runs = os.path.join(ctx.lab_dir, 'runs')
    logs = 0
    for name in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
        with open(os.path.join(runs, name), 'rb') as handle:
            if needle in handle.read():
                raise Failed(f'the token secret is in the run output {name}')
        logs += 1
    verbose = [run['label'] for run in ctx.site_runs() if '-vvvv' in run.get('argv', [])]
    return f'secret only in proxmox.env: {scanned} other state files, {logs} run logs/results (at -vvvv: {verbose or "none"})'


def check_latest(ctx: Context, spec: str) -> str:
    key, dummy, value = spec.partition('=')
    latest = ctx.latest()
    if latest.get(key, '') != value:
        raise Failed(f'latest.env {key}={latest.get(key, "")!r}, wanted {value!r}')
    return f'latest.env {key}={value!r}'


def check_log(ctx: Context, spec: str) -> str:
    label, dummy, text = spec.partition('~')
    with open(ctx.site_run(label)['log'], encoding='utf-8', errors='replace') as handle:
        output = handle.read()
    if text not in output:
        raise Failed(f'the output of run {label!r} lacks {text!r}')
    return f'run {label!r} says {text!r}'


def check_rc(ctx: Context, spec: str) -> str:
    label, dummy, wanted = spec.partition('=')
    run = ctx.site_run(label)
    rc = 0 if run['rc'] == 0 else 1
    if rc != int(wanted):
        raise Failed(f'run {label!r} exited {run["rc"]}')
    return f'run {label!r} exited {run["rc"]}'


def check_plan(ctx: Context, spec: str) -> str:
    label, dummy, steps = spec.partition('=')
    with open(ctx.site_run(label)['results'], encoding='utf-8') as handle:
        for line in handle:
            entry = json.loads(line)
            if entry['host'] == 'localhost' and 'plan' in entry['result'] and 'run_id' in entry['result']:
                planned = entry['result']['plan']['run']
                if planned != [s for s in steps.split(',') if s]:
                    raise Failed(f'run {label!r} planned {planned}, wanted {steps}')
                return f'run {label!r} planned {planned}, re-validating {entry["result"]["plan"].get("revalidate")}'
    raise Failed(f'run {label!r} recorded no plan')


def check_absent(ctx: Context, rel: str) -> str:
    if os.path.exists(ctx.path(rel)):
        raise Failed(f'{ctx.path(rel)} exists')
    return f'{rel} absent'


def check_mirror_untouched(ctx: Context) -> str:
    served = [e for e in ctx.mirror_log() if e.get('method') == 'GET' and e.get('sent')]
    if served:
        raise Failed(f'the mirror served artefact bytes: {served[:3]}')
    return 'the mirror served no artefact bytes'


SIMPLE = {'contracts': check_contracts, 'vms': check_vms, 'no_vms': check_no_vms, 'nodes': check_nodes,
          'idempotent': check_idempotent, 'secrets': check_secrets, 'mirror_untouched': check_mirror_untouched}
WITH_ARG = {'latest': check_latest, 'log': check_log, 'rc': check_rc, 'plan': check_plan, 'absent': check_absent}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--lab-dir', required=True)
    parser.add_argument('--state-dir', required=True)
    parser.add_argument('checks', nargs='+')
    args = parser.parse_args(argv)
    ctx = Context(args.lab_dir, args.state_dir)
    failures = 0
    for spec in args.checks:
        name, sep, arg = spec.partition(':')
        try:
            if sep:
                detail = WITH_ARG[name](ctx, arg)
            else:
                detail = SIMPLE[name](ctx)
            print(f'ok      {spec}: {detail}')
        except (Failed, _contracts.ContractError, OSError, KeyError, ValueError) as err:
            failures += 1
            print(f'FAILED  {spec}: {err}')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
