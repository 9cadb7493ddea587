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
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ansible.template import trust_as_template

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
    # list indexes compare as numbers: nodes[2] sorts before nodes[10], as schema_errors orders them
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


@pytest.mark.parametrize('document, fragment', [
    ({'nodes': [dict(NODE, name='localhost')]}, "nodes[0].name: 'localhost' is a name Ansible reserves"),
    ({'nodes': [NODE], 'talos_nodes': [dict(TALOS, name='ungrouped')]},
     "talos_nodes[0].name: 'ungrouped' is a name Ansible reserves"),
    ({'nodes': [dict(NODE, name='base')]}, "nodes[0].name: 'base' is a group of the pipeline"),
    ({'nodes': [dict(NODE, groups=['all'])]}, "nodes[0].groups[0]: 'all' is a name Ansible reserves"),
    ({'nodes': [dict(NODE, groups=['talos_controlplane'])]}, "nodes[0].groups[0]: 'talos_controlplane' is the inventory"),
])
def test_read_outputs_refuses_reserved_names(document, fragment):
    with pytest.raises(ContractError) as caught:
        plugin.read_outputs('outputs.json', io.BytesIO(json.dumps(document).encode()))
    assert str(caught.value).startswith(f'terraform_outputs_valid: {fragment}')
    assert '(in outputs.json)' in str(caught.value) and 'Remediation: ' in str(caught.value)


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


def test_quick_check_matches_the_schema_it_was_written_for():
    """OUTPUTS_SCHEMA changed: bring quick_valid() in line with it, then update _QUICK_SCHEMA_SHA256."""
    assert plugin.QUICK_CHECK_ENABLED


@pytest.mark.parametrize('instance', CHOSEN, ids=range(len(CHOSEN)))
def test_quick_check_never_accepts_an_invalid_document(instance):
    if plugin.quick_valid(instance):
        assert schema_errors(instance, OUTPUTS_SCHEMA) == []


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS)
def test_quick_check_never_accepts_an_invalid_document_generated(instance):
    if plugin.quick_valid(instance):
        assert schema_errors(instance, OUTPUTS_SCHEMA) == []


def test_quick_check_accepts_the_usual_documents():
    """The fast path is really taken for files as terraform_apply writes them."""
    usual = {'schema_version': 1, 'nodes': [dict(NODE, name=f'n{index}', vmid=index) for index in range(3)] + [
        {key: value for key, value in NODE.items() if key != 'ssh_port'}], 'talos_nodes': [TALOS]}
    assert plugin.quick_valid(usual)
    assert plugin.quick_valid({'nodes': [NODE]})
    assert plugin.quick_valid({'nodes': []})


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
    assert plugin.quick_valid(instance)
    assert plugin.outputs_errors(instance) == []


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MUTATED_DOCUMENTS)
def test_mutated_documents(instance):
    expected = schema_errors(instance, OUTPUTS_SCHEMA)
    assert plugin.outputs_errors(instance) == expected
    if plugin.quick_valid(instance):
        assert expected == []


# The fast path for compose, groups and keyed_groups expressions: whatever it answers must be what
# ansible-core's templar answers for the same expression and variables, type for type.

def _templar_result(expression: str, variables: dict, conditional: bool = False):
    """('ok', value) or ('error', exception type) from ansible-core's own templating."""
    from ansible.template import Templar  # pylint: disable=import-outside-toplevel
    templar = Templar(variables=variables)
    try:
        if conditional:
            return 'ok', templar.evaluate_conditional(trust_as_template(expression))
        return 'ok', templar.evaluate_expression(trust_as_template(expression))
    except Exception as err:  # pylint: disable=broad-exception-caught
        return 'error', type(err)


def _same(one, two) -> bool:
    """Equal, and of the same types all the way down (1 and True and 1.0 differ)."""
    if type(one) is not type(two):  # pylint: disable=unidiomatic-typecheck
        return False
    if isinstance(one, dict):
        return list(one) == list(two) and all(_same(key, key2) and _same(one[key], two[key2]) for key, key2 in zip(one, two))
    if isinstance(one, list):
        return len(one) == len(two) and all(_same(left, right) for left, right in zip(one, two))
    if isinstance(one, float) and math.isnan(one):
        return math.isnan(two)
    return one == two


