# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The inventory intent: the committed files validate, and every rule refuses a broken copy."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import jsonschema
import pytest
import yaml

from ansible_collections.eminfra.pipeline.plugins.module_utils import _intent
from ansible_collections.eminfra.pipeline.plugins.module_utils._contracts import intent_schema_document

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
CLUSTER = os.path.join(ROOT, 'inventory', 'dev', 'cluster.yaml')
NODES = os.path.join(ROOT, 'inventory', 'dev', 'nodes.yaml')


def _load(path):
    with open(path, encoding='utf-8') as handle:
        return yaml.safe_load(handle)


@pytest.fixture(name='intent_copy')
def fixture_intent_copy(tmp_path):
    """Writes (possibly broken) copies of the dev intent and loads them through load_intent."""
    def run(mutate_cluster=None, mutate_nodes=None, cluster_text=None, nodes_text=None):
        cluster, nodes = _load(CLUSTER), _load(NODES)
        if mutate_cluster:
            mutate_cluster(cluster['cluster'])
        if mutate_nodes:
            mutate_nodes(nodes['nodes'])
        inv = tmp_path / 'inventory' / 'dev'
        inv.mkdir(parents=True, exist_ok=True)
        (inv / 'cluster.yaml').write_text(cluster_text if cluster_text is not None else yaml.safe_dump(cluster))
        (inv / 'nodes.yaml').write_text(nodes_text if nodes_text is not None else yaml.safe_dump(nodes))
        return _intent.load_intent('inventory/dev/cluster.yaml', 'inventory/dev/nodes.yaml', root=str(tmp_path))
    return run


def _node(nodes, name):
    return next(node for node in nodes if node['name'] == name)


def test_dev_intent_validates():
    intent = _intent.load_intent('inventory/dev/cluster.yaml', 'inventory/dev/nodes.yaml', root=ROOT)
    assert intent['cluster']['name'] == 'em-dev'
    assert intent['cluster']['network']['prefix_length'] == 24
    assert [n['name'] for n in intent['nodes']] == ['cp-01', 'worker-01', 'util-01']
    assert intent['disabled_nodes'] == ['gpu-worker-01']
    assert [n['role'] for n in intent['talos_nodes']] == ['controlplane', 'worker']
    util = intent['ssh_nodes'][0]
    assert (util['name'], util['ssh_user'], util['ssh_port'], util['groups']) == ('util-01', 'ubuntu', 22, ['base', 'docker'])
    assert intent['proxmox'] == {'vm_storage': 'local-lvm', 'template_storage': 'local', 'bridge': 'vmbr0',
                                 'pci_mappings': []}
    assert intent['sources'] == {'cluster': 'inventory/dev/cluster.yaml', 'nodes': 'inventory/dev/nodes.yaml'}


def test_dev_topology_has_the_optional_gpu_worker_disabled():
    nodes = _load(NODES)['nodes']
    gpu = _node(nodes, 'gpu-worker-01')
    assert (gpu['role'], gpu['os'], gpu['enabled'], gpu['pci_mapping']) == ('gpu-worker', 'talos', False, 'gpu0')
    assert sorted(n['role'] for n in nodes) == ['controlplane', 'gpu-worker', 'utility', 'worker']


def test_enabling_the_gpu_worker_exposes_its_mapping(intent_copy):
    intent = intent_copy(mutate_nodes=lambda nodes: _node(nodes, 'gpu-worker-01').update(enabled=True))
    assert intent['proxmox']['pci_mappings'] == ['gpu0']
    assert _node(intent['talos_nodes'], 'gpu-worker-01')['pci_mapping'] == 'gpu0'


def test_defaults_are_filled(intent_copy):
    def strip(nodes):
        for node in nodes:
            node.pop('enabled', None)
        util = _node(nodes, 'util-01')
        del util['ssh_user'], util['ssh_port']
    intent = intent_copy(mutate_nodes=strip)
    util = _node(intent['nodes'], 'util-01')
    assert (util['enabled'], util['ssh_user'], util['ssh_port']) == (True, 'ubuntu', 22)
    # gpu-worker-01 lost `enabled: false`, so it defaults to enabled
    assert intent['disabled_nodes'] == []


