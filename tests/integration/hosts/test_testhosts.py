# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""tests/hosts/testhosts.py: configuration parsing, refusal without root, and (as root) hosts
that answer SSH, stay isolated, and leave nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from tests.integration.hosts.conftest import SCRIPT, LabCli, leftovers, load_testhosts, requires_root

th = load_testhosts()


def test_apt_sources_deb822_and_one_line(tmp_path):
    sources = tmp_path / 'debian.sources'
    sources.write_text(
        'Types: deb deb-src\nURIs: http://mirror.test/debian\nSuites: bookworm bookworm-updates\nComponents: main\n'
        'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n'
        'Types: deb-src\nURIs: http://src-only.test/debian\nSuites: bookworm\nComponents: main\n\n'
        'Types: deb\nURIs: http://disabled.test/debian\nSuites: bookworm\nEnabled: no\n')
    one_line = tmp_path / 'sources.list'
    one_line.write_text('# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://security.test/debian-security bookworm-security main\n'
                        'deb file:/srv/local ./\n')
    mirrors = th.machine_apt_mirrors((str(sources), str(one_line)))
    assert mirrors == [
        {'uri': 'http://mirror.test/debian', 'suites': ['bookworm', 'bookworm-updates'], 'components': ['main']},
        {'uri': 'http://security.test/debian-security', 'suites': ['bookworm-security'], 'components': ['main']},
    ]
    assert th.primary_mirror(mirrors) == 'http://mirror.test/debian'
    assert th.host_sources_list(mirrors).splitlines()[1:] == [
        'deb http://mirror.test/debian bookworm main',
        'deb http://mirror.test/debian bookworm-updates main',
        'deb http://security.test/debian-security bookworm-security main',
    ]


def test_no_bookworm_mirror_is_a_named_check():
    with pytest.raises(th.CheckError) as err:
        th.primary_mirror([{'uri': 'http://x.test/debian', 'suites': ['trixie'], 'components': ['main']}])
    assert str(err.value).startswith('testhosts_apt_mirror: ')
    assert 'Remediation:' in str(err.value)


def test_lab_defaults_and_refusals():
    lab = th.validate_lab('emt', [('utility-01', '10.77.0.20'), ('b', '10.77.0.21')], None, None)
    assert lab['cidr'] == '10.77.0.0/24' and lab['gateway'] == '10.77.0.1' and lab['prefixlen'] == 24
    # Interface names stay within 15 characters and one prefix never matches another's.
    longest = th.names_for('abcdef', {'name': 'x', 'ipv4': '10.255.255.255'})
    assert longest['peer'] == 'abcdefv255x255p' and len(longest['peer']) == 15
    assert th.is_lab_link('emt', 'emtv0x20') and th.is_lab_link('emt', 'emtv0x20p') and th.is_lab_link('emt', 'emt-br')
    assert not th.is_lab_link('emt', 'emtvv0x20') and not th.is_lab_link('emtv', 'emtv0x20')
    assert not th.is_lab_link('emt', 'emt1v0x20') and not th.is_lab_link('emt', 'eth0')
    assert th.names_for('emt', lab['nodes'][0]) == {'netns': 'emt-utility-01', 'veth': 'emtv0x20', 'peer': 'emtv0x20p'}
    bad = [
        (('emt', [('a', '10.77.0.20')], '10.78.0.1', None), 'outside'),
        (('emt', [('a', '10.77.0.20'), ('b', '10.77.0.20')], None, None), 'repeats'),
        (('emt', [('a', '10.77.0.1')], None, None), 'other than the gateway'),
        (('emt', [('A_b', '10.77.0.5')], None, None), 'lowercase'),
        (('emt1234', [('a', '10.77.0.5')], None, None), 'prefix'),
        (('emt', [], None, None), 'no SSH-managed nodes'),
    ]
    for args, fragment in bad:
        with pytest.raises(th.CheckError) as err:
            th.validate_lab(*args)
        assert err.value.check == 'testhosts_usage' and fragment in str(err.value), args