def _containers_of(value):
    if isinstance(value, (dict, list)):
        yield value
        for item in (value.values() if isinstance(value, dict) else value):
            yield from _containers_of(item)


def assert_fast_path_agrees(expression: str, variables: dict) -> bool:
    """Check the fast path against the templar, as an expression and as a conditional; True when it answered."""
    fast = plugin.compile_fast(expression)
    if fast is None:
        return False
    value = fast(variables)
    if value is plugin._MISSING:  # pylint: disable=protected-access
        return False
    outcome, expected = _templar_result(expression, variables)
    assert outcome == 'ok', (expression, variables, expected)
    assert _same(value, expected), (expression, variables, value, expected)
    # a copy, as the templar's: composing a variable never aliases another host variable's containers
    assert not any(value is container for container in _containers_of(variables))
    if type(value) is bool:  # pylint: disable=unidiomatic-typecheck
        # the groups path takes only boolean answers; the templar's conditional must agree
        assert _templar_result(expression, variables, conditional=True) == ('ok', value), (expression, variables)
    return True


REFERENCE_VARIABLES = {
    'eminfra_vmid': 101, 'eminfra_tags': ['gpu', 'edge'], 'ansible_user': 'ubuntu', 'ansible_host': '10.0.0.1', 'flag': True,
    'ratio': 1.5, 'nothing': None, 'zero': 0, 'empty': '', 'digits': '12',
    'eminfra_meta': {'rack': 'r1', 'items': 'shadowed', 'keys': ['a'], '_private': 1, 'nested': {'slots': [1, {'x': 'y'}]}, '': 'empty'},
    'range': 'a variable named like a Jinja global', 'lookup': 'another', 'dict': 3,
    'trusted': trust_as_template('{{ eminfra_vmid }}'), 'tagged_list': [trust_as_template('{{ 1 + 1 }}')],
    'mixed': [1, 'two', 3.0, None, False, {'k': [True]}],
}


@pytest.mark.parametrize('expression', [
    'eminfra_vmid', ' eminfra_vmid ', 'eminfra_tags', 'eminfra_tags[0]', 'eminfra_tags[1]', 'eminfra_tags[2]', 'ansible_user',
    'flag', 'ratio', 'nothing', 'eminfra_meta', 'eminfra_meta.rack', "eminfra_meta['rack']", 'eminfra_meta["rack"]',
    'eminfra_meta.items', "eminfra_meta['items']", 'eminfra_meta.keys', "eminfra_meta['keys'][0]", 'eminfra_meta._private',
    "eminfra_meta['_private']", 'eminfra_meta.nested.slots[1].x', "eminfra_meta['']", 'eminfra_meta.missing', 'undefined_name',
    'range', 'lookup', 'dict', 'omit', 'true', 'True', 'none', 'self', 'trusted', 'tagged_list', 'tagged_list[0]', 'mixed',
    'mixed[5].k', 'mixed[5].k[0]', 'eminfra_vmid.real', 'ansible_user.upper', 'eminfra_tags.count', 'eminfra_tags[-1]',
    'eminfra_tags[01]', 'eminfra_vmid | int', "eminfra_meta['rack'] ", 'eminfra_meta . rack', 'eminfra_tags[0]|upper',
    "ansible_user ~ '@' ~ ansible_host", "ansible_user ~ eminfra_vmid", "ansible_user ~ ratio", "ansible_user ~ nothing",
    "ansible_user ~ flag", "eminfra_vmid ~ ''", "digits ~ ''", "'1' ~ '2'", "'[1]' ~ ''", "'{{ 1 }}' ~ ''", "'x' ~ trusted",
    'eminfra_vmid % 2 == 0', 'eminfra_vmid % 2', 'eminfra_vmid % 3', 'eminfra_vmid % 7 == 3', 'eminfra_vmid // 3', 'ratio % 0.4',
    'eminfra_vmid % zero', 'eminfra_vmid // zero', 'eminfra_vmid / 2',
    'eminfra_vmid / zero', 'eminfra_vmid * ratio', 'eminfra_vmid - 1.5', 'eminfra_vmid + flag', 'ansible_user + ansible_host',
    'ansible_user * 2', "ansible_user % 'x'", 'eminfra_vmid == 101', 'eminfra_vmid != 101', 'eminfra_vmid > 100',
    'eminfra_vmid < ratio', 'ansible_user >= ansible_host', 'ansible_user < eminfra_vmid', 'flag == 1', 'zero == False',
    "'gpu' in eminfra_tags", "'cpu' not in eminfra_tags", "'ub' in ansible_user", "1 in mixed", "'k' in eminfra_meta",
    "'x' in tagged_list", 'eminfra_vmid in ansible_user', '1 < eminfra_vmid < 200', 'eminfra_vmid > 100 and flag',
    'zero and undefined_name', 'flag or undefined_name', 'zero or empty', 'nothing or eminfra_vmid', 'not flag', 'not eminfra_tags',
    "(ansible_user ~ '@' ~ ansible_host) if ansible_host is defined else 'talos'", "ansible_user if flag else 'no'",
    "ansible_user if zero else undefined_name", "ansible_user if flag", '-eminfra_vmid', "eminfra_vmid ** 2", "[1, 2]",
    "('a', 'b')", "{'a': 1}", '"a\\b"', "eminfra_meta['nested']['slots'][0] + 1", "eminfra_meta.nested.slots", "'a' ~ {",
    'eminfra_vmid == 101 == True', "ansible_user ~ '}}'", 'loop', 'caller', 'varargs', 'kwargs', 'super',
])
def test_fast_path_equals_templar(expression):
    assert_fast_path_agrees(expression, REFERENCE_VARIABLES)