def test_guest_defaults_to_vm_and_a_container_logs_in_as_root(intent_copy):
    def containerise(nodes):
        util = _node(nodes, 'util-01')
        util['guest'] = 'lxc'
        del util['ssh_user'], util['ssh_port']
    intent = intent_copy(mutate_nodes=containerise)
    assert {n['name']: n['guest'] for n in intent['nodes']} == {'cp-01': 'vm', 'worker-01': 'vm', 'util-01': 'lxc'}
    util = _node(intent['ssh_nodes'], 'util-01')
    assert (util['ssh_user'], util['ssh_port'], util['groups']) == ('root', 22, ['base', 'docker'])
    assert [n['name'] for n in intent['containers']] == ['util-01']


def test_dev_intent_has_no_container():
    intent = _intent.load_intent('inventory/dev/cluster.yaml', 'inventory/dev/nodes.yaml', root=ROOT)
    assert intent['containers'] == []
    assert all(n['guest'] == 'vm' for n in intent['nodes'])


def test_schema_json_validates_the_intent_files_as_data():
    with open(os.path.join(ROOT, 'schema.json'), encoding='utf-8') as handle:
        schema = json.load(handle)
    assert schema == intent_schema_document()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in (CLUSTER, NODES):
        assert list(validator.iter_errors(_load(path))) == []
    broken = _load(NODES)
    broken['nodes'][0]['memory'] = 'lots'
    assert list(validator.iter_errors(broken))


def _set(node_name, **values):
    return lambda nodes: _node(nodes, node_name).update(values)


def _drop(name, key):
    return lambda nodes: _node(nodes, name).pop(key)


NODES_FILE = 'inventory/dev/nodes.yaml'
CLUSTER_FILE = 'inventory/dev/cluster.yaml'

