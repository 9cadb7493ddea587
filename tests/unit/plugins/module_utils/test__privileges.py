# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The privilege matrix, PVE's propagation rules and the pveum remediation text."""

from __future__ import annotations

import json
import pathlib

import pytest

from ansible_collections.eminfra.pipeline.plugins.module_utils import _privileges as priv

SCHEMA = pathlib.Path(__file__).resolve().parents[4] / '..' / 'shared' / 'pve-api' / 'pve-api-schema.json'

CONTEXT = {
    'node': 'pve',
    'template_storage': 'local',
    'storages': ['local-lvm', 'local'],
    'bridges': ['vmbr0'],
    'pci_mappings': ['gpu0'],
}

ALL_TERRAFORM = ('VM.Allocate', 'VM.Audit', 'VM.PowerMgmt') + priv.VM_CONFIG_PRIVS


def full_dump(major: int = 9) -> dict:
    agent = 'VM.GuestAgent.Audit' if major >= 9 else 'VM.Monitor'
    return {
        '/storage': {'Datastore.AllocateTemplate': 1, 'Datastore.AllocateSpace': 1, 'Datastore.Audit': 1},
        '/nodes/pve': {'Sys.AccessNetwork': 1},
        '/vms': {p: 1 for p in ALL_TERRAFORM + (agent,)},
        '/sdn/zones/localnetwork': {'SDN.Use': 1},
        '/mapping/pci/gpu0': {'Mapping.Use': 0},
    }


def test_full_token_passes_every_step():
    results = priv.evaluate(priv.Permissions(full_dump()), priv.STEP_ORDER, CONTEXT, 9)
    assert [r for r in results if not r['ok']] == []
    assert {r['step'] for r in results} == set(priv.STEP_ORDER)
    assert priv.missing_privileges(results) == []
    for step in priv.STEP_ORDER:
        assert priv.step_detail(results, step)[0] == 'pass'


@pytest.mark.parametrize('privilege', ['VM.Config.CDROM', 'VM.Config.Cloudinit', 'VM.Config.HWType'])
def test_every_vm_config_privilege_the_vms_need_is_checked(privilege):
    # Creating the VMs sets drives (a media=cdrom drive, as a cloud-init drive is, is checked
    # against VM.Config.CDROM, not VM.Config.Disk), cloud-init values and the machine type.
    dump = full_dump()
    del dump['/vms'][privilege]
    results = priv.evaluate(priv.Permissions(dump), priv.STEP_ORDER, CONTEXT, 9)
    assert priv.missing_privileges(results) == [{'step': 'terraform_apply', 'path': '/vms', 'privilege': privilege}]


def test_propagation_flag_decides_inheritance():
    # ACL on / : Sys.Audit propagated, Sys.Modify not; PVE lists / and the evaluated /nodes.
    perms = priv.Permissions({'/': {'Sys.Audit': 1, 'Sys.Modify': 0}, '/nodes': {'Sys.Audit': 1}})
    assert perms.has('/', 'Sys.Modify')
    assert perms.has('/', 'Sys.Audit')
    assert perms.has('/nodes/pve', 'Sys.Audit')
    assert not perms.has('/nodes/pve', 'Sys.Modify')
    assert perms.has('/nodes/pve/disks', 'Sys.Audit')


def test_absent_top_level_path_means_nothing_there():
    # PVE always evaluates /vms; its absence means no privilege there even though / propagates.
    perms = priv.Permissions({'/': {'VM.Audit': 1}, '/nodes': {'VM.Audit': 1}})
    assert not perms.has('/vms', 'VM.Audit')
    assert not perms.has('/vms/100', 'VM.Audit')
    assert perms.has('/nodes/pve', 'VM.Audit')
    # below a path that is not always evaluated, the nearest listed ancestor decides
    perms = priv.Permissions({'/sdn/zones/localnetwork': {'SDN.Use': 1}})
    assert perms.has('/sdn/zones/localnetwork/vmbr0', 'SDN.Use')
    assert not perms.has('/sdn/zones/other/vmbr1', 'SDN.Use')