def test_fast_path_answers_the_usual_cases():
    """The fast path is taken where it should be (else the tests above would prove nothing)."""
    for expression in ('eminfra_vmid', 'eminfra_tags', 'eminfra_meta.rack', "eminfra_meta['items']", 'mixed[5].k[0]', 'range',
                       "ansible_user ~ '@' ~ ansible_host", 'eminfra_vmid % 2 == 0', "'gpu' in eminfra_tags", 'zero or empty',
                       "ansible_user if flag else 'no'", 'zero and undefined_name', 'eminfra_vmid / 2'):
        assert assert_fast_path_agrees(expression, REFERENCE_VARIABLES), expression
    for expression in ('eminfra_meta.items', 'trusted', 'tagged_list', 'undefined_name', 'omit', 'eminfra_vmid | int',
                       'eminfra_vmid % zero', "'x' ~ trusted", 'ansible_user < eminfra_vmid', 'loop'):
        assert not assert_fast_path_agrees(expression, REFERENCE_VARIABLES), expression


_KEYS = st.sampled_from(['a', 'b', 'rack', 'items', 'keys', 'get', '_x', 'x1', 'true', 'omit', 'range', 'self', 'None', ''])
_SCALAR_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_infinity=False),
                           st.text(max_size=4), st.sampled_from(['{{ 1 }}', '{% if %}', 'a.b', '1', '[1]', 'True', '0.5']),
                           st.builds(trust_as_template, st.sampled_from(['{{ 7 }}', 'plain', '{{ undefined_x }}'])))
_VALUES = st.recursive(_SCALAR_VALUES, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                               st.dictionaries(_KEYS, inner, max_size=4)), max_leaves=10)
_STEPS = st.lists(st.one_of(_KEYS.map(lambda key: f'.{key}'), _KEYS.map(lambda key: f"['{key}']"),
                            _KEYS.map(lambda key: f'["{key}"]'), st.sampled_from(['[0]', '[1]', '[2]', '[-1]', '[00]'])), max_size=3)