CROSS_FIELD_CASES = {
    'ip outside the network': (
        None, _set('worker-01', ipv4='10.9.0.5'),
        f'intent_valid: {NODES_FILE}: nodes[1] (worker-01).ipv4: 10.9.0.5 is outside cluster network 10.77.0.0/24'),
    'ip is the broadcast address': (
        None, _set('worker-01', ipv4='10.77.0.255'),
        f'{NODES_FILE}: nodes[1] (worker-01).ipv4: 10.77.0.255 is the broadcast address of cluster network 10.77.0.0/24'),
    'ip is the gateway': (
        None, _set('worker-01', ipv4='10.77.0.1'),
        f'{NODES_FILE}: nodes[1] (worker-01).ipv4: 10.77.0.1 is the cluster gateway'),
    'duplicate name': (
        None, _set('worker-01', name='cp-01'),
        f'{NODES_FILE}: nodes[1] (cp-01).name: cp-01 is already used by nodes[0] (cp-01)'),
    'duplicate vmid': (
        None, _set('util-01', vmid=7702),
        f'{NODES_FILE}: nodes[3] (util-01).vmid: 7702 is already used by nodes[1] (worker-01)'),
    'duplicate ip': (
        None, _set('util-01', ipv4='10.77.0.20'),
        f'{NODES_FILE}: nodes[3] (util-01).ipv4: 10.77.0.20 is already used by nodes[1] (worker-01)'),
    'duplicate ip on a disabled node': (
        None, _set('gpu-worker-01', ipv4='10.77.0.10'),
        f'{NODES_FILE}: nodes[2] (gpu-worker-01).ipv4: 10.77.0.10 is already used by nodes[0] (cp-01)'),
    'gateway outside the network': (
        lambda c: c['network'].update(gateway='192.168.1.1'), None,
        f'{CLUSTER_FILE}: cluster.network.gateway: 192.168.1.1 is outside cluster network 10.77.0.0/24'),
    'cidr with host bits': (
        lambda c: c['network'].update(cidr='10.77.0.9/24'), None,
        f'{CLUSTER_FILE}: cluster.network.cidr: 10.77.0.9/24 has host bits set; the network is 10.77.0.0/24'),
    'gpu worker without mapping': (
        None, _drop('gpu-worker-01', 'pci_mapping'),
        f'{NODES_FILE}: nodes[2] (gpu-worker-01).pci_mapping: missing: a gpu-worker needs the name of a Proxmox PCI resource mapping'),
    'mapping on a plain worker': (
        None, _set('worker-01', pci_mapping='gpu0'),
        f"{NODES_FILE}: nodes[1] (worker-01).pci_mapping: only a gpu-worker takes a PCI mapping (role is 'worker')"),
    'no enabled control plane': (
        None, _set('cp-01', enabled=False),
        f'{NODES_FILE}: nodes: no enabled controlplane node: at least one is required'),
    'ubuntu node without groups': (
        None, _drop('util-01', 'groups'),
        f'{NODES_FILE}: nodes[3] (util-01).groups: missing or empty: an ubuntu node needs at least one Ansible group'),
    'ubuntu node with empty groups': (
        None, _set('util-01', groups=[]),
        f'{NODES_FILE}: nodes[3] (util-01).groups: missing or empty'),
    'talos node with groups': (
        None, _set('worker-01', groups=['base']),
        f'{NODES_FILE}: nodes[1] (worker-01).groups: not allowed on a talos node: Talos owns its OS state'),
    'talos node with ssh user': (
        None, _set('cp-01', ssh_user='root'),
        f'{NODES_FILE}: nodes[0] (cp-01).ssh_user: not allowed on a talos node'),
    'kubernetes role on ubuntu': (
        None, _set('worker-01', os='ubuntu', groups=['base']),
        f"{NODES_FILE}: nodes[1] (worker-01).os: 'ubuntu' cannot run role 'worker': Kubernetes nodes are Talos nodes"),
    'utility role on talos': (
        None, lambda nodes: _node(nodes, 'util-01').update(os='talos') or [_node(nodes, 'util-01').pop(k) for k in ('groups', 'ssh_user', 'ssh_port')],
        f"{NODES_FILE}: nodes[3] (util-01).os: 'talos' cannot run role 'utility'"),
    'talos node as a container': (
        None, _set('worker-01', guest='lxc'),
        f"{NODES_FILE}: nodes[1] (worker-01).guest: 'lxc' is for ubuntu nodes only: a talos node (worker) is always a VM"),
    'container with a pci mapping': (
        None, _set('gpu-worker-01', guest='lxc'),
        f'{NODES_FILE}: nodes[2] (gpu-worker-01).pci_mapping: not allowed on a container (guest: lxc): PCI passthrough needs a VM'),
    'container with another ssh user': (
        None, _set('util-01', guest='lxc'),
        f"{NODES_FILE}: nodes[3] (util-01).ssh_user: 'ubuntu' on a container (guest: lxc): the container template has only root"),
    'container with another ssh port': (
        None, lambda nodes: _node(nodes, 'util-01').update(guest='lxc', ssh_user='root', ssh_port=2222),
        f"{NODES_FILE}: nodes[3] (util-01).ssh_port: 2222 on a container (guest: lxc): the container template's sshd listens on 22"),
    'endpoint outside the network': (
        lambda c: c.update(controlplane_endpoint='https://10.1.0.10:6443'), None,
        f'{CLUSTER_FILE}: cluster.controlplane_endpoint: 10.1.0.10 is outside cluster network 10.77.0.0/24'),
    'endpoint port out of range': (
        lambda c: c.update(controlplane_endpoint='https://10.77.0.10:70000'), None,
        f'{CLUSTER_FILE}: cluster.controlplane_endpoint: https://10.77.0.10:70000 has no valid port (1-65535)'),
    'endpoint on a worker': (
        lambda c: c.update(controlplane_endpoint='https://10.77.0.20:6443'), None,
        f'{CLUSTER_FILE}: cluster.controlplane_endpoint: 10.77.0.20 is the address of nodes[1] (worker-01), which is a worker'),
}


@pytest.mark.parametrize('case', sorted(CROSS_FIELD_CASES))
def test_cross_field_rule_rejects_a_broken_copy(intent_copy, case):
    mutate_cluster, mutate_nodes, expected = CROSS_FIELD_CASES[case]
    with pytest.raises(_intent.IntentError) as info:
        intent_copy(mutate_cluster=mutate_cluster, mutate_nodes=mutate_nodes)
    message = str(info.value)
    assert message.startswith('intent_valid: ')
    assert expected.removeprefix('intent_valid: ') in message
    assert message.endswith('then validate again with: make validate-intent')
    assert info.value.check == 'intent_valid'