def test_nearest_listed_ancestor_wins():
    # The dump holds effective privileges per path: /vms lists what is in force there, so a
    # privilege propagated from / but overridden at /vms is not inherited by /vms/100.
    perms = priv.Permissions({'/': {'VM.Allocate': 1, 'VM.Audit': 1}, '/vms': {'VM.Audit': 1},
                              '/storage': {'VM.Allocate': 1, 'VM.Audit': 1}})
    assert perms.has('/vms/100', 'VM.Audit')
    assert not perms.has('/vms/100', 'VM.Allocate')
    assert perms.has('/storage/local', 'VM.Allocate')


def test_path_normalisation():
    perms = priv.Permissions({'/storage/': {'Datastore.Audit': 1}})
    assert perms.has('storage//local/', 'Datastore.Audit')
    assert priv.ancestors('/sdn/zones/localnetwork/vmbr0') == ['/sdn/zones/localnetwork', '/sdn/zones', '/sdn', '/']


def test_nodownload_fails_only_templates_and_names_alternatives():
    dump = full_dump()
    del dump['/nodes/pve']
    results = priv.evaluate(priv.Permissions(dump), priv.STEP_ORDER, CONTEXT, 9)
    missing = priv.missing_privileges(results)
    assert missing == [{'step': 'templates', 'path': '/nodes/pve', 'privilege': 'Sys.AccessNetwork'}]
    status, detail = priv.step_detail(results, 'templates')
    assert status == 'fail'
    assert 'Sys.AccessNetwork on /nodes/pve or Sys.Audit+Sys.Modify on /' in detail
    assert 'uploaded' in detail and 'Datastore.AllocateTemplate on /storage/local' in detail
    assert priv.step_detail(results, 'terraform_apply')[0] == 'pass'
    assert priv.step_detail(results, 'ansible_inventory')[0] == 'pass'


def test_sys_audit_and_modify_on_root_satisfy_download():
    dump = full_dump()
    del dump['/nodes/pve']
    dump['/'] = {'Sys.Audit': 0, 'Sys.Modify': 0}  # a non-propagating ACL on / only
    results = priv.evaluate(priv.Permissions(dump), ['templates'], CONTEXT, 9)
    assert all(r['ok'] for r in results)


def test_guest_agent_privilege_depends_on_major_version():
    dump8 = full_dump(major=8)
    assert priv.missing_privileges(priv.evaluate(priv.Permissions(dump8), ['ansible_inventory'], CONTEXT, 8)) == []
    missing9 = priv.missing_privileges(priv.evaluate(priv.Permissions(dump8), ['ansible_inventory'], CONTEXT, 9))
    assert missing9 == [{'step': 'ansible_inventory', 'path': '/vms', 'privilege': 'VM.GuestAgent.Audit'}]


def test_every_storage_bridge_and_mapping_is_checked():
    results = priv.evaluate(priv.Permissions({}), ['terraform_apply'], CONTEXT, 9)
    paths = {entry['path'] for entry in priv.missing_privileges(results)}
    assert paths == {'/vms', '/storage/local-lvm', '/storage/local', '/sdn/zones/localnetwork/vmbr0',
                     '/mapping/pci/gpu0'}
    missing = {(m['path'], m['privilege']) for m in priv.missing_privileges(results)}
    assert ('/mapping/pci/gpu0', 'Mapping.Use') in missing
    assert ('/storage/local', 'Datastore.AllocateSpace') in missing
    assert {p for path, p in missing if path == '/vms'} == set(ALL_TERRAFORM)


def test_no_pci_mapping_no_mapping_rule():
    ctx = dict(CONTEXT, pci_mappings=[])
    results = priv.evaluate(priv.Permissions({}), ['terraform_apply'], ctx, 9)
    assert 'pci_mapping' not in {r['rule'] for r in results}


