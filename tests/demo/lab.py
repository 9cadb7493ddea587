#!/usr/bin/env python
# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The offline world the pipeline runs against, for ``make demo`` and the molecule scenarios.

A *lab* is: the Proxmox VE simulator (tests/pvesim), the artefact mirror (tests/pvesim/mirror.py)
serving an Ubuntu- and a Talos-shaped qcow2 image where the templates role's default URLs point
once their base URLs are the mirror's, and, as root, one SSH test host per SSH-managed node of
the intent (tests/hosts/testhosts.py). The lab's own files (simulator data and env files with
every token, mirror digests, test host key and root filesystems, run logs) live in the *lab
directory*; the pipeline's state root gets only what an operator would put there:
``proxmox.env`` (one token, mode 0600) and ``lab-vars.yml``.

``lab-vars.yml`` overrides locations only (``LAB_VARS``): the mirror's base URLs (Ubuntu release
directory, Talos image factory, Proxmox VE appliance index) and the test hosts' public key that
cloud-init would install; with ``up --intent DIR`` also where every step reads the intent
(``INTENT_LAB_VARS``). Every other setting is the roles'
default, so the demo and the molecule scenarios run what an operator runs.

Subcommands (all take ``--lab-dir`` and ``--state-dir``):

``up``    start the servers detached (they outlive this command), write proxmox.env and
          lab-vars.yml, record everything in ``LAB/lab.json``; prints that record as JSON.
``down``  stop what ``lab.json`` names (each process checked by its command line), take the test
          hosts down; idempotent, works from any partial state.
``site``  run ``ansible-playbook playbooks/site.yml`` against the lab (extra arguments after
          ``--``), streaming its output; prints one JSON line with rc, the run's ID and the
          changed tasks per host (from the task results, not from the text).
``graph`` ``ansible-inventory -i inventory/proxmox_dynamic.yml --graph`` for the state root.

State root safety: ``up`` refuses a state root holding a proxmox.env it did not write (no
``.eminfra-lab`` marker beside it): an operator's token is never overwritten. ``--fresh``
empties a state root that carries the marker, and only such a root.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
COLLECTIONS = os.path.join(REPO, '.collections')
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

# pylint: disable=wrong-import-position
from ansible_collections.eminfra.pipeline.plugins.module_utils._atomic import atomic_write  # noqa: E402
from ansible_collections.eminfra.pipeline.plugins.module_utils._envfile import read_env_file, render_env  # noqa: E402
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError  # noqa: E402
from tests.ansible_run import checkout_env, with_results_callback  # noqa: E402
from tests.pvesim.appliance import INDEX_DIR as LXC_INDEX_DIR  # noqa: E402
from tests.pvesim.mirror import TALOS_FACTORY_PATH, TALOS_IMAGE_PATH, UBUNTU_DIR, UBUNTU_IMAGE_PATH  # noqa: E402

BIN = os.path.dirname(sys.executable)
TESTHOSTS = os.path.join(REPO, 'tests', 'hosts', 'testhosts.py')
INTENT_DIR = os.path.join(REPO, 'inventory', 'dev')
INVENTORY = os.path.join(REPO, 'inventory', 'proxmox_dynamic.yml')
SITE = os.path.join(REPO, 'playbooks', 'site.yml')
MARKER = '.eminfra-lab'
LAB_FILE = 'lab.json'
VARS_FILE = 'lab-vars.yml'
GROUPS_FILE = 'lab-groups.yml'
# The only variables lab-vars.yml sets: locations (where the artefacts come from, the key the
# test hosts accept). A setting beyond these would make the lab prove something else than the
# defaults an operator runs; tests/integration/demo/test_lab.py holds the lab to this list.
LAB_VARS = ('templates_ubuntu_base_url', 'templates_talos_factory_url', 'templates_ubuntu_lxc_index_url',
            'terraform_apply_ssh_public_key')
