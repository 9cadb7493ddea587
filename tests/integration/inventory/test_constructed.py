# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""compose, groups and keyed_groups honour strict, and reused compiled expressions stay per host."""

from __future__ import annotations

import json
import os

import yaml

from tests.ansible_run import without_unsafe
from tests.integration.inventory.conftest import GOLDEN, write_source

STRICT_SOURCE = {'ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED': 'true'}
OUTPUTS = {'nodes': [
    {'name': 'lab-01', 'ipv4': '192.168.1.10', 'ssh_user': 'ubuntu', 'groups': ['base'], 'rack': 'r1'},
    {'name': 'lab-02', 'ipv4': '192.168.1.11', 'ssh_user': 'debian', 'groups': ['base'], 'rack': 'r2', 'gpu': True},
]}


def test_strict_compose_fails_on_an_undefined_variable(inventory_run, tmp_path):
    source = write_source(tmp_path, OUTPUTS, config='strict: true\ncompose:\n  has_gpu: eminfra_gpu\n')
    proc = inventory_run('-i', source, '--list', env=STRICT_SOURCE)
    assert proc.returncode != 0
    assert 'Could not set has_gpu for host lab-01' in proc.stderr


def test_lenient_compose_skips_the_host(inventory_run, tmp_path):
    source = write_source(tmp_path, OUTPUTS, config='strict: false\ncompose:\n  has_gpu: eminfra_gpu\n')
    listed, dummy = inventory_run.list(source)
    assert 'has_gpu' not in listed['_meta']['hostvars']['lab-01']
    assert listed['_meta']['hostvars']['lab-02']['has_gpu'] is True


def test_strict_keyed_groups_fail_on_an_undefined_key(inventory_run, tmp_path):
    source = write_source(tmp_path, OUTPUTS, config='strict: true\nkeyed_groups:\n  - key: eminfra_gpu\n    prefix: gpu\n')
    proc = inventory_run('-i', source, '--list', env=STRICT_SOURCE)
    assert proc.returncode != 0
    assert 'Could not generate group for host lab-01' in proc.stderr


def test_each_host_gets_its_own_result(inventory_run, tmp_path):
    """One compiled expression, evaluated with each host's own variables; backslashes kept as written."""
    config = ('strict: true\ncompose:\n  where: ansible_user ~ "@" ~ eminfra_rack\n'
              '  path: "\'C:\\\\\\\\racks\\\\\\\\\' ~ eminfra_rack"\n'
              'groups:\n  rack_one: eminfra_rack == "r1"\n'
              'keyed_groups:\n  - key: eminfra_rack\n    prefix: rack\n    parent_group: racks\n')
    source = write_source(tmp_path, OUTPUTS, config=config)
    listed, dummy = inventory_run.list(source)
    hostvars = json.loads(json.dumps(listed['_meta']['hostvars']))
    assert [hostvars[name]['where'] for name in ('lab-01', 'lab-02')] in (
        ['ubuntu@r1', 'debian@r2'], [{'__ansible_unsafe': 'ubuntu@r1'}, {'__ansible_unsafe': 'debian@r2'}])
    path = hostvars['lab-01']['path']
    # the expression holds 'C:\\racks\\' (YAML unescaped it once); Jinja reads \\ in a literal as one backslash
    assert (path['__ansible_unsafe'] if isinstance(path, dict) else path) == 'C:\\racks\\r1'
    assert listed['rack_one']['hosts'] == ['lab-01']
    assert listed['rack_r1']['hosts'] == ['lab-01']
    assert listed['rack_r2']['hosts'] == ['lab-02']
    assert sorted(listed['racks']['children']) == ['rack_r1', 'rack_r2']


def _groups(listed: dict) -> dict:
    return {name: (sorted(body.get('hosts', [])), sorted(body.get('children', [])))
            for name, body in listed.items() if name not in ('_meta', 'all')}


def test_same_result_as_ansible_builtin_constructed(inventory_run, tmp_path):
    """The golden constructed case equals ansible.builtin.constructed run over the plain hosts."""
    golden = os.path.join(GOLDEN, 'constructed')
    with open(os.path.join(golden, 'outputs.json'), encoding='utf-8') as handle:
        outputs = json.load(handle)
    with open(os.path.join(golden, 'proxmox_dynamic.yml'), encoding='utf-8') as handle:
        config = yaml.safe_load(handle)
    constructed = {key: config[key] for key in ('strict', 'compose', 'groups', 'keyed_groups')}

    plain, dummy = inventory_run.list(write_source(tmp_path / 'plain', outputs, config='include_talos: true\n'))
    ours, dummy = inventory_run.list(write_source(tmp_path / 'ours', outputs,
                                                  config='include_talos: true\n' + yaml.safe_dump(constructed)))

    hostvars = without_unsafe(plain['_meta']['hostvars'])
    static = {'all': {'hosts': hostvars, 'children': {
        name: {'hosts': {host: None for host in body.get('hosts', [])}}
        for name, body in plain.items() if name not in ('_meta', 'all', 'ungrouped')}}}
    static_path = tmp_path / 'stock' / 'hosts.yml'
    static_path.parent.mkdir()
    static_path.write_text(yaml.safe_dump(static), encoding='utf-8')
    constructed_path = tmp_path / 'stock' / 'constructed.yml'
    constructed_path.write_text(yaml.safe_dump(dict(constructed, plugin='ansible.builtin.constructed')), encoding='utf-8')
    proc = inventory_run('-i', str(static_path), '-i', str(constructed_path), '--list',
                         env={'ANSIBLE_INVENTORY_ENABLED': 'ansible.builtin.yaml,ansible.builtin.constructed',
                              **STRICT_SOURCE})
    assert proc.returncode == 0, proc.stderr
    stock = json.loads(proc.stdout)

    assert without_unsafe(ours['_meta']['hostvars']) == without_unsafe(stock['_meta']['hostvars'])
    assert _groups(ours) == _groups(stock)