def test_every_problem_is_reported_at_once(intent_copy):
    def breakage(nodes):
        _node(nodes, 'worker-01')['ipv4'] = '10.9.0.5'
        _node(nodes, 'util-01')['vmid'] = 7701
    with pytest.raises(_intent.IntentError) as info:
        intent_copy(mutate_nodes=breakage)
    fields = [field for dummy, field, dummy2 in info.value.errors]
    assert fields == ['nodes[1] (worker-01).ipv4', 'nodes[3] (util-01).vmid']


SCHEMA_CASES = {
    'memory not an integer': (None, _set('cp-01', memory='4G'),
                              f"{NODES_FILE}: nodes[0] (cp-01).memory: '4G' is not of type 'integer'"),
    'unknown role': (None, _set('worker-01', role='master'),
                     f"{NODES_FILE}: nodes[1] (worker-01).role: 'master' is not one of 'controlplane', 'worker', 'gpu-worker', 'utility'"),
    'missing vmid': (None, _drop('util-01', 'vmid'), f'{NODES_FILE}: nodes[3] (util-01).vmid: missing required key'),
    'unknown node key': (None, _set('cp-01', ram=4096), f"{NODES_FILE}: nodes[0] (cp-01): unknown key(s): 'ram'"),
    'bad address': (None, _set('cp-01', ipv4='10.77.0.300'),
                    f"{NODES_FILE}: nodes[0] (cp-01).ipv4: '10.77.0.300' does not match"),
    'unknown guest': (None, _set('util-01', guest='docker'),
                      f"{NODES_FILE}: nodes[3] (util-01).guest: 'docker' is not one of 'vm', 'lxc'"),
    'missing bridge': (lambda c: c['proxmox'].pop('bridge'), None,
                       f'{CLUSTER_FILE}: cluster.proxmox.bridge: missing required key'),
    'bad talos version': (lambda c: c.update(talos_version='1.11'), None,
                          f"{CLUSTER_FILE}: cluster.talos_version: '1.11' does not match"),
}


@pytest.mark.parametrize('case', sorted(SCHEMA_CASES))
def test_schema_rule_names_file_node_and_field(intent_copy, case):
    mutate_cluster, mutate_nodes, expected = SCHEMA_CASES[case]
    with pytest.raises(_intent.IntentError) as info:
        intent_copy(mutate_cluster=mutate_cluster, mutate_nodes=mutate_nodes)
    assert expected in str(info.value)


@pytest.mark.parametrize('cluster_text, nodes_text, expected', [
    ('', None, f"{CLUSTER_FILE}: is empty; it must be a mapping with the top-level key 'cluster'"),
    ('- a\n', None, f"{CLUSTER_FILE}: is a list; it must be a mapping with the top-level key 'cluster'"),
    (None, 'nodes: []\ncluster: {}\n', f"{NODES_FILE}: cluster: belongs in the other intent file"),
    (None, 'nodes:\n  - name: a\n  name: b\n', f'{NODES_FILE}: line 3, column 3: not valid YAML'),
    (None, 'nodes:\n  - {name: a, name: b}\n', "not valid YAML: key 'name' is given twice (first on line 2)"),
    ('cluster:\n  name: x\n  name: z\n', None, f"{CLUSTER_FILE}: line 3, column 3: not valid YAML: key 'name' is given twice"),
    (None, 'nodes:\n  - vmid: 07701\n', "integer '07701' has a leading zero"),
])
def test_file_level_problems(intent_copy, cluster_text, nodes_text, expected):
    with pytest.raises(_intent.IntentError) as info:
        intent_copy(cluster_text=cluster_text, nodes_text=nodes_text)
    assert expected in str(info.value)


def test_default_root_is_the_project_root(monkeypatch):
    monkeypatch.chdir(os.path.join(ROOT, 'docs'))
    intent = _intent.load_intent()
    assert intent['sources'] == {'cluster': 'inventory/dev/cluster.yaml', 'nodes': 'inventory/dev/nodes.yaml'}


def test_missing_file_is_named(tmp_path):
    with pytest.raises(_intent.IntentError) as info:
        _intent.load_intent('inventory/dev/cluster.yaml', 'inventory/dev/nodes.yaml', root=str(tmp_path))
    assert str(info.value).startswith(
        'intent_valid: inventory/dev/cluster.yaml: file not found; inventory/dev/nodes.yaml: file not found. Remediation: ')


def test_the_intent_is_not_modified_by_loading():
    before = (_load(CLUSTER), _load(NODES))
    snapshot = copy.deepcopy(before)
    _intent.merge_intent(before[0], before[1], CLUSTER_FILE, NODES_FILE)
    assert before == snapshot