_REFERENCES = st.builds(lambda name, steps: name + ''.join(steps), _KEYS, _STEPS)
_OPERANDS = st.one_of(_REFERENCES, st.sampled_from(["'a'", "''", "'1'", '0', '1', '2', '3', '7', '1.5', '0.1', 'true', 'none', "'{{ 1 }}'"]))
_OPERATORS = st.sampled_from([' ~ ', ' + ', ' - ', ' * ', ' / ', ' // ', ' % ', ' == ', ' != ', ' < ', ' <= ', ' > ', ' >= ',
                              ' in ', ' not in ', ' and ', ' or ', ' if ', ' ** ', ' | '])
_EXPRESSIONS = st.one_of(
    st.builds(lambda space, reference, tail: space + reference + tail, st.sampled_from(['', ' ', '\n']), _REFERENCES,
              st.sampled_from(['', ' ', ' | string', '.0', ' ~ ""'])),
    st.builds(lambda left, operator, right: left + operator + right, _OPERANDS, _OPERATORS, _OPERANDS),
    st.builds(lambda first, op1, second, op2, third: f'{first}{op1}{second}{op2}{third}',
              _OPERANDS, _OPERATORS, _OPERANDS, st.sampled_from([' ~ ', ' else ', ' and ', ' or ', ' == ', ' + ']), _OPERANDS),
    st.builds(lambda negation, operand: negation + operand, st.sampled_from(['not ', '-', 'not not ']), _OPERANDS),
    st.text(alphabet='ab_.[]\'"01 -~|+%=<>', max_size=12),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variables=st.dictionaries(_KEYS, _VALUES, min_size=8, max_size=14), expression=_EXPRESSIONS)
def test_fast_path_equals_templar_generated(variables, expression):
    assert_fast_path_agrees(expression, variables)


def _plugin_with_templar(options: dict):
    from ansible.inventory.data import InventoryData  # pylint: disable=import-outside-toplevel
    from ansible.template import Templar  # pylint: disable=import-outside-toplevel
    inventory = plugin.InventoryModule()
    inventory.templar = Templar(loader=None)
    inventory.inventory = InventoryData()
    inventory._options = dict(options)  # pylint: disable=protected-access
    inventory._vars = {}  # pylint: disable=protected-access
    return inventory


def test_compose_uses_the_fast_path_only_for_trusted_expressions(monkeypatch):
    """InventoryModule._compose answers its subset itself and leaves the rest to the templar."""
    inventory = _plugin_with_templar({'use_extra_vars': False})
    variables = {'eminfra_vmid': 101, 'eminfra_meta': {'rack': 'r1'}}
    evaluated = []
    real = inventory.templar.evaluate_expression
    monkeypatch.setattr(inventory.templar, 'evaluate_expression', lambda expression: evaluated.append(expression) or real(expression))

    assert inventory._compose(trust_as_template('eminfra_meta.rack ~ "-" ~ eminfra_vmid'), variables) == 'r1-101'  # pylint: disable=protected-access
    assert not evaluated
    assert inventory.templar.available_variables is variables
    assert inventory._compose(trust_as_template('eminfra_vmid | string'), variables) == '101'  # pylint: disable=protected-access
    assert evaluated == ['eminfra_vmid | string']
    with pytest.raises(Exception, match='untrusted'):
        inventory._compose('eminfra_vmid', variables)  # pylint: disable=protected-access
    inventory._options['use_extra_vars'] = True  # pylint: disable=protected-access
    assert inventory._compose(trust_as_template('eminfra_vmid'), variables) == 101  # pylint: disable=protected-access
    assert evaluated[-1] == 'eminfra_vmid'


def test_composed_groups_fast_path_and_fallback(monkeypatch):
    """Groups: boolean answers from the fast path, everything else from the templar, errors as ansible-core words them."""
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
    # the filter and the non-boolean list went to the templar, which refuses a list as a conditional
    assert evaluated == [groups['gpu'], groups['tagged']]
    with pytest.raises(ParserError, match='Could not add host lab-01 to group broken'):
        inventory._add_host_to_composed_groups({'broken': trust_as_template('undefined_x == 1')}, variables, 'lab-01',  # pylint: disable=protected-access
                                               strict=True, fetch_hostvars=False)