@pytest.mark.parametrize('value,raw', [('0000:01:00.0', True), ('01:00.0', True), ('01:00', True),
                                       ('gpu0', False), ('nvidia-a2000', False)])
def test_raw_pci_address(value, raw):
    assert priv.is_raw_pci_address(value) is raw


def test_remediation_grants_exactly_the_missing_privileges():
    missing = [
        {'step': 'templates', 'path': '/nodes/pve', 'privilege': 'Sys.AccessNetwork'},
        {'step': 'terraform_apply', 'path': '/vms', 'privilege': 'VM.Allocate'},
        {'step': 'ansible_inventory', 'path': '/vms', 'privilege': 'VM.GuestAgent.Audit'},
    ]
    cmds = priv.remediation(missing, 'pipeline@pve!full', user_missing=[], user_known=True)
    assert cmds[0] == "pveum role add EMInfraPipeline --privs 'Sys.AccessNetwork,VM.Allocate,VM.GuestAgent.Audit'"
    assert 'pveum role modify EMInfraPipeline --append 1' in cmds[1] and cmds[1].startswith('#')
    assert "pveum acl modify /nodes/pve --tokens 'pipeline@pve!full' --roles EMInfraPipeline" in cmds
    assert "pveum acl modify /vms --tokens 'pipeline@pve!full' --roles EMInfraPipeline" in cmds
    assert not any('--users' in cmd for cmd in cmds)


def test_remediation_user_lines_when_user_lacks_them_or_unknown():
    missing = [{'step': 'templates', 'path': '/nodes/pve', 'privilege': 'Sys.AccessNetwork'}]
    known = priv.remediation(missing, 'pipeline@pve!noacl', user_missing=missing, user_known=True)
    assert "pveum acl modify /nodes/pve --users 'pipeline@pve' --roles EMInfraPipeline" in known
    unknown = priv.remediation(missing, 'pipeline@pve!noacl')
    assert "pveum acl modify /nodes/pve --users 'pipeline@pve' --roles EMInfraPipeline" in unknown
    assert any(cmd.startswith('#') and 'if pipeline@pve lacks them' in cmd for cmd in unknown)
    assert priv.remediation([], 'pipeline@pve!full') == []


def test_privileges_in_matrix_exist_in_real_pve_rules():
    """Every privilege of the matrix is one Proxmox VE knows (from the official API schema)."""
    if not SCHEMA.is_file():
        pytest.skip(f'{SCHEMA} not present')
    text = SCHEMA.read_text(encoding='utf-8')
    for rule in priv.MATRIX:
        pairs = list(rule['all']) + [pair for alt in rule.get('any_of', ()) for pair in alt]
        for dummy, privs in pairs:
            for name in privs:
                if name == 'VM.Monitor':
                    continue  # PVE 8 only; the schema is PVE 9's
                assert f'"{name}"' in text or f"'{name}'" in text or name in text, name


def test_download_url_rule_matches_schema():
    if not SCHEMA.is_file():
        pytest.skip(f'{SCHEMA} not present')
    schema = json.loads(SCHEMA.read_text(encoding='utf-8'))
    check = schema['/nodes/{node}/storage/{storage}/download-url']['POST']['permissions']['check']
    assert check == ['and', ['perm', '/storage/{storage}', ['Datastore.AllocateTemplate']],
                     ['or', ['perm', '/', ['Sys.Audit', 'Sys.Modify']], ['perm', '/nodes/{node}', ['Sys.AccessNetwork']]]]


def test_exact_answer_overrides_inheritance():
    perms = priv.Permissions({'/': {'Mapping.Use': 1}, '/mapping': {'Mapping.Use': 1}})
    assert perms.has('/mapping/pci/gpu0', 'Mapping.Use')
    assert not perms.listed('/mapping/pci/gpu0')
    perms.set_exact('/mapping/pci/gpu0', {})  # PVE: NoAccess there
    assert perms.listed('/mapping/pci/gpu0')
    assert not perms.has('/mapping/pci/gpu0', 'Mapping.Use')


