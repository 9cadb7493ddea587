# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Roles node_base and node_docker applied over SSH to two test hosts: check mode, a real run,
the effects seen from outside, and a second run with nothing changed."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess

import pytest
import yaml

from tests.integration.hosts.conftest import REPO, LabCli, leftovers, requires_root

pytestmark = [requires_root, pytest.mark.root, pytest.mark.slow]

CIDR = '10.199.72.0/24'
R1, R2 = '10.199.72.10', '10.199.72.11'
RECAP = re.compile(r'^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', re.M)
PLAYBOOK = [
    {'name': 'Baseline of the SSH-managed nodes', 'hosts': 'base', 'gather_facts': True,
     'roles': ['eminfra.pipeline.node_base']},
    {'name': 'Docker on the docker nodes', 'hosts': 'docker', 'gather_facts': False,
     'roles': ['eminfra.pipeline.node_docker']},
]


def read_sysctl(key: str) -> str:
    with open('/proc/sys/' + key.replace('.', '/'), encoding='utf-8') as handle:
        return handle.read().strip()


@pytest.fixture(scope='module')
def nodes(tmp_path_factory):
    work = tmp_path_factory.mktemp('node-roles')
    lab = LabCli(str(work / 'state'), 'emtr')
    machine = {'hostname': socket.gethostname(),
               'sysctl': {k: read_sysctl(k) for k in ('fs.inotify.max_user_watches', 'net.ipv4.ip_forward')}}
    lab.up(f'r1={R1}', f'r2={R2}', cidr=CIDR)
    with open(lab.key + '.pub', encoding='utf-8') as handle:
        pubkey = handle.read().strip()
    common = {'ansible_user': 'root', 'ansible_port': 22, 'ansible_ssh_private_key_file': lab.key,
              'ansible_python_interpreter': '/usr/bin/python3',
              'ansible_ssh_common_args': f'-o UserKnownHostsFile={lab.known_hosts} -o StrictHostKeyChecking=yes '
                                         '-o GlobalKnownHostsFile=/dev/null -o IdentitiesOnly=yes',
              'node_base_admin_ssh_public_keys': [pubkey]}
    inventory = {'all': {'vars': common, 'children': {
        'base': {'hosts': {'r1': {'ansible_host': R1, 'node_base_hostname': 'node-r1'},
                           'r2': {'ansible_host': R2, 'node_base_hostname': 'node-r2.lab.test'}}},
        'docker': {'hosts': {'r1': {}}}}}}
    (work / 'inventory.yml').write_text(yaml.safe_dump(inventory))
    (work / 'site.yml').write_text(yaml.safe_dump(PLAYBOOK, sort_keys=False))
    yield {'lab': lab, 'work': work, 'machine': machine}
    lab.run('down', check=False)


