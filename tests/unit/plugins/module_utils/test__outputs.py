# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_outputs: the one home of state/cache/terraform/outputs.json."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.eminfra.pipeline.plugins.module_utils import _outputs
from ansible_collections.eminfra.pipeline.plugins.module_utils._contracts import ContractError
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError

NODE = {'name': 'util-01', 'ipv4': '10.77.0.40', 'ssh_user': 'ubuntu', 'ssh_port': 22, 'groups': ['base']}
TALOS = {'name': 'cp-01', 'ipv4': '10.77.0.10', 'role': 'controlplane', 'vmid': 7701}
VALID = {'schema_version': 1, 'nodes': [NODE], 'talos_nodes': [TALOS]}
SECRET = 'c0ffee00-1111-2222-3333-444455556666'


def write_file(tmp_path, content) -> str:
    path = tmp_path / 'outputs.json'
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return str(path)


# ---------------------------------------------------------------- read: each failure names check, file, field, remediation
def test_read_valid(tmp_path):
    assert _outputs.read(write_file(tmp_path, VALID)) == VALID


def test_read_missing(tmp_path):
    path = str(tmp_path / 'outputs.json')
    with pytest.raises(CheckError) as err:
        _outputs.read(path, remediation='run the terraform_apply step')
    assert err.value.check == 'terraform_outputs_valid'
    assert err.value.where == path
    assert str(err.value) == (f'terraform_outputs_valid: {path}: outputs.json does not exist. '
                              'Remediation: run the terraform_apply step')


def test_read_invalid_json(tmp_path):
    path = write_file(tmp_path, b'{"nodes": [\n  {"name": }')
    with pytest.raises(CheckError) as err:
        _outputs.read(path)
    assert err.value.check == 'terraform_outputs_valid' and err.value.where == path
    assert err.value.detail == 'not valid JSON: Expecting value at line 2 column 12'
    assert err.value.remediation == _outputs.REMEDIATION
    assert 'eminfra_start_at=terraform_apply' in str(err.value)


def test_read_not_utf8(tmp_path):
    path = write_file(tmp_path, b'\xff\xfe\x00')
    with pytest.raises(CheckError) as err:
        _outputs.read(path)
    assert err.value.check == 'terraform_outputs_valid' and err.value.where == path
    assert err.value.detail.startswith('cannot read: ')
    assert err.value.remediation == _outputs.REMEDIATION


def test_read_unreadable(tmp_path):
    os.mkdir(tmp_path / 'outputs.json')
    with pytest.raises(CheckError) as err:
        _outputs.read(str(tmp_path / 'outputs.json'))
    assert str(err.value).startswith(f'terraform_outputs_valid: {tmp_path}/outputs.json: cannot read: Is a directory. ')
    assert err.value.remediation == _outputs.REMEDIATION_UNREADABLE


def test_read_schema_violation_names_every_field(tmp_path):
    document = {'schema_version': 1, 'nodes': [dict(NODE, ssh_port=0), {'name': 'util-02', 'ipv4': '10.77.0.300',
                                                                        'ssh_user': 'ubuntu', 'groups': ['base']}]}
    path = write_file(tmp_path, document)
    with pytest.raises(ContractError) as err:
        _outputs.read(path, remediation='fix it')
    assert err.value.check == 'terraform_outputs_valid'
    assert err.value.source == path
    assert err.value.errors == [('nodes[0].ssh_port', '0 is less than 1'),
                                ('nodes[1].ipv4', f"'10.77.0.300' does not match {_outputs._contracts.IPV4_PATTERN!r}")]  # pylint: disable=protected-access
    assert str(err.value).startswith('terraform_outputs_valid: nodes[0].ssh_port: 0 is less than 1; nodes[1].ipv4: ')
    assert str(err.value).endswith(f'(in {path}). Remediation: fix it')


def test_read_missing_key_and_wrong_type(tmp_path):
    path = write_file(tmp_path, {'nodes': [{'name': 'util-01', 'ipv4': '10.77.0.40', 'groups': 'base'}]})
    with pytest.raises(ContractError) as err:
        _outputs.read(path)
    # the missing key is found at the node, so it comes before the node's fields
    assert err.value.errors == [('nodes[0].ssh_user', 'missing required key'),
                                ('nodes[0].groups', "'base' is not of type 'array'")]
    assert err.value.remediation == _outputs.REMEDIATION