# With ``up --intent DIR`` (another intent than inventory/dev, e.g. one with a container): where
# every step reads the intent from. Locations too.
INTENT_LAB_VARS = {
    'proxmox_access_cluster_file': 'cluster.yaml', 'proxmox_access_nodes_file': 'nodes.yaml',
    'templates_intent_cluster_file': 'cluster.yaml', 'templates_intent_nodes_file': 'nodes.yaml',
    'terraform_apply_intent_cluster_file': 'cluster.yaml', 'terraform_apply_intent_nodes_file': 'nodes.yaml',
}
HOST_TOOLS = ('ip', 'unshare', 'ssh', 'ssh-keygen', 'debootstrap')
# What cloud-init does on an Ubuntu cloud image for its default user, done over SSH as root.
CLOUD_INIT_USER = r'''
set -eu
user="$1"
id -u "$user" >/dev/null 2>&1 || useradd -m -s /bin/bash "$user"
home=$(getent passwd "$user" | cut -d: -f6)
install -d -m 0700 -o "$user" -g "$user" "$home/.ssh"
install -m 0600 -o "$user" -g "$user" /root/.ssh/authorized_keys "$home/.ssh/authorized_keys"
printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$user" > /etc/sudoers.d/90-cloud-init-users
chmod 0440 /etc/sudoers.d/90-cloud-init-users
'''


def say(msg: str) -> None:
    print(f'lab: {msg}', file=sys.stderr, flush=True)


# ------------------------------------------------------------------------- processes
def _cmdline(pid: int) -> str:
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as handle:
            return handle.read().replace(b'\0', b' ').decode(errors='replace')
    except OSError:
        return ''


def _alive(pid: int) -> bool:
    try:
        with open(f'/proc/{pid}/stat', encoding='utf-8') as handle:
            return handle.read().rsplit(')', 1)[-1].split()[0] != 'Z'
    except OSError:
        return False


def stop_process(pid: int, marker: str, timeout: float = 10.0) -> bool:
    """SIGTERM (then SIGKILL) ``pid`` if its command line still holds ``marker``: never a stranger."""
    if not pid or not _alive(pid) or marker not in _cmdline(pid):
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                done, dummy = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = 0
            if done == pid or not _alive(pid):
                return True
            time.sleep(0.05)
    return True


def start_server(name: str, argv: list[str], lab_dir: str, timeout: float = 60.0) -> dict:
    """Start a server that prints one JSON line and serves; it runs in its own session, detached."""
    out_path = os.path.join(lab_dir, f'{name}.out')
    log_path = os.path.join(lab_dir, f'{name}.log')
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [REPO, COLLECTIONS, env.get('PYTHONPATH')]))
    with open(out_path, 'wb') as out, open(log_path, 'ab') as log:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=log,  # pylint: disable=consider-using-with
                                start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(out_path, encoding='utf-8') as handle:
            line = handle.readline()
        if line.endswith('\n'):
            info = json.loads(line)
            info['pid'] = proc.pid
            info['log'] = log_path
            return info
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    with open(log_path, encoding='utf-8', errors='replace') as handle:
        tail = handle.read()[-3000:]
    raise CheckError('lab_server', f'{name} did not start: {tail.strip()}', where=log_path,
                     remediation='see the log; `python tests/demo/lab.py down` removes what started')


