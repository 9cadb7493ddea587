# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the proxmox_dynamic inventory plugin's pure parts.

The plugin validates outputs.json through _outputs (the contract's one home). These tests prove
that what it reports equals _contracts.schema_errors(instance, OUTPUTS_SCHEMA), message for
message, then the reserved and duplicate names, on chosen documents and on generated ones; and
that compose, groups and keyed_groups are ansible-core's own Constructable, unchanged.
"""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ansible.plugins.inventory import Constructable
from ansible.template import trust_as_template

from ansible_collections.eminfra.pipeline.plugins.inventory import proxmox_dynamic as plugin
from ansible_collections.eminfra.pipeline.plugins.module_utils import _outputs
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
    # list indexes compare as numbers: nodes[2] sorts before nodes[10], as schema_errors orders them
    {'nodes': [dict(NODE, name=f'n{index}', ssh_port=0 if index in (2, 10) else 22) for index in range(12)]},
]


def outputs_errors(instance) -> list[tuple[str, str]]:
    """What _outputs.validate reports for ``instance``, as (field path, message)."""
    try:
        _outputs.validate(instance, 'outputs.json')
    except ContractError as err:
        return err.errors
    return []


def expected_errors(instance) -> list[tuple[str, str]]:
    return schema_errors(instance, OUTPUTS_SCHEMA) or _outputs.name_problems(instance)


@pytest.mark.parametrize('instance', CHOSEN, ids=range(len(CHOSEN)))
def test_outputs_validation_equals_schema(instance):
    assert outputs_errors(copy.deepcopy(instance)) == expected_errors(instance)


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
def test_outputs_validation_equals_schema_generated(instance):
    assert outputs_errors(instance) == expected_errors(instance)


def write(tmp_path, content) -> str:
    path = tmp_path / 'outputs.json'
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def test_read_outputs_names_field_and_file(tmp_path):
    path = write(tmp_path, json.dumps(with_node(ssh_port=70000)))
    with pytest.raises(ContractError) as caught:
        _outputs.read(path)
    message = str(caught.value)
    assert message.startswith('terraform_outputs_valid: nodes[0].ssh_port: 70000 is greater than 65535')
    assert f'(in {path})' in message
    assert 'Remediation: re-run the terraform_apply step' in message


def test_read_outputs_rejects_duplicates_across_lists(tmp_path):
    path = write(tmp_path, json.dumps({'nodes': [NODE], 'talos_nodes': [dict(TALOS, name='lab-01')]}))
    with pytest.raises(ContractError, match=r"talos_nodes\[0\]\.name: duplicate host name 'lab-01', already used by nodes\[0\]\.name"):
        _outputs.read(path)


@pytest.mark.parametrize('document, fragment', [
    ({'nodes': [dict(NODE, name='localhost')]}, "nodes[0].name: 'localhost' is a name Ansible reserves"),
    ({'nodes': [NODE], 'talos_nodes': [dict(TALOS, name='ungrouped')]},
     "talos_nodes[0].name: 'ungrouped' is a name Ansible reserves"),
    ({'nodes': [dict(NODE, name='base')]}, "nodes[0].name: 'base' is a group of the pipeline"),
    ({'nodes': [dict(NODE, groups=['all'])]}, "nodes[0].groups[0]: 'all' is a name Ansible reserves"),
    ({'nodes': [dict(NODE, groups=['talos_controlplane'])]}, "nodes[0].groups[0]: 'talos_controlplane' is the inventory"),
])
def test_read_outputs_refuses_reserved_names(tmp_path, document, fragment):
    path = write(tmp_path, json.dumps(document))
    with pytest.raises(ContractError) as caught:
        _outputs.read(path)
    assert str(caught.value).startswith(f'terraform_outputs_valid: {fragment}')
    assert f'(in {path})' in str(caught.value) and 'Remediation: ' in str(caught.value)


def test_read_outputs_invalid_json_and_encoding(tmp_path):
    path = write(tmp_path, b'{"nodes": [')
    with pytest.raises(CheckError, match=f'terraform_outputs_valid: {path}: not valid JSON: Expecting'):
        _outputs.read(path)
    write(tmp_path, b'\xff\xfe\x00')
    with pytest.raises(CheckError, match=f'terraform_outputs_valid: {path}: cannot read'):
        _outputs.read(path)


def test_make_unsafe_untrusts_every_string():
    from ansible.template import is_trusted_as_template  # pylint: disable=import-outside-toplevel
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


@pytest.mark.parametrize('instance', CHOSEN, ids=range(len(CHOSEN)))
def test_outputs_validation_never_accepts_an_invalid_document(instance):
    if not outputs_errors(instance):
        assert schema_errors(instance, OUTPUTS_SCHEMA) == []


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS)
def test_outputs_validation_never_accepts_an_invalid_document_generated(instance):
    if not outputs_errors(instance):
        assert schema_errors(instance, OUTPUTS_SCHEMA) == []


def test_outputs_validation_accepts_the_usual_documents():
    """Files as terraform_apply writes them pass."""
    usual = {'schema_version': 1, 'nodes': [dict(NODE, name=f'n{index}', vmid=index) for index in range(3)] + [
        {key: value for key, value in NODE.items() if key != 'ssh_port'}], 'talos_nodes': [TALOS]}
    assert _outputs.validate(usual, 'outputs.json') is usual
    assert not outputs_errors({'nodes': [NODE]})
    assert not outputs_errors({'nodes': []})


IPV4 = OUTPUTS_SCHEMA['properties']['nodes']['items']['properties']['ipv4']['pattern']
VALID_NODES = st.fixed_dictionaries(
    {'name': st.text(min_size=1, max_size=4), 'ipv4': st.from_regex(IPV4), 'ssh_user': st.text(min_size=1, max_size=4),
     'groups': st.lists(st.text(min_size=1, max_size=4), max_size=3)},
    optional={'ssh_port': st.integers(min_value=1, max_value=65535), 'vmid': JSON_VALUES})
VALID_TALOS = st.fixed_dictionaries(
    {'name': st.text(min_size=1, max_size=4), 'ipv4': st.from_regex(IPV4),
     'role': st.sampled_from(['controlplane', 'worker', 'gpu-worker']),
     'vmid': st.integers(min_value=100, max_value=999999999)})
VALID_DOCUMENTS = st.fixed_dictionaries(
    {'nodes': st.lists(VALID_NODES, min_size=1, max_size=4)},
    optional={'schema_version': st.just(1), 'talos_nodes': st.lists(VALID_TALOS, max_size=3)})
TRICKY = st.one_of(JSON_VALUES, st.sampled_from(
    [0, 1, 99, 100, 65535, 65536, -1, True, False, 22.0, 1.5, '', '22', '1.2.3.4', '1.2.3.4\n', ' 1.2.3.4', '01.2.3.4',
     '255.255.255.255', '256.0.0.0', [], [''], ['x', ''], ['x', 1], None, 'etcd', 'worker', 1000000000]))


def _mutate(document: dict, list_key: str, index: int, key: str, value) -> dict:
    document = copy.deepcopy(document)
    entries = document.get(list_key) or document['nodes']
    entry = entries[index % len(entries)]
    if value is ...:
        entry.pop(key, None)
    else:
        entry[key] = value
    return document


MUTATED_DOCUMENTS = st.builds(
    _mutate, VALID_DOCUMENTS, st.sampled_from(['nodes', 'talos_nodes']), st.integers(min_value=0, max_value=5),
    st.sampled_from(['name', 'ipv4', 'ssh_user', 'ssh_port', 'groups', 'role', 'vmid']), st.one_of(TRICKY, st.just(...)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(VALID_DOCUMENTS)
def test_valid_documents(instance):
    assert schema_errors(instance, OUTPUTS_SCHEMA) == []
    assert outputs_errors(instance) == _outputs.name_problems(instance)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MUTATED_DOCUMENTS)
def test_mutated_documents(instance):
    assert outputs_errors(instance) == expected_errors(instance)


# compose, groups and keyed_groups: ansible-core's own Constructable, nothing of ansible-core patched.

def test_constructed_features_are_ansible_cores():
    for name in ('_compose', '_set_composite_vars', '_add_host_to_composed_groups', '_add_host_to_keyed_groups'):
        assert getattr(plugin.InventoryModule, name) is getattr(Constructable, name), name


def _plugin_with_templar(options: dict):
    from ansible.inventory.data import InventoryData  # pylint: disable=import-outside-toplevel
    from ansible.template import Templar  # pylint: disable=import-outside-toplevel
    inventory = plugin.InventoryModule()
    inventory.templar = Templar(loader=None)
    inventory.inventory = InventoryData()
    inventory._options = dict(options)  # pylint: disable=protected-access
    inventory._vars = {}  # pylint: disable=protected-access
    return inventory


def test_compose_goes_to_the_templar_for_trusted_expressions_only(monkeypatch):
    """_compose evaluates every expression with ansible-core's templar; an untrusted one is refused."""
    inventory = _plugin_with_templar({'use_extra_vars': False})
    variables = {'eminfra_vmid': 101, 'eminfra_meta': {'rack': 'r1'}}
    evaluated = []
    real = inventory.templar.evaluate_expression
    monkeypatch.setattr(inventory.templar, 'evaluate_expression', lambda expression: evaluated.append(expression) or real(expression))

    assert inventory._compose(trust_as_template('eminfra_meta.rack ~ "-" ~ eminfra_vmid'), variables) == 'r1-101'  # pylint: disable=protected-access
    assert inventory.templar.available_variables is variables
    assert inventory._compose(trust_as_template('eminfra_vmid | string'), variables) == '101'  # pylint: disable=protected-access
    assert evaluated == ['eminfra_meta.rack ~ "-" ~ eminfra_vmid', 'eminfra_vmid | string']
    with pytest.raises(Exception, match='untrusted'):
        inventory._compose('eminfra_vmid', variables)  # pylint: disable=protected-access
    inventory._options['use_extra_vars'] = True  # pylint: disable=protected-access
    assert inventory._compose(trust_as_template('eminfra_vmid'), variables) == 101  # pylint: disable=protected-access
    assert evaluated[-1] == 'eminfra_vmid'


def test_composed_groups_through_the_templar(monkeypatch):
    """Groups: every conditional answered by the templar, errors as ansible-core words them."""
    from ansible.errors import AnsibleParserError as ParserError  # pylint: disable=import-outside-toplevel
    inventory = _plugin_with_templar({'use_extra_vars': False, 'leading_separator': True})
    inventory.inventory.add_host('lab-01')
    variables = {'eminfra_vmid': 101, 'eminfra_tags': ['gpu']}
    evaluated = []
    real = inventory.templar.evaluate_conditional
    monkeypatch.setattr(inventory.templar, 'evaluate_conditional', lambda expression: evaluated.append(expression) or real(expression))
    groups = {name: trust_as_template(expression) for name, expression in (
        ('odd', 'eminfra_vmid % 2 == 1'), ('even', 'eminfra_vmid % 2 == 0'), ('gpu', "'gpu' in eminfra_tags | default([])"),
        ('tagged', 'eminfra_tags'))}
    inventory._add_host_to_composed_groups(groups, variables, 'lab-01', strict=False, fetch_hostvars=False)  # pylint: disable=protected-access
    assert sorted(group for group in inventory.inventory.groups if 'lab-01' in [h.name for h in inventory.inventory.groups[group].hosts]) == ['gpu', 'odd']
    # the non-boolean list is refused as a conditional and, not strict, adds no group
    assert evaluated == list(groups.values())
    with pytest.raises(ParserError, match='Could not add host lab-01 to group broken'):
        inventory._add_host_to_composed_groups({'broken': trust_as_template('undefined_x == 1')}, variables, 'lab-01',  # pylint: disable=protected-access
                                               strict=True, fetch_hostvars=False)


def test_parse_leaves_ansible_core_unpatched(tmp_path):
    """A parse with compose, groups and keyed_groups replaces nothing in the templar or its environment."""
    from ansible.inventory.data import InventoryData  # pylint: disable=import-outside-toplevel
    from ansible.parsing.dataloader import DataLoader  # pylint: disable=import-outside-toplevel
    from ansible.template import Templar  # pylint: disable=import-outside-toplevel
    (tmp_path / 'outputs.json').write_text(json.dumps(with_node(vmid=7)), encoding='utf-8')
    source = tmp_path / 'proxmox_dynamic.yml'
    source.write_text(f'plugin: eminfra.pipeline.proxmox_dynamic\noutputs_path: {tmp_path / "outputs.json"}\nstrict: true\n'
                      'compose:\n  node_vmid: eminfra_vmid\ngroups:\n  odd: eminfra_vmid % 2 == 1\n'
                      'keyed_groups:\n  - key: ansible_user\n    prefix: user\n', encoding='utf-8')
    from ansible.plugins.loader import inventory_loader  # pylint: disable=import-outside-toplevel
    loader = DataLoader()
    inventory = inventory_loader.get('eminfra.pipeline.proxmox_dynamic')
    inventory.templar = Templar(loader=loader)
    engine = inventory.templar._engine  # pylint: disable=protected-access
    before = (dict(vars(inventory.templar)), dict(vars(engine)), dict(vars(engine.environment)))
    data = InventoryData()
    inventory.parse(data, loader, str(source), cache=False)
    assert data.get_host('lab-01').vars['node_vmid'] == 7
    assert [host.name for host in data.groups['odd'].hosts] == ['lab-01']
    assert [host.name for host in data.groups['user_ubuntu'].hosts] == ['lab-01']
    after = (vars(inventory.templar), vars(engine), vars(engine.environment))
    for old, new in zip(before, after):
        # no function or method put in place of ansible-core's own
        assert {key for key, value in new.items() if callable(value) and old.get(key) is not value} == set()