def test_cli_validates_and_reports(tmp_path):
    ok = subprocess.run([sys.executable, '-m', 'tests.tools.validate_intent'], cwd=ROOT,
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith('intent_valid: ok: cluster em-dev on 10.77.0.0/24')
    nodes = _load(NODES)
    nodes['nodes'][1]['ipv4'] = '10.9.0.5'
    broken = tmp_path / 'nodes.yaml'
    broken.write_text(yaml.safe_dump(nodes))
    bad = subprocess.run([sys.executable, '-m', 'tests.tools.validate_intent', '--nodes', str(broken)], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert f'intent_valid: {broken}: nodes[1] (worker-01).ipv4: 10.9.0.5 is outside cluster network 10.77.0.0/24' in bad.stderr
    as_json = subprocess.run([sys.executable, '-m', 'tests.tools.validate_intent', '--json'], cwd=ROOT,
                             capture_output=True, text=True, check=True)
    assert json.loads(as_json.stdout)['proxmox']['bridge'] == 'vmbr0'


# ---------------------------------------------------------------- one reading for every reader
@pytest.mark.parametrize('scalar, field', [
    ('7_704', 'vmid'),              # YAML 1.1: 7704; Terraform: the string "7_704"
    ('0b1111000011000', 'vmid'),    # YAML 1.1: 7704; Terraform: a string
    ('0x1E18', 'vmid'),             # YAML 1.1: 7704; Terraform: 7704 but -0x... a string
    ('0o17', 'cores'),              # YAML 1.1: a string; Terraform: 15
    ('1_0', 'cores'),
    ('1:30', 'disk'),               # sexagesimal 90 in YAML 1.1; a string in Terraform
    ('1e3', 'memory'),              # a string in YAML 1.1; 1000 in Terraform
    ('.inf', 'memory'),             # Terraform cannot even hold it
    ('yes', 'enabled'),             # a boolean in YAML 1.1, a string in YAML 1.2
    ('off', 'enabled'),
    ('On', 'enabled'),
    ('y', 'ssh_user'),              # a string in YAML 1.1; true in Terraform
    ('2026-01-01', 'name'),         # a date in YAML 1.1; a string in Terraform
])
def test_scalars_read_two_ways_are_refused_naming_file_and_field(intent_copy, scalar, field):
    text = _dump_nodes_with(field, scalar)
    with pytest.raises(_intent.IntentError) as info:
        intent_copy(nodes_text=text)
    message = str(info.value)
    assert message.startswith(f'intent_valid: {NODES_FILE}: nodes[2].{field} (line ')
    assert repr(scalar) in message and 'YAML 1.1' in message
    assert 'Remediation: ' in message


def _dump_nodes_with(field, scalar):
    """The dev nodes intent with nodes[2].<field> written as the plain scalar ``scalar``."""
    nodes = _load(NODES)
    nodes['nodes'][2][field] = '@@PLACEHOLDER@@'
    return yaml.safe_dump(nodes, sort_keys=False).replace("'@@PLACEHOLDER@@'", scalar)


@pytest.mark.parametrize('scalar, value', [
    ('7704', 7704), ('+7704', 7704), ('true', True), ('False', False), ('"7_704"', '7_704'), ("'yes'", 'yes'),
    ('1.5', 1.5), ('~', None), ('null', None), ('ubuntu', 'ubuntu'),
])
def test_scalars_both_readers_agree_on_are_read(scalar, value):
    assert _intent.parse_intent_text(f'key: {scalar}\n', 'x.yaml') == {'key': value}


def test_explicit_tags_and_merge_keys_are_refused():
    with pytest.raises(_intent.IntentError, match=r"x.yaml: a \(line 1, column 4\): explicit tag"):
        _intent.parse_intent_text('a: !!str 7_704\n', 'x.yaml')
    with pytest.raises(_intent.IntentError, match='merge keys'):
        _intent.parse_intent_text('base: &b {cores: 1}\nnode:\n  <<: *b\n', 'x.yaml')


# ---------------------------------------------------------------- bounded reading
def _billion_laughs(levels=9):
    text = 'nodes:\n  - name: util-01\n    groups:\n      - &a0 [base, base, base, base, base, base, base, base, base]\n'
    for level in range(1, levels):
        text += f'      - &a{level} [' + ', '.join([f'*a{level - 1}'] * 9) + ']\n'
    return text


def test_alias_bomb_is_refused_while_reading_in_bounded_memory(intent_copy):
    import tracemalloc  # pylint: disable=import-outside-toplevel
    tracemalloc.start()
    try:
        with pytest.raises(_intent.IntentError) as info:
            intent_copy(nodes_text=_billion_laughs())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert message.startswith(f'intent_valid: {NODES_FILE}: nodes[0].groups[')
    assert f'more than {_intent.MAX_EXPANDED_NODES} values once YAML aliases are expanded' in message
    assert info.value.remediation == _intent.BOUNDS_REMEDIATION
    # 9**9 expanded values were never built: reading stopped at the bound.
    assert peak < 64 * 1024 * 1024, peak


def test_alias_count_is_bounded():
    text = 'a: &x 1\nb: [' + ', '.join(['*x'] * (_intent.MAX_ALIASES + 1)) + ']\n'
    with pytest.raises(_intent.IntentError, match=rf'x.yaml: b\[{_intent.MAX_ALIASES}\] .*more than {_intent.MAX_ALIASES} YAML aliases'):
        _intent.parse_intent_text(text, 'x.yaml')


def test_recursive_alias_is_refused():
    with pytest.raises(_intent.IntentError, match='refers to a value that contains it'):
        _intent.parse_intent_text('a: &x [1, *x]\n', 'x.yaml')


def test_deep_nesting_is_refused_naming_the_field(intent_copy):
    with pytest.raises(_intent.IntentError) as info:
        intent_copy(nodes_text='nodes: ' + '[' * 5000 + ']' * 5000 + '\n')
    assert f'{NODES_FILE}: nodes[0][0]' in str(info.value)
    assert f'nested deeper than {_intent.MAX_DEPTH} levels' in str(info.value)
    assert info.value.remediation == _intent.BOUNDS_REMEDIATION


def test_large_file_is_refused_without_being_read(intent_copy, tmp_path):
    import tracemalloc  # pylint: disable=import-outside-toplevel
    nodes = tmp_path / 'big.yaml'
    with open(nodes, 'w', encoding='utf-8') as handle:
        handle.write('nodes:\n')
        line = '  - {name: n, role: utility, os: ubuntu, vmid: 100, cores: 1, memory: 512, disk: 1, ipv4: 10.0.0.1}\n'
        handle.write(line * (50 * 1024 * 1024 // len(line)))
    tracemalloc.start()
    try:
        with pytest.raises(_intent.IntentError) as info:
            _intent.read_intent_file(str(nodes), 'big.yaml')
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(info.value).startswith(f'intent_valid: big.yaml: is larger than {_intent.MAX_INTENT_BYTES} bytes')
    assert info.value.remediation == _intent.BOUNDS_REMEDIATION
    assert peak < 4 * _intent.MAX_INTENT_BYTES, peak


# ---------------------------------------------------------------- reserved names
@pytest.mark.parametrize('mutate, field, fragment', [
    (lambda nodes: _node(nodes, 'util-01').update(name='localhost'), 'nodes[3] (localhost).name', 'Ansible reserves'),
    (lambda nodes: _node(nodes, 'cp-01').update(name='all'), 'nodes[0] (all).name', 'Ansible reserves'),
    (lambda nodes: _node(nodes, 'util-01').update(name='base'), 'nodes[3] (base).name', 'a group of the pipeline'),
    (lambda nodes: _node(nodes, 'util-01').update(groups=['base', 'localhost']), 'nodes[3] (util-01).groups[1]',
     'Ansible reserves'),
    (lambda nodes: _node(nodes, 'util-01').update(groups=['ungrouped']), 'nodes[3] (util-01).groups[0]',
     'Ansible reserves'),
    (lambda nodes: _node(nodes, 'util-01').update(groups=['talos_worker']), 'nodes[3] (util-01).groups[0]',
     'group of Talos nodes'),
])
def test_reserved_names_are_refused(intent_copy, mutate, field, fragment):
    with pytest.raises(_intent.IntentError) as info:
        intent_copy(mutate_nodes=mutate)
    assert f'{NODES_FILE}: {field}: ' in str(info.value) and fragment in str(info.value)