def playbook(nodes, *extra: str) -> tuple[str, dict]:
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, 'ansible.cfg'), ANSIBLE_PIPELINING='True',
               ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0')
    bindir = os.path.dirname(os.path.abspath(os.sys.executable))
    env['PATH'] = f'{bindir}:{env["PATH"]}'
    proc = subprocess.run([os.path.join(bindir, 'ansible-playbook'), '-i', str(nodes['work'] / 'inventory.yml'),
                           str(nodes['work'] / 'site.yml'), *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False)
    recap = {m[0]: {'ok': int(m[1]), 'changed': int(m[2]), 'unreachable': int(m[3]), 'failed': int(m[4])}
             for m in RECAP.findall(proc.stdout)}
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert set(recap) == {'r1', 'r2'}, proc.stdout[-3000:]
    return proc.stdout, recap


@pytest.fixture(scope='module')
def runs(nodes):
    lab = nodes['lab']
    before = lab.ssh(R1, 'true', user='nobody-here', check=False).stderr
    check_out, check_recap = playbook(nodes, '--check')
    first_out, first_recap = playbook(nodes)
    second_out, second_recap = playbook(nodes)
    check_after_out, check_after_recap = playbook(nodes, '--check', '--diff')
    return {'before_denied': before, 'check': (check_out, check_recap), 'first': (first_out, first_recap),
            'second': (second_out, second_recap), 'check_after': (check_after_out, check_after_recap)}


def test_check_mode_runs_and_reports(runs):
    out, recap = runs['check']
    assert all(r['failed'] == 0 and r['unreachable'] == 0 for r in recap.values())
    assert 'check mode: packages not checked: python3-apt is not installed yet' in out


def test_first_run_changes_second_run_changes_nothing(runs):
    first = runs['first'][1]
    second = runs['second'][1]
    assert first['r1']['changed'] > 0 and first['r2']['changed'] > 0
    assert {h: r['changed'] for h, r in second.items()} == {'r1': 0, 'r2': 0}
    assert all(r['failed'] == 0 for r in second.values())


def test_check_mode_on_configured_nodes_predicts_no_change(runs):
    out, recap = runs['check_after']
    assert {h: (r['changed'], r['failed']) for h, r in recap.items()} == {'r1': (0, 0), 'r2': (0, 0)}
    assert 'check mode: packages not checked' not in out


def test_packages_installed(nodes, runs):
    lab = nodes['lab']
    for address in (R1, R2):
        lab.ssh(address, 'dpkg -s sudo openssh-server tzdata ca-certificates curl >/dev/null')
    lab.ssh(R1, 'dpkg -s docker.io containerd >/dev/null')
    assert lab.ssh(R2, 'dpkg -s docker.io', check=False).returncode != 0


def test_admin_user_key_and_sudo(nodes, runs):
    lab = nodes['lab']
    assert lab.ssh(R1, 'getent passwd eminfra').stdout.strip().endswith(':/home/eminfra:/bin/bash')
    assert lab.ssh(R1, 'sudo -n id -u', user='eminfra').stdout.strip() == '0'
    assert lab.ssh(R2, 'sudo -n id -u', user='eminfra').stdout.strip() == '0'
    sudoers = '/etc/sudoers.d/90-eminfra-eminfra'
    assert lab.ssh(R1, f'stat -c %a:%U {sudoers}').stdout.strip() == '440:root'
    assert lab.ssh(R1, f'visudo -cf {sudoers}').returncode == 0
    assert lab.ssh(R1, 'stat -c %a /home/eminfra/.ssh/authorized_keys').stdout.strip() == '600'


def test_sshd_hardened_and_reloaded(nodes, runs):
    lab = nodes['lab']
    # Before the role the running sshd offered passwords; after it only keys.
    assert 'Permission denied (publickey,password)' in runs['before_denied']
    after = lab.ssh(R1, 'true', user='nobody-here', check=False).stderr
    assert 'Permission denied (publickey).' in after
    assert lab.ssh(R1, 'test -f /etc/ssh/sshd_config.d/01-eminfra-hardening.conf && sshd -t').returncode == 0
    effective = lab.ssh(R1, 'sshd -T').stdout.splitlines()
    assert 'passwordauthentication no' in effective
    assert 'kbdinteractiveauthentication no' in effective
    assert 'permitrootlogin without-password' in effective
    # The reload kept the listener: still PID 1 of the host.
    assert lab.ssh(R1, 'cat /proc/1/comm').stdout.strip() == 'sshd'
    first_out = runs['first'][0]
    assert 'RUNNING HANDLER [eminfra.pipeline.node_base : Reload sshd by SIGHUP (no service manager)]' in first_out


def test_hostname_timezone_and_machine_untouched(nodes, runs):
    lab = nodes['lab']
    assert lab.ssh(R1, 'hostname; cat /etc/hostname').stdout.split() == ['node-r1', 'node-r1']
    assert lab.ssh(R2, 'hostname').stdout.strip() == 'node-r2.lab.test'
    assert '127.0.1.1\tnode-r2.lab.test node-r2' in lab.ssh(R2, 'cat /etc/hosts').stdout
    assert socket.gethostname() == nodes['machine']['hostname']
    assert lab.ssh(R1, 'cat /etc/timezone; readlink /etc/localtime').stdout.split() == [
        'Etc/UTC', '/usr/share/zoneinfo/Etc/UTC']


def test_sysctl_written_applied_in_the_namespace_only(nodes, runs):
    lab = nodes['lab']
    conf = lab.ssh(R1, 'cat /etc/sysctl.d/90-eminfra-node.conf').stdout
    assert 'fs.inotify.max_user_watches = 524288' in conf and 'net.ipv4.ip_forward = 1' in conf
    assert lab.ssh(R1, 'sysctl -n net.ipv4.ip_forward net.ipv4.conf.all.rp_filter').stdout.split() == ['1', '1']
    for key, value in nodes['machine']['sysctl'].items():
        assert read_sysctl(key) == value, key
    out = runs['first'][0]
    assert ('fs.inotify.max_user_watches: not applied: the kernel is shared with other systems and the key '
            'is outside the network namespace of the node') in re.sub(r'\s+', ' ', out)
    assert "kernel: shared with other systems" in out


def test_docker_config_group_and_service_report(nodes, runs):
    lab = nodes['lab']
    daemon = json.loads(lab.ssh(R1, 'cat /etc/docker/daemon.json').stdout)
    assert daemon == {'log-driver': 'json-file', 'log-opts': {'max-size': '10m', 'max-file': '3'}}
    assert 'docker' in lab.ssh(R1, 'id -nG eminfra').stdout.split()
    assert 'docker' not in lab.ssh(R2, 'id -nG eminfra').stdout.split()
    for out, dummy in (runs['first'], runs['second']):
        assert 'service manager: none, docker service not enabled' in out
    # Nothing started dockerd in a kernel shared with the machine.
    assert lab.ssh(R1, 'pgrep -x dockerd', check=False).returncode == 1


def test_down_leaves_nothing(nodes, runs):
    lab = nodes['lab']
    lab.down()
    assert leftovers('emtr', lab.state_dir) == {'netns': [], 'links': [], 'mounts': [], 'processes': [], 'host_dirs': []}
