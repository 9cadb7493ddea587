# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A malformed outputs.json fails the inventory source, naming the check, the file and the field.

Ansible turns a failed inventory source into a warning unless any_unparsed_is_failed is set; these
runs set it (ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED), as the pipeline's ansible_inventory step
must, and one test shows the same message under the default setting.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile

import pytest

from tests.integration.inventory.conftest import write_source

STRICT = {'ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED': 'true'}
REMEDIATION = 'Remediation: re-run the terraform_apply step'


def node(**changes):
    base = {'name': 'lab-01', 'ipv4': '192.168.1.10', 'ssh_user': 'ubuntu', 'ssh_port': 22, 'groups': ['base', 'docker']}
    base.update(changes)
    return {key: value for key, value in base.items() if value is not ...}


def talos(**changes):
    base = {'name': 'cp-01', 'ipv4': '192.168.1.20', 'role': 'controlplane', 'vmid': 101}
    base.update(changes)
    return base


BAD = {
    'invalid_json': ('{"nodes": [', 'not valid JSON: Expecting value at line 1 column 12'),
    'truncated_json': (json.dumps({'nodes': [node()]})[:-3], 'not valid JSON'),
    'top_level_list': ([node()], "[{'name': 'lab-01'"),
    'nodes_not_a_list': ({'nodes': {'lab-01': node()}}, "nodes: {'lab-01': {"),
    'no_nodes_key': ({'talos_nodes': []}, 'nodes: missing required key'),
    'missing_ipv4': ({'nodes': [node(ipv4=...)]}, 'nodes[0].ipv4: missing required key'),
    'missing_two_keys': ({'nodes': [node(), node(name='lab-02', ssh_user=..., groups=...)]},
                         'nodes[1].ssh_user: missing required key; nodes[1].groups: missing required key'),
    'port_as_string': ({'nodes': [node(ssh_port='22')]}, "nodes[0].ssh_port: '22' is not of type 'integer'"),
    'port_as_bool': ({'nodes': [node(ssh_port=True)]}, "nodes[0].ssh_port: True is not of type 'integer'"),
    'port_too_high': ({'nodes': [node(ssh_port=70000)]}, 'nodes[0].ssh_port: 70000 is greater than 65535'),
    'port_zero': ({'nodes': [node(ssh_port=0)]}, 'nodes[0].ssh_port: 0 is less than 1'),
    'ipv4_out_of_range': ({'nodes': [node(ipv4='192.168.1.300')]}, "nodes[0].ipv4: '192.168.1.300' does not match"),
    'ipv4_hostname': ({'nodes': [node(ipv4='lab-01.example')]}, "nodes[0].ipv4: 'lab-01.example' does not match"),
    'groups_a_string': ({'nodes': [node(groups='base')]}, "nodes[0].groups: 'base' is not of type 'array'"),
    'empty_group_name': ({'nodes': [node(groups=['base', ''])]}, "nodes[0].groups[1]: '' should be non-empty"),
    'group_name_not_a_string': ({'nodes': [node(groups=['base', 7])]}, "nodes[0].groups[1]: 7 is not of type 'string'"),
    'empty_name': ({'nodes': [node(name='')]}, "nodes[0].name: '' should be non-empty"),
    'schema_version': ({'schema_version': 2, 'nodes': [node()]}, 'schema_version: 1 was expected'),
    'host_named_localhost': ({'nodes': [node(name='localhost')]},
                             "nodes[0].name: 'localhost' is a name Ansible reserves"),
    'talos_host_named_all': ({'nodes': [node()], 'talos_nodes': [talos(name='all')]},
                             "talos_nodes[0].name: 'all' is a name Ansible reserves"),
    'host_named_like_a_play_group': ({'nodes': [node(name='docker')]}, "nodes[0].name: 'docker' is a group of the pipeline"),
    'group_named_localhost': ({'nodes': [node(groups=['base', 'localhost'])]},
                              "nodes[0].groups[1]: 'localhost' is a name Ansible reserves"),
    'group_named_ungrouped': ({'nodes': [node(groups=['ungrouped'])]},
                              "nodes[0].groups[0]: 'ungrouped' is a name Ansible reserves"),
    'duplicate_host': ({'nodes': [node(), node(ipv4='192.168.1.11')]},
                       "nodes[1].name: duplicate host name 'lab-01', already used by nodes[0].name"),
    'duplicate_talos': ({'nodes': [node(name='cp-01')], 'talos_nodes': [talos()]},
                        "talos_nodes[0].name: duplicate host name 'cp-01', already used by nodes[0].name"),
    'talos_role': ({'nodes': [], 'talos_nodes': [talos(role='etcd')]},
                   "talos_nodes[0].role: 'etcd' is not one of 'controlplane', 'worker', 'gpu-worker'"),
    'talos_vmid': ({'nodes': [], 'talos_nodes': [talos(vmid='101')]}, "talos_nodes[0].vmid: '101' is not of type 'integer'"),
    'many_errors_sorted': ({'nodes': [node(ssh_port=0, ipv4=...), node(name='lab-02', groups=[''])]},
                           "nodes[0].ipv4: missing required key; nodes[0].ssh_port: 0 is less than 1; "
                           "nodes[1].groups[0]: '' should be non-empty"),
}