# ------------------------------------------------------------------------- state root
def check_state_root(state_dir: str, fresh: bool) -> None:
    """Refuse a state root with an operator's proxmox.env; empty a lab's own root with ``fresh``."""
    marker = os.path.join(state_dir, MARKER)
    env_file = os.path.join(state_dir, 'proxmox.env')
    if os.path.exists(env_file) and not os.path.exists(marker):
        raise CheckError('lab_state_root', 'holds a proxmox.env that the lab did not write (an operator\'s token)',
                         where=env_file,
                         remediation='the lab never overwrites it: choose another state root (make demo DEMO_STATE_DIR=...)')
    if fresh and os.path.exists(marker):
        for entry in os.listdir(state_dir):
            path = os.path.join(state_dir, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    atomic_write(marker, 'This state root belongs to a lab (tests/demo/lab.py); `lab.py up --fresh` may empty it.\n',
                 mode=0o644)


def hosts_skip_reason(mode: str) -> str | None:
    if mode == 'no':
        return 'not asked for (--hosts no)'
    if os.geteuid() != 0:
        return 'not root: test hosts need network namespaces, mounts and debootstrap'
    missing = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    if missing:
        return f'missing tools {", ".join(missing)} (make setup as root installs them)'
    return None


def intent_ssh_users(intent_dir: str = INTENT_DIR) -> dict[str, str]:
    """The SSH user of each enabled Ubuntu node: a VM's cloud-init user, a container's root."""
    import yaml  # pylint: disable=import-outside-toplevel
    with open(os.path.join(intent_dir, 'nodes.yaml'), encoding='utf-8') as handle:
        nodes = (yaml.safe_load(handle) or {}).get('nodes', [])
    return {n['name']: n.get('ssh_user', 'root' if n.get('guest') == 'lxc' else 'ubuntu')
            for n in nodes if n.get('os') == 'ubuntu' and n.get('enabled', True)}


def testhosts(lab_dir: str, prefix: str, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    argv = [sys.executable, TESTHOSTS, '--state-dir', os.path.join(lab_dir, 'testhosts'), '--prefix', prefix, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def ssh_root(hosts: dict, address: str, script: str, *args: str) -> None:
    argv = ['ssh', '-i', hosts['key'], '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
            '-o', f'UserKnownHostsFile={hosts["known_hosts"]}', '-o', 'StrictHostKeyChecking=yes',
            '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'ConnectTimeout=10', f'root@{address}',
            'sh -s -- ' + ' '.join(shlex.quote(a) for a in args)]
    proc = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise CheckError('lab_hosts', f'setting up {address} failed: {proc.stderr.strip()}',
                         remediation='see the message; `python tests/demo/lab.py down` cleans up')


def hosts_up(lab_dir: str, prefix: str, intent_dir: str = INTENT_DIR) -> dict:
    """One test host per Ubuntu node of the intent, VM or container alike (keyed by address)."""
    proc = testhosts(lab_dir, prefix, 'up', '--intent', intent_dir, '--json')
    if proc.returncode != 0:
        raise CheckError('lab_hosts', f'testhosts up exited {proc.returncode}: {proc.stderr.strip()[-3000:]}',
                         remediation='see the message; `python tests/demo/lab.py down` cleans up')
    state = json.loads(proc.stdout)
    users = intent_ssh_users(intent_dir)
    for host in state['hosts']:
        user = users.get(host['name'], 'root')
        if user != 'root':
            ssh_root(state, host['ipv4'], CLOUD_INIT_USER, user)
        host['ssh_user'] = user
    return state


def groups_inventory(hosts: dict | None) -> str:
    """Connection settings for the SSH-managed groups: the test hosts' key and known hosts, become."""
    lines = ['# Written by tests/demo/lab.py: how Ansible reaches the lab\'s test hosts (no hosts here;',
             '# proxmox_dynamic.yml adds them from outputs.json).', 'all:', '  children:']
    if not hosts:
        return '\n'.join(lines[:3]) + '\n'
    common = (f'-o UserKnownHostsFile={hosts["known_hosts"]} -o StrictHostKeyChecking=yes '
              '-o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes')
    for group in ('base', 'docker'):
        lines += [f'    {group}:', '      vars:', '        ansible_become: true',
                  f'        ansible_ssh_private_key_file: {json.dumps(hosts["key"])}',
                  f'        ansible_ssh_common_args: {json.dumps(common)}',
                  '        ansible_host_key_checking: true',
                  '        ansible_python_interpreter: /usr/bin/python3']
    return '\n'.join(lines) + '\n'


def lab_vars(mirror: dict, pubkey: str, intent_dir: str | None = None) -> dict:
    """The lab's locations: the mirror stands in for the Ubuntu release directory, the Talos
    image factory and the Proxmox VE appliance index (the role derives every URL from these),
    and the test hosts' key; with another intent than inventory/dev, where its files are."""
    variables = {
        'templates_ubuntu_base_url': mirror['url'] + UBUNTU_DIR,
        'templates_talos_factory_url': mirror['url'] + TALOS_FACTORY_PATH,
        'templates_ubuntu_lxc_index_url': mirror['url'] + LXC_INDEX_DIR,
        'terraform_apply_ssh_public_key': pubkey,
    }
    if intent_dir and os.path.abspath(intent_dir) != INTENT_DIR:
        variables.update({key: os.path.join(os.path.abspath(intent_dir), name) for key, name in INTENT_LAB_VARS.items()})
    return variables


def up(args) -> dict:
    lab_dir, state_dir = os.path.abspath(args.lab_dir), os.path.abspath(args.state_dir)
    check_state_root(state_dir, args.fresh)
    if os.path.exists(os.path.join(lab_dir, LAB_FILE)):
        say('an earlier lab is still recorded here: taking it down first')
        down(args)
    os.makedirs(lab_dir, mode=0o700, exist_ok=True)
    # Every lab starts empty: a new simulator must not meet an old one's volumes or run logs.
    for name in ('pvesim', 'pvesim-data', 'mirror', 'runs'):
        shutil.rmtree(os.path.join(lab_dir, name), ignore_errors=True)
    lab: dict = {'lab_dir': lab_dir, 'state_dir': state_dir, 'prefix': args.prefix, 'token': args.token,
                 'intent_dir': os.path.abspath(getattr(args, 'intent', None) or INTENT_DIR),
                 'started_at': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}
    record = os.path.join(lab_dir, LAB_FILE)

    def save() -> None:
        atomic_write(record, json.dumps(lab, indent=2, sort_keys=True) + '\n', mode=0o600)

    try:
        lab['pvesim'] = start_server('pvesim', [sys.executable, '-m', 'tests.pvesim', '--listen', '127.0.0.1:0',
                                                '--write-env', os.path.join(lab_dir, 'pvesim'),
                                                '--data-dir', os.path.join(lab_dir, 'pvesim-data'),
                                                '--task-duration', '0.2', '--agent-delay', '1'], lab_dir)
        save()
        size = str(args.artefact_mib << 20)
        lab['mirror'] = start_server('mirror', [sys.executable, '-m', 'tests.pvesim.mirror', '--listen', '127.0.0.1:0',
                                                '--root', os.path.join(lab_dir, 'mirror'), '--precompute',
                                                '--artefact', f'{UBUNTU_IMAGE_PATH}:{size}',
                                                '--artefact', f'{TALOS_IMAGE_PATH}:{size}'],
                                     lab_dir)
        save()
        env_file = lab['pvesim']['env_files'][args.token]
        atomic_write(os.path.join(state_dir, 'proxmox.env'), render_env(read_env_file(env_file)), mode=0o600)
        lab['skipped_hosts'] = hosts_skip_reason(args.hosts)
        if lab['skipped_hosts'] and args.hosts == 'yes':
            raise CheckError('lab_hosts', f'test hosts asked for but {lab["skipped_hosts"]}',
                             remediation='run as root after `make setup`')
        lab['hosts'] = None
        lab['vars_file'] = os.path.join(state_dir, VARS_FILE)
        lab['groups_file'] = os.path.join(lab_dir, GROUPS_FILE)
        if not lab['skipped_hosts']:
            lab['hosts'] = hosts_up(lab_dir, args.prefix, lab['intent_dir'])
        save()
        write_connection_files(lab)
    except BaseException:
        say('up failed: removing what it started')
        down(args)
        raise
    return lab


def write_connection_files(lab: dict) -> None:
    """lab-vars.yml (the mirror's base URLs, the key cloud-init would install) and the SSH
    settings of the node groups, for the hosts as they are now."""
    if lab['hosts']:
        with open(lab['hosts']['key'] + '.pub', encoding='utf-8') as handle:
            pubkey = handle.read().strip()
    else:
        pubkey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEminfraLabNoTestHostsKeyOnly lab-without-hosts'
    atomic_write(lab['groups_file'], groups_inventory(lab['hosts']), mode=0o600)
    atomic_write(lab['vars_file'], json.dumps(lab_vars(lab['mirror'], pubkey, lab.get('intent_dir')), indent=2) + '\n',
                 mode=0o600)


def hosts(args) -> dict:
    """Start the test hosts for a lab that is up without them (the nodes come up late)."""
    lab = load(os.path.abspath(args.lab_dir))
    if not lab:
        raise CheckError('lab_missing', 'no lab is up here', where=os.path.join(args.lab_dir, LAB_FILE),
                         remediation='run `python tests/demo/lab.py up` first')
    reason = hosts_skip_reason('auto')
    if reason:
        raise CheckError('lab_hosts', f'cannot start test hosts: {reason}', remediation='run as root after `make setup`')
    lab['hosts'] = hosts_up(lab['lab_dir'], lab['prefix'], lab.get('intent_dir') or INTENT_DIR)
    lab['skipped_hosts'] = None
    atomic_write(os.path.join(lab['lab_dir'], LAB_FILE), json.dumps(lab, indent=2, sort_keys=True) + '\n', mode=0o600)
    write_connection_files(lab)
    return lab


def load(lab_dir: str) -> dict | None:
    try:
        with open(os.path.join(lab_dir, LAB_FILE), encoding='utf-8') as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def down(args) -> dict:
    lab_dir = os.path.abspath(args.lab_dir)
    lab = load(lab_dir) or {}
    stopped = []
    for name in ('mirror', 'pvesim'):
        info = lab.get(name) or {}
        # The lab directory is in each server's command line: a reused PID is never signalled.
        if stop_process(info.get('pid', 0), lab_dir):
            stopped.append(name)
    hosts = None
    prefix = lab.get('prefix', getattr(args, 'prefix', None))
    if prefix and os.geteuid() == 0 and os.path.isdir(os.path.join(lab_dir, 'testhosts')):
        proc = testhosts(lab_dir, prefix, 'down', timeout=300)
        hosts = proc.stdout.strip() or proc.stderr.strip()
        if proc.returncode != 0:
            say(f'testhosts down exited {proc.returncode}: {proc.stderr.strip()}')
    # The simulator's own env files carry its tokens' secrets; with the simulator gone they are of no
    # use, and the only copy that stays is the state root's proxmox.env.
    for name in glob.glob(os.path.join(lab_dir, 'pvesim', '*.env')):
        os.unlink(name)
    try:
        os.unlink(os.path.join(lab_dir, LAB_FILE))
    except FileNotFoundError:
        pass
    return {'stopped': stopped, 'hosts_down': hosts}


# ------------------------------------------------------------------------- running the pipeline
def ansible_env(lab: dict, results: str | None = None) -> dict[str, str]:
    env = checkout_env()
    env['EMINFRA_STATE_DIR'] = lab['state_dir']
    env['ANSIBLE_PIPELINING'] = 'True'
    if results:
        env['EMINFRA_TEST_RESULTS'] = results
        with_results_callback(env)
    return env


def mirror_bytes(lab: dict) -> int:
    """Artefact bytes the mirror has sent so far (its request log)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f'{lab["mirror"]["control"]}log', timeout=30) as response:
        data = json.loads(response.read())
    entries = data.get('log', data) if isinstance(data, dict) else data
    return sum(entry.get('sent') or 0 for entry in entries if entry.get('method') == 'GET')


def site(args) -> dict:
    lab = load(os.path.abspath(args.lab_dir))
    if not lab:
        raise CheckError('lab_missing', 'no lab is up here', where=os.path.join(args.lab_dir, LAB_FILE),
                         remediation='run `python tests/demo/lab.py up` first')
    runs = os.path.join(lab['lab_dir'], 'runs')
    os.makedirs(runs, exist_ok=True)
    number = len([n for n in os.listdir(runs) if n.endswith('.jsonl')]) + 1
    label = f'{number:02d}-{args.label}' if args.label else f'{number:02d}'
    results = os.path.join(runs, f'site-{label}.jsonl')
    log_path = os.path.join(runs, f'site-{label}.log')
    argv = [os.path.join(BIN, 'ansible-playbook'), '-i', INVENTORY, '-i', lab['groups_file'], SITE,
            '-e', f'@{lab["vars_file"]}', *args.playbook_args]
    open(results, 'w', encoding='utf-8').close()
    served_before = mirror_bytes(lab)
    started = time.monotonic()
    with open(log_path, 'w', encoding='utf-8') as log:
        log.write(f'$ {" ".join(shlex.quote(a) for a in argv)}\n')
        log.flush()
        proc = subprocess.Popen(argv, cwd=REPO, env=ansible_env(lab, results), stdout=subprocess.PIPE,  # pylint: disable=consider-using-with
                                stderr=subprocess.STDOUT, text=True, errors='replace')
        try:
            for line in proc.stdout:
                log.write(line)
                if not args.quiet:
                    sys.stderr.write(line)
                    sys.stderr.flush()
            rc = proc.wait()
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM): the playbook stops too, before the lab goes down.
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
    with open(results, encoding='utf-8') as handle:
        entries = [json.loads(line) for line in handle if line.strip()]
    changed: dict[str, list[str]] = {}
    configured: dict[str, list[str]] = {}
    terraform = None
    for entry in entries:
        result = entry['result']
        if entry['status'] == 'ok' and result.get('changed'):
            changed.setdefault(entry['host'], []).append(entry['task'])
            # A result carrying run_id is the run's own record in latest.env, not a change to a node.
            if entry['host'] != 'localhost' and 'run_id' not in result:
                configured.setdefault(entry['host'], []).append(entry['task'])
        if entry['status'] == 'ok' and isinstance(result.get('counts'), dict) and 'workdir' in result:
            terraform = result['counts']
    latest = os.path.join(lab['state_dir'], 'runs', 'latest.env')
    run_id = read_env_file(latest).get('RUN_ID') if os.path.exists(latest) else None
    summary = {'rc': rc, 'run_id': run_id, 'seconds': round(time.monotonic() - started, 1), 'log': log_path,
               'results': results, 'changed': changed, 'changed_on_nodes': configured, 'terraform_counts': terraform,
               'argv': argv, 'mirror_bytes': mirror_bytes(lab) - served_before}
    atomic_write(os.path.join(runs, f'site-{label}.json'), json.dumps(summary, indent=2, sort_keys=True) + '\n', mode=0o600)
    return summary


def graph(args) -> int:
    lab = load(os.path.abspath(args.lab_dir)) or {'state_dir': os.path.abspath(args.state_dir)}
    argv = [os.path.join(BIN, 'ansible-inventory'), '-i', INVENTORY, '--graph']
    return subprocess.run(argv, cwd=REPO, env=ansible_env(lab), check=False).returncode


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--lab-dir', required=True, help='the lab\'s own files (servers, test hosts, logs)')
    parser.add_argument('--state-dir', default=os.path.join(REPO, 'state', 'demo'), help='the pipeline\'s state root')
    parser.add_argument('--prefix', default='emlab', help='test host lab prefix (1-8 of [a-z0-9])')
    sub = parser.add_subparsers(dest='command', required=True)
    p_up = sub.add_parser('up')
    p_up.add_argument('--token', default='full', choices=('full', 'noacl', 'nodownload'),
                      help='which pvesim token goes into proxmox.env')
    p_up.add_argument('--hosts', default='auto', choices=('auto', 'yes', 'no'),
                      help='test hosts for the SSH-managed nodes (auto: when root)')
    p_up.add_argument('--artefact-mib', type=int, default=64, help='size of each generated artefact')
    p_up.add_argument('--fresh', action='store_true', help='empty the state root first (only a lab\'s own)')
    p_up.add_argument('--intent', default=INTENT_DIR,
                      help='the intent directory (cluster.yaml, nodes.yaml); default inventory/dev')
    sub.add_parser('down')
    sub.add_parser('hosts', help='start the test hosts for a lab that is up without them')
    p_site = sub.add_parser('site')
    p_site.add_argument('--label', default='', help='a word for the log file names')
    p_site.add_argument('--quiet', action='store_true', help='the playbook output goes to the log only')
    p_site.add_argument('playbook_args', nargs=argparse.REMAINDER, help='after --: ansible-playbook arguments')
    sub.add_parser('graph')
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, 'playbook_args', None) and args.playbook_args[0] == '--':
        args.playbook_args = args.playbook_args[1:]
    try:
        if args.command == 'up':
            print(json.dumps(up(args), sort_keys=True))
        elif args.command == 'hosts':
            print(json.dumps(hosts(args), sort_keys=True))
        elif args.command == 'down':
            print(json.dumps(down(args)))
        elif args.command == 'site':
            result = site(args)
            print(json.dumps(result, sort_keys=True))
            return 0 if result['rc'] == 0 else 1
        elif args.command == 'graph':
            return graph(args)
    except CheckError as err:
        print(str(err), file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