def test_required_paths_cover_every_rule():
    paths = priv.required_paths(priv.STEP_ORDER, CONTEXT, 9)
    assert paths == ['/storage/local', '/nodes/pve', '/', '/vms', '/storage/local-lvm',
                     '/sdn/zones/localnetwork/vmbr0', '/mapping/pci/gpu0']


CONTAINER_CONTEXT = dict(CONTEXT, containers=['ct-01'], vm_storage='local-lvm', bridge='vmbr0')


def test_container_rule_only_when_the_intent_has_containers():
    without = priv.evaluate(priv.Permissions(full_dump()), priv.STEP_ORDER, dict(CONTEXT, containers=[]), 9)
    assert 'container_lifecycle' not in {r['rule'] for r in without}
    assert '/storage/local' not in [p for r in without if r['rule'] == 'container_lifecycle' for p, dummy in r['required']]
    with_ct = priv.evaluate(priv.Permissions(full_dump()), priv.STEP_ORDER, CONTAINER_CONTEXT, 9)
    rule = [r for r in with_ct if r['rule'] == 'container_lifecycle']
    assert len(rule) == 1 and rule[0]['ok'] and rule[0]['step'] == 'terraform_apply'
    assert 'containers (from the container template on local, root file systems on local-lvm)' in rule[0]['what']
    assert dict(rule[0]['required'])['/storage/local'] == ('Datastore.AllocateSpace', 'Datastore.AllocateTemplate')
    assert dict(rule[0]['required'])['/sdn/zones/localnetwork/vmbr0'] == ('SDN.Use',)


def test_a_missing_container_privilege_names_the_containers_and_the_pveum_commands():
    dump = full_dump()
    dump['/storage'] = {'Datastore.AllocateSpace': 1, 'Datastore.Audit': 1}  # no AllocateTemplate anywhere
    dump['/nodes/pve'] = {}
    results = priv.evaluate(priv.Permissions(dump), ['terraform_apply'], CONTAINER_CONTEXT, 9)
    missing = priv.missing_privileges(results)
    assert missing == [{'step': 'terraform_apply', 'path': '/storage/local', 'privilege': 'Datastore.AllocateTemplate'}]
    status, detail = priv.step_detail(results, 'terraform_apply')
    assert status == 'fail'
    assert 'cannot create, configure, start and read the containers' in detail
    assert 'missing Datastore.AllocateTemplate on /storage/local' in detail
    commands = priv.remediation(missing, 'pipeline@pve!full', user_missing=[], user_known=True)
    assert commands[0] == "pveum role add EMInfraPipeline --privs 'Datastore.AllocateTemplate'"
    assert "pveum acl modify /storage/local --tokens 'pipeline@pve!full' --roles EMInfraPipeline" in commands
    # Without containers the same token passes terraform_apply.
    results = priv.evaluate(priv.Permissions(dump), ['terraform_apply'], dict(CONTAINER_CONTEXT, containers=[]), 9)
    assert priv.missing_privileges(results) == []


def test_container_rule_matches_the_lxc_create_permissions_of_the_schema():
    if not SCHEMA.is_file():
        pytest.skip(f'{SCHEMA} not present')
    schema = json.loads(SCHEMA.read_text(encoding='utf-8'))
    text = schema['/nodes/{node}/lxc']['POST']['permissions']['description']
    assert "'VM.Allocate' permission on /vms/{vmid}" in text and "'Datastore.AllocateSpace'" in text
    rule = next(r for r in priv.MATRIX if r['id'] == 'container_lifecycle')
    pairs = dict(rule['all'])
    assert 'VM.Allocate' in pairs['/vms'] and 'Datastore.AllocateSpace' in pairs['/storage/{vm_storage}']