def one_line(text: str) -> str:
    return re.sub(r'\s+', ' ', text)


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_outputs_fail_naming_the_field(inventory_run, tmp_path, case):
    outputs, expected = BAD[case]
    source = write_source(tmp_path, outputs if isinstance(outputs, str) else json.dumps(outputs))
    proc = inventory_run('-i', source, '--list', env=STRICT)
    assert proc.returncode != 0
    stderr = one_line(proc.stderr)
    assert 'terraform_outputs_valid: ' in stderr
    assert expected in stderr
    assert os.path.join(str(tmp_path), 'outputs.json') in stderr
    assert REMEDIATION in stderr
    assert 'Traceback' not in proc.stderr


def test_project_config_stops_on_a_malformed_file(inventory_run, tmp_path):
    """The checkout's ansible.cfg sets any_unparsed_is_failed: a bad outputs.json stops the run."""
    source = write_source(tmp_path, {'nodes': [node(ssh_port=70000)]})
    proc = inventory_run('-i', source, '--graph')
    assert proc.returncode != 0
    assert 'lab-01' not in proc.stdout
    assert 'terraform_outputs_valid: nodes[0].ssh_port: 70000 is greater than 65535' in one_line(proc.stderr)


def test_directory_in_place_of_the_file(inventory_run, tmp_path):
    source = write_source(tmp_path, None)
    os.mkdir(tmp_path / 'outputs.json')
    proc = inventory_run('-i', source, '--list', env=STRICT)
    assert proc.returncode != 0
    stderr = one_line(proc.stderr)
    assert f'terraform_outputs_valid: {tmp_path}/outputs.json: cannot read: Is a directory' in stderr


def test_unreadable_file(inventory_run, tmp_path):
    """chmod 000 does not stop root, so as root the run drops to the nobody user (setpriv)."""
    argv_prefix = []
    work = str(tmp_path)
    env = dict(STRICT)
    if os.geteuid() == 0:
        if not shutil.which('setpriv'):
            pytest.skip('root reads a file whatever its mode, and setpriv (util-linux) is not there to drop to nobody')
        work = tempfile.mkdtemp(prefix='inventory-unreadable-')
        os.chmod(work, 0o755)
        home = os.path.join(work, 'home')
        os.mkdir(home)
        os.chown(home, 65534, 65534)
        env.update({'HOME': home, 'ANSIBLE_LOCAL_TEMP': os.path.join(home, 'tmp')})
        argv_prefix = ['--reuid', '65534', '--regid', '65534', '--clear-groups', inventory_run.binary('ansible-inventory')]
    try:
        source = write_source(work, {'nodes': [node()]})
        os.chmod(source, 0o644)
        os.chmod(os.path.join(work, 'outputs.json'), 0)
        if argv_prefix:
            # an absolute command replaces the virtualenv's bin directory
            proc = inventory_run(*argv_prefix, '-i', source, '--list', env=env, command=shutil.which('setpriv'))
        else:
            proc = inventory_run('-i', source, '--list', env=env)
        assert proc.returncode != 0
        assert f'terraform_outputs_valid: {work}/outputs.json: cannot read: Permission denied' in one_line(proc.stderr)
    finally:
        if work != str(tmp_path):
            shutil.rmtree(work)


def test_missing_file_is_an_empty_inventory_with_one_warning(inventory_run, tmp_path):
    source = write_source(tmp_path, None)
    proc = inventory_run('-i', source, '--graph', env=STRICT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['@all:', '|--@ungrouped:']
    assert proc.stderr.count('[WARNING]') == 1
    assert f'terraform_outputs_valid: {tmp_path}/outputs.json: not found' in one_line(proc.stderr)


def test_source_name_must_end_proxmox_dynamic(inventory_run, tmp_path):
    source = write_source(tmp_path, {'nodes': [node()]}, name='outputs_inventory.yml')
    proc = inventory_run('-i', source, '--list', env={'ANSIBLE_INVENTORY_ENABLED': 'eminfra.pipeline.proxmox_dynamic'})
    assert 'lab-01' not in proc.stdout
    assert proc.returncode != 0  # the checkout's ansible.cfg sets any_unparsed_is_failed
    assert 'failed to parse' in proc.stderr.lower() or 'unable to parse' in proc.stderr.lower()