def test_nodes_from_outputs_and_intent(tmp_path):
    outputs = tmp_path / 'outputs.json'
    outputs.write_text('{"nodes": [{"name": "lab-01", "ipv4": "10.9.9.10", "ssh_user": "ubuntu", "groups": ["base"]}]}')
    intent = tmp_path / 'dev'
    intent.mkdir()
    (intent / 'nodes.yaml').write_text(
        'nodes:\n'
        '  - {name: cp-01, role: controlplane, os: talos, vmid: 101, cores: 2, memory: 2048, disk: 10, ipv4: 10.9.9.11}\n'
        '  - {name: util-01, role: utility, os: ubuntu, vmid: 120, cores: 2, memory: 2048, disk: 10, ipv4: 10.9.9.20}\n'
        '  - {name: util-02, role: utility, os: ubuntu, enabled: false, vmid: 121, cores: 2, memory: 2048, disk: 10,'
        ' ipv4: 10.9.9.21}\n')
    (intent / 'cluster.yaml').write_text('cluster:\n  network: {cidr: 10.9.9.0/24, gateway: 10.9.9.254, dns: [10.9.9.254]}\n')
    args = th.build_parser().parse_args(['up', '--outputs', str(outputs), '--intent', str(intent), '--ssh-user', 'admin',
                                         'extra=10.9.9.30'])
    nodes, gateway, cidr, ssh_users = th.parse_nodes(args)
    assert nodes == [('extra', '10.9.9.30'), ('lab-01', '10.9.9.10'), ('util-01', '10.9.9.20')]
    assert (gateway, cidr) == ('10.9.9.254', '10.9.9.0/24')
    assert ssh_users == {'lab-01': 'ubuntu', 'extra': 'admin', 'util-01': 'admin'}
    lab = th.validate_lab('emt', nodes, gateway, cidr, ssh_users)
    assert lab['nodes'][1] == {'name': 'lab-01', 'ipv4': '10.9.9.10', 'ssh_user': 'ubuntu'}
    with pytest.raises(th.CheckError) as err:
        th.validate_lab('emt', nodes, gateway, cidr, {'lab-01': 'root'})
    assert 'not a plain account name' in str(err.value)


def test_refuses_without_root_with_its_own_exit_code(tmp_path):
    if os.geteuid() == 0:
        python = shutil.which('python3', path='/usr/bin:/bin')
        argv = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', python, SCRIPT,
                '--state-dir', str(tmp_path), 'status']
    else:
        argv = ['python3', SCRIPT, '--state-dir', str(tmp_path), 'status']
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == th.EXIT_NOT_ROOT == 3
    assert 'needs root' in proc.stderr


