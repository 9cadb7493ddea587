# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ACL engine on its own: built-in roles, propagation, groups, NoAccess, token intersection,
and the check expressions with their messages."""

from __future__ import annotations

import pytest

from tests.pvesim.acl import BUILTIN_ROLES, VALID_PRIVS, AccessConfig, Checker, PermissionDenied


def test_builtin_roles_match_pve9():
    assert set(BUILTIN_ROLES) == {
        'Administrator', 'NoAccess', 'PVEAdmin', 'PVEAuditor', 'PVETemplateUser', 'PVEVMAdmin', 'PVEVMUser',
        'PVESysAdmin', 'PVEDatastoreAdmin', 'PVEDatastoreUser', 'PVESDNAdmin', 'PVESDNUser', 'PVEUserAdmin',
        'PVEPoolAdmin', 'PVEPoolUser', 'PVEMappingAdmin', 'PVEMappingUser'}
    assert BUILTIN_ROLES['Administrator'] == VALID_PRIVS and 'Permissions.Modify' in VALID_PRIVS
    assert 'VM.Monitor' not in VALID_PRIVS  # removed in PVE 9
    assert BUILTIN_ROLES['PVEDatastoreUser'] == {'Datastore.AllocateSpace', 'Datastore.Audit'}
    assert BUILTIN_ROLES['PVESDNUser'] == {'SDN.Use', 'SDN.Audit'}
    assert BUILTIN_ROLES['PVEMappingUser'] == {'Mapping.Use', 'Mapping.Audit'}
    assert BUILTIN_ROLES['PVETemplateUser'] == {'VM.Clone', 'VM.Audit'}
    assert 'Mapping.Modify' not in BUILTIN_ROLES['PVEAdmin'] and 'Mapping.Modify' in BUILTIN_ROLES['PVEMappingAdmin']
    # no built-in PVE*Admin role grants what download-url needs beyond the storage
    for name, privs in BUILTIN_ROLES.items():
        if name.startswith('PVE'):
            assert 'Sys.AccessNetwork' not in privs and 'Sys.Modify' not in privs, name
    assert {'VM.GuestAgent.Audit', 'VM.Audit', 'Sys.Audit', 'Datastore.Audit', 'SDN.Audit', 'Pool.Audit',
            'Mapping.Audit'} == BUILTIN_ROLES['PVEAuditor']


def _config() -> AccessConfig:
    config = AccessConfig()
    config.users['u@pve'] = {'enable': True, 'expire': 0,
                             'tokens': {'sep': {'privsep': True}, 'nosep': {'privsep': False}}}
    return config


def test_propagation_and_override():
    config = _config()
    config.add_acl('/vms', 'PVEVMAdmin', True, user='u@pve')
    config.add_acl('/vms/100', 'PVEAuditor', False, user='u@pve')
    assert 'VM.Allocate' in config.permissions('u@pve', '/vms/200')
    # a deeper entry replaces what propagates from above
    assert 'VM.Allocate' not in config.permissions('u@pve', '/vms/100')
    assert config.permissions('u@pve', '/vms/100')['VM.Audit'] is False
    assert config.permissions('u@pve', '/storage') == {}
    config.add_acl('/storage', 'PVEDatastoreUser', False, user='u@pve')
    assert config.permissions('u@pve', '/storage/local') == {}  # not propagated
    assert config.permissions('u@pve', '/storage') == {'Datastore.AllocateSpace': False, 'Datastore.Audit': False}


def test_groups_and_noaccess():
    config = _config()
    config.groups['ops'] = {'u@pve'}
    config.add_acl('/', 'PVEAuditor', True, group='ops')
    assert 'Sys.Audit' in config.permissions('u@pve', '/nodes/pve')
    config.add_acl('/nodes/pve', 'NoAccess', True, group='ops')
    assert config.permissions('u@pve', '/nodes/pve') == {}
    # a user entry on the same level wins over the group's
    config.add_acl('/nodes/pve', 'PVEAuditor', True, user='u@pve')
    assert 'Sys.Audit' in config.permissions('u@pve', '/nodes/pve')


def test_token_privilege_separation():
    config = _config()
    config.add_acl('/', 'PVEVMAdmin', True, user='u@pve')
    assert config.permissions('u@pve!sep', '/vms/1') == {}  # privsep and no ACL of its own
    assert config.permissions('u@pve!nosep', '/vms/1') == config.permissions('u@pve', '/vms/1')
    config.add_acl('/', 'PVEAdmin', True, token='u@pve!sep')
    privs = config.permissions('u@pve!sep', '/vms/1')
    assert set(privs) == set(BUILTIN_ROLES['PVEVMAdmin'])  # the intersection with the user's
    assert config.permissions('u@pve!missing', '/') == {}


def test_check_expressions_and_messages():
    config = _config()
    config.add_acl('/storage/local', 'PVEDatastoreAdmin', True, token='u@pve!nosep')
    config.add_acl('/storage/local', 'PVEDatastoreAdmin', True, user='u@pve')
    checker = Checker(config, 'u@pve')
    params = {'node': 'pve', 'storage': 'local'}
    download = ['and', ['perm', '/storage/{storage}', ['Datastore.AllocateTemplate']],
                ['or', ['perm', '/', ['Sys.Audit', 'Sys.Modify']], ['perm', '/nodes/{node}', ['Sys.AccessNetwork']]]]
    with pytest.raises(PermissionDenied, match=r'^Permission check failed$'):
        checker.evaluate(download, params)
    with pytest.raises(PermissionDenied, match=r'^Permission check failed \(/storage/other, Datastore.AllocateTemplate\)$'):
        checker.evaluate(download, {**params, 'storage': 'other'})
    with pytest.raises(PermissionDenied, match=r'^Permission check failed \(/vms/7, VM.Audit\|VM.Allocate\)$'):
        checker.evaluate(['perm', '/vms/{vmid}', ['VM.Audit', 'VM.Allocate'], 'any', 1], {'vmid': '7'})
    config.add_acl('/nodes/pve', 'Administrator', False, user='u@pve')
    assert Checker(config, 'u@pve').evaluate(download, params) is True
    clone = ['or', ['perm', '/vms/{newid}', ['VM.Allocate']], ['perm', '/pool/{pool}', ['VM.Allocate'], 'require_param', 'pool']]
    assert Checker(config, 'u@pve').evaluate(clone, {'newid': '5'}, noerr=True) is False
    assert Checker(config, 'root@pam').evaluate(download, params) is True


def test_inherited_paths_share_results_but_stay_exact():
    config = _config()
    config.add_acl('/', 'PVEAuditor', True, user='u@pve')
    config.add_acl('/vms', 'PVEVMAdmin', True, user='u@pve')
    config.add_acl('/vms/5', 'NoAccess', True, user='u@pve')
    config.add_acl('/vms/6', 'PVEVMUser', False, user='u@pve')
    checker = Checker(config, 'u@pve')
    for vmid in (1, 2, 5, 6, 7):
        assert checker.privs(f'/vms/{vmid}') == config.permissions('u@pve', f'/vms/{vmid}')
    assert checker.privs('/vms/5') == {}
    assert 'VM.Allocate' not in checker.privs('/vms/6') and 'VM.PowerMgmt' in checker.privs('/vms/6')
    assert 'VM.Allocate' in checker.privs('/vms/7') and checker.privs('/vms/7') == checker.privs('/vms/1')
