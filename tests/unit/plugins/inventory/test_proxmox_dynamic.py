# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the proxmox_dynamic inventory plugin's pure parts.

The plugin checks outputs.json with a hand-rolled checker compiled from OUTPUTS_SCHEMA, because
jsonschema takes about 0.7 s for 10,000 nodes. These tests prove that its result equals
_contracts.schema_errors(instance, OUTPUTS_SCHEMA), message for message, on chosen documents
and on generated ones.
"""

from __future__ import annotations

import copy
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.eminfra.pipeline.plugins.inventory import proxmox_dynamic as plugin
from ansible_collections.eminfra.pipeline.plugins.module_utils._contracts import OUTPUTS_SCHEMA, ContractError, schema_errors
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError

NODE = {'name': 'lab-01', 'ipv4': '192.168.1.10', 'ssh_user': 'ubuntu', 'ssh_port': 22, 'groups': ['base', 'docker']}
TALOS = {'name': 'cp-01', 'ipv4': '192.168.1.20', 'role': 'controlplane', 'vmid': 101}


def with_node(**changes):
    node = dict(NODE)
    for key, value in changes.items():
        if value is ...:
            node.pop(key, None)
        else:
            node[key] = value
    return {'schema_version': 1, 'nodes': [node], 'talos_nodes': [dict(TALOS)]}


CHOSEN = [
    {'nodes': []},
    {'nodes': [NODE]},
    with_node(),
    with_node(ssh_port=...),
    with_node(ssh_port=22.0),
    with_node(ssh_port=22.5),
    with_node(ssh_port=True),
    with_node(ssh_port=None),
    with_node(ssh_port='22'),
    with_node(ssh_port=0),
    with_node(ssh_port=65536),
    with_node(ssh_port=-1.5),
    with_node(ipv4='256.1.1.1'),
    with_node(ipv4='1.2.3'),
    with_node(ipv4='01.2.3.4'),
    with_node(ipv4=3232235786),
    with_node(ipv4=..., ssh_user=..., groups=..., name=...),
    with_node(groups=[]),
    with_node(groups=['']),
    with_node(groups=[None, 1, '', 'x']),
    with_node(groups='base'),
    with_node(groups={'base': True}),
    with_node(name=''),
    with_node(name=5),
    with_node(extra={'anything': [1, 2]}),
    {'schema_version': 2, 'nodes': []},
    {'schema_version': '1', 'nodes': []},
    {'schema_version': True, 'nodes': []},
    {'schema_version': 1.0, 'nodes': []},
    {'schema_version': None, 'nodes': []},
    {},
    [],
    None,
    'nodes',
    {'nodes': None},
    {'nodes': {}},
    {'nodes': [None, [], 'x', 1]},
    {'nodes': [], 'talos_nodes': None},
    {'nodes': [], 'talos_nodes': [{}]},
    {'nodes': [], 'talos_nodes': [dict(TALOS, role='etcd')]},
    {'nodes': [], 'talos_nodes': [dict(TALOS, role=None)]},
    {'nodes': [], 'talos_nodes': [dict(TALOS, role=['controlplane'])]},
    {'nodes': [], 'talos_nodes': [dict(TALOS, role={'controlplane': 1})]},
    {'schema_version': [1], 'nodes': []},
    {'schema_version': {'v': 1}, 'nodes': []},
    {'nodes': [], 'talos_nodes': [dict(TALOS, vmid=99)]},
    {'nodes': [], 'talos_nodes': [dict(TALOS, vmid=1000000000)]},
    {'nodes': [], 'talos_nodes': [dict(TALOS, vmid=False)]},
    {'nodes': [], 'talos_nodes': [dict(TALOS, vmid='101', ipv4='x', name='')]},
    # paths compare as text: nodes[10] sorts before nodes[2], as in jsonschema's ordering
    {'nodes': [dict(NODE, name=f'n{index}', ssh_port=0 if index in (2, 10) else 22) for index in range(12)]},
]


@pytest.mark.parametrize('instance', CHOSEN, ids=range(len(CHOSEN)))
def test_fast_check_equals_schema(instance):
    assert plugin.outputs_errors(copy.deepcopy(instance)) == schema_errors(instance, OUTPUTS_SCHEMA)


def test_fast_check_is_compiled():
    """The equality above is about the hand-rolled checker, not the jsonschema fallback."""
    assert plugin._CHECK_OUTPUTS is not None  # pylint: disable=protected-access


JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-5, max_value=70000),
                         st.floats(allow_nan=False, allow_infinity=False, min_value=-10, max_value=70000),
                         st.sampled_from(['', 'x', 'lab-01', '192.168.1.10', '10.0.0.256', 'controlplane',
                                          'worker', 'gpu-worker', 'base']))


def _containers(inner):
    return st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3))


JSON_VALUES = st.recursive(JSON_SCALARS, _containers, max_leaves=6)


def field(strategy):
    """A node field: usually a plausible value, sometimes any JSON value, sometimes absent."""
    return st.one_of(strategy, JSON_VALUES, st.just(...))


NODES = st.fixed_dictionaries({
    'name': field(st.sampled_from(['lab-01', 'lab-02', ''])),
    'ipv4': field(st.sampled_from(['192.168.1.10', '10.0.0.1', '999.1.1.1', '1.2.3'])),
    'ssh_user': field(st.sampled_from(['ubuntu', ''])),
    'ssh_port': field(st.integers(min_value=-1, max_value=70000)),
    'groups': field(st.lists(st.sampled_from(['base', 'docker', '', 'k8s-edge']), max_size=3)),
    'vmid': field(st.integers(min_value=0, max_value=2000)),
    'role': field(st.sampled_from(['controlplane', 'worker', 'gpu-worker', 'etcd'])),
}).map(lambda node: {key: value for key, value in node.items() if value is not ...})

DOCUMENTS = st.one_of(
    st.fixed_dictionaries({'nodes': st.one_of(st.lists(st.one_of(NODES, JSON_VALUES), max_size=4), JSON_VALUES)},
                          optional={'schema_version': st.one_of(st.just(1), JSON_SCALARS),
                                    'talos_nodes': st.one_of(st.lists(NODES, max_size=3), JSON_VALUES)}),
    JSON_VALUES,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS)
def test_fast_check_equals_schema_generated(instance):
    assert plugin.outputs_errors(instance) == schema_errors(instance, OUTPUTS_SCHEMA)


def test_read_outputs_names_field_and_file():
    text = json.dumps(with_node(ssh_port=70000))
    with pytest.raises(ContractError) as caught:
        plugin.read_outputs('/state/cache/terraform/outputs.json', io.BytesIO(text.encode()))
    message = str(caught.value)
    assert message.startswith('terraform_outputs_valid: nodes[0].ssh_port: 70000 is greater than 65535')
    assert '(in /state/cache/terraform/outputs.json)' in message
    assert 'Remediation: re-run the terraform_apply step' in message


def test_read_outputs_rejects_duplicates_across_lists():
    text = json.dumps({'nodes': [NODE], 'talos_nodes': [dict(TALOS, name='lab-01')]})
    with pytest.raises(ContractError, match=r"talos_nodes\[0\]\.name: duplicate host name 'lab-01', already used by nodes\[0\]\.name"):
        plugin.read_outputs('outputs.json', io.BytesIO(text.encode()))


def test_read_outputs_invalid_json_and_encoding():
    with pytest.raises(CheckError, match='terraform_outputs_valid: outputs.json: not valid JSON: Expecting'):
        plugin.read_outputs('outputs.json', io.BytesIO(b'{"nodes": ['))
    with pytest.raises(CheckError, match='terraform_outputs_valid: outputs.json: cannot read'):
        plugin.read_outputs('outputs.json', io.BytesIO(b'\xff\xfe\x00'))


def test_make_unsafe_untrusts_every_string():
    from ansible.template import is_trusted_as_template, trust_as_template  # pylint: disable=import-outside-toplevel
    trusted = trust_as_template('{{ 7 * 6 }}')
    assert is_trusted_as_template(trusted)
    value = {'a': [trusted, {'b': trusted}], 'n': 5, 'f': 1.5, 'z': None, 't': True}
    result = plugin.make_unsafe(value)
    assert result == value
    assert not is_trusted_as_template(result['a'][0])
    assert not is_trusted_as_template(result['a'][1]['b'])
    assert result['n'] == 5 and result['z'] is None and result['t'] is True


@pytest.mark.parametrize('name,accepted', [
    ('proxmox_dynamic.yml', True), ('proxmox_dynamic.yaml', True), ('dev.proxmox_dynamic.yml', True),
    ('proxmox_dynamic.json', False), ('hosts.yml', False), ('proxmox_dynamic.yml.bak', False),
])
def test_verify_file(tmp_path, name, accepted):
    path = tmp_path / name
    path.write_text('plugin: eminfra.pipeline.proxmox_dynamic\n', encoding='utf-8')
    assert plugin.InventoryModule().verify_file(str(path)) is accepted


def test_verify_file_needs_the_file(tmp_path):
    assert plugin.InventoryModule().verify_file(str(tmp_path / 'proxmox_dynamic.yml')) is False