@requires_root
@pytest.mark.root
def test_up_ssh_isolation_proxy_and_clean_down(lab_factory):
    lab = lab_factory('emti')
    machine_hostname = socket.gethostname()
    state = lab.up('t1=10.199.71.10', '--ssh-user', 'ubuntu', cidr='10.199.71.0/24')
    host = state['hosts'][0]
    assert host['isolation']['net'] == host['isolation']['uts'] == host['isolation']['pid'] == 'own'
    assert lab.ssh('10.199.71.10', 'true').returncode == 0
    # The node's ssh_user, as a cloud image leaves it: the key and password-less sudo.
    assert lab.ssh('10.199.71.10', 'sudo -n id -u', user='ubuntu').stdout.strip() == '0'
    inside = lab.ssh('10.199.71.10', 'hostname; cat /proc/1/comm; . /etc/os-release; echo $VERSION_CODENAME').stdout.split()
    assert inside == ['t1', 'sshd', 'bookworm']
    assert socket.gethostname() == machine_hostname
    # The machine's kernel settings stay out of reach; the host's own network keys do not.
    denied = lab.ssh('10.199.71.10', 'echo 1 > /proc/sys/vm/swappiness', check=False)
    assert denied.returncode != 0 and 'Read-only file system' in denied.stderr
    assert lab.ssh('10.199.71.10', 'sysctl -w net.ipv4.ip_forward=1').returncode == 0
    # No route leaves the test network.
    routes = lab.ssh('10.199.71.10', 'cat /proc/net/route').stdout.splitlines()[1:]
    assert [line.split()[1] for line in routes] == ['0047C70A']  # 10.199.71.0, the /24 only
    # The proxy forwards to the machine's Debian mirrors only.
    with socket.create_connection((state['gateway'], 3142), timeout=10) as conn:
        conn.sendall(b'GET http://not-a-mirror.invalid/x HTTP/1.1\r\nHost: not-a-mirror.invalid\r\n\r\n')
        reply = conn.recv(4096).decode()
    assert reply.startswith('HTTP/1.1 403')
    status = lab.run('status').stdout
    assert '"running": true' in status
    removed = lab.down()
    assert removed['netns'] == ['emti-t1'] and removed['processes']
    assert leftovers('emti', lab.state_dir) == {'netns': [], 'links': [], 'mounts': [], 'processes': [], 'host_dirs': []}
    assert lab.down() == {'processes': [], 'netns': [], 'links': [], 'dirs': []}


@requires_root
@pytest.mark.root
def test_up_after_a_killed_run_cleans_leftovers(lab_factory):
    lab = lab_factory('emtk')
    nodes = ('k1=10.199.73.10', 'k2=10.199.73.11')
    # An `up` killed half way: the first host's namespace exists, the rest does not.
    killed = subprocess.Popen(lab.argv('up', '--cidr', '10.199.73.0/24', *nodes),  # pylint: disable=consider-using-with
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and 'emtk-k1' not in subprocess.run(
            ['ip', 'netns', 'list'], capture_output=True, text=True, check=False).stdout:
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    partial = leftovers('emtk', lab.state_dir)
    assert partial['netns'] and 'emtk-br' in partial['links']
    proc = lab.run('up', '--cidr', '10.199.73.0/24', *nodes)
    assert 'removed leftovers of an earlier run' in proc.stderr
    # A completed run that was never taken down: `up` again replaces it.
    proc = lab.run('up', '--cidr', '10.199.73.0/24', *nodes)
    assert 'removed leftovers of an earlier run' in proc.stderr
    assert lab.ssh('10.199.73.10', 'true').returncode == 0
    assert lab.ssh('10.199.73.11', 'true').returncode == 0
    status = json.loads(lab.run('status').stdout)
    assert [h['running'] for h in status['hosts']] == [True, True]
    assert len(status['proxy_pids']) == 1
    assert sorted(status['netns']) == ['emtk-k1', 'emtk-k2']
    lab.down()
    assert leftovers('emtk', lab.state_dir) == {'netns': [], 'links': [], 'mounts': [], 'processes': [], 'host_dirs': []}


@requires_root
@pytest.mark.root
def test_down_without_the_state_directory_still_stops_the_lab(lab_factory, tmp_path):
    lab = lab_factory('emts')
    lab.up('s1=10.199.75.10', cidr='10.199.75.0/24')
    stranger = LabCli(str(tmp_path / 'other-state'), 'emts')
    removed = json.loads(stranger.run('down').stdout)
    assert removed['netns'] == ['emts-s1'] and 'emts-br' in removed['links']
    gone = leftovers('emts', lab.state_dir)
    assert gone['netns'] == [] and gone['links'] == [] and gone['processes'] == [] and gone['mounts'] == []
    assert json.loads(lab.run('status').stdout)['proxy_pids'] == []
    # The lab's own down then removes its files; a new lab of the prefix starts cleanly.
    lab.down()
    lab.up('s1=10.199.75.10', cidr='10.199.75.0/24')
    assert lab.ssh('10.199.75.10', 'true').returncode == 0
    lab.down()