def test_validate_reserved_then_duplicate_names(tmp_path):
    with pytest.raises(ContractError) as err:
        _outputs.validate({'nodes': [dict(NODE, name='localhost')]}, 'outputs.json', names_remediation='rename it')
    assert err.value.errors[0][0] == 'nodes[0].name' and 'a name Ansible reserves' in err.value.errors[0][1]
    assert err.value.remediation == 'rename it'
    with pytest.raises(ContractError) as err:
        _outputs.validate({'nodes': [NODE, dict(NODE, ipv4='10.77.0.41')]}, 'outputs.json')
    assert err.value.errors == [('nodes[1].name', "duplicate host name 'util-01', already used by nodes[0].name")]
    assert err.value.remediation == _outputs.REMEDIATION


# ---------------------------------------------------------------- normalise, render, write
RAW = {
    'nodes': {'value': [dict(NODE, name='util-02', ssh_port='2222', vmid=7702.0, role=None),
                        dict(NODE, ssh_port=None, groups=None, vmid='7701'), 'not a node'], 'type': 'list'},
    'talos_nodes': {'value': [dict(TALOS, vmid='7701')], 'type': 'list'},
    'token': {'value': SECRET, 'sensitive': True},
}


def test_normalise():
    assert _outputs.normalise(RAW) == {
        'schema_version': 1,
        'nodes': [dict(NODE, ssh_port=22, groups=[], vmid=7701),
                  dict(NODE, name='util-02', ssh_port=2222, vmid=7702)],
        'talos_nodes': [TALOS],
    }
    assert _outputs.normalise({}) == {'schema_version': 1, 'nodes': [], 'talos_nodes': []}


def test_render_refuses_the_secret_and_names_the_fix(tmp_path):
    path = str(tmp_path / 'outputs.json')
    with pytest.raises(CheckError) as err:
        _outputs.render({'nodes': [dict(NODE, note=SECRET)]}, path, SECRET)
    assert err.value.check == 'terraform_outputs_valid' and err.value.where == path
    assert 'holds the Proxmox token secret' in str(err.value) and 'outputs.tf' in err.value.remediation
    assert SECRET not in str(err.value)
    with pytest.raises(ContractError) as err:
        _outputs.render({'nodes': [dict(NODE, ssh_port=0)]}, path, SECRET)
    assert err.value.remediation == _outputs.REMEDIATION_OUTPUTS_TF
    with pytest.raises(ContractError) as err:
        _outputs.render({'nodes': [dict(NODE, groups=['all'])]}, path, SECRET)
    assert err.value.remediation == _outputs.REMEDIATION_NAMES


def test_write_is_atomic_and_idempotent(tmp_path):
    path = str(tmp_path / 'terraform' / 'outputs.json')
    assert _outputs.write(path, VALID, SECRET) is True
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert _outputs.read(path) == VALID
    first = _outputs.identity(path)
    assert first[0] == path and first[1] == os.path.getsize(path)
    assert _outputs.write(path, VALID, SECRET) is False
    assert _outputs.identity(path) == first
    # a refused document leaves the file as it was, and no temporary file beside it
    with pytest.raises(CheckError):
        _outputs.write(path, {'nodes': [dict(NODE, note=SECRET)]}, SECRET)
    assert _outputs.read(path) == VALID
    assert os.listdir(os.path.dirname(path)) == ['outputs.json']
    assert _outputs.write(path, dict(VALID, talos_nodes=[]), SECRET) is True
    assert _outputs.identity(path) != first
    assert _outputs.identity(str(tmp_path / 'absent.json')) is None


def test_compare_names_the_differing_keys():
    _outputs.compare(VALID, json.loads(json.dumps(VALID)), 'outputs.json')
    with pytest.raises(CheckError) as err:
        _outputs.compare(VALID, dict(VALID, talos_nodes=[], nodes=[]), 'outputs.json (state x)', remediation='resume')
    assert str(err.value) == ('terraform_outputs_valid: outputs.json (state x): outputs.json differs from the Terraform '
                              'state in nodes, talos_nodes. Remediation: resume')
