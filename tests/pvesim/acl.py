# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Proxmox VE privilege model: built-in roles, ACL propagation, token intersection and the
``check`` expressions of the API schema, with the server's exact 403 texts.

Role and privilege lists follow pve-access-control (PVE 9): privileges come in groups (VM, Sys,
Datastore, SDN, User, Pool, Mapping) with root/admin/user/audit tiers; PVE<Group>Admin,
PVE<Group>User, PVEAdmin and PVEAuditor are derived from them exactly as the real server does.
"""

from __future__ import annotations

PRIV_GROUPS: dict[str, dict[str, list[str]]] = {
    'VM': {
        'root': [],
        'admin': ['VM.Config.Disk', 'VM.Config.CPU', 'VM.Config.Memory', 'VM.Config.Network',
                  'VM.Config.HWType', 'VM.Config.Options', 'VM.Allocate', 'VM.Clone',
                  'VM.GuestAgent.Unrestricted', 'VM.Migrate', 'VM.Replicate', 'VM.Snapshot',
                  'VM.Snapshot.Rollback'],
        'user': ['VM.Config.CDROM', 'VM.Config.Cloudinit', 'VM.Console', 'VM.Backup',
                 'VM.GuestAgent.FileRead', 'VM.GuestAgent.FileSystemMgmt', 'VM.GuestAgent.FileWrite',
                 'VM.PowerMgmt'],
        'audit': ['VM.Audit', 'VM.GuestAgent.Audit'],
    },
    'Sys': {
        'root': ['Sys.PowerMgmt', 'Sys.Modify', 'Sys.Incoming', 'Sys.AccessNetwork'],
        'admin': ['Sys.Console', 'Sys.Syslog'],
        'user': [],
        'audit': ['Sys.Audit'],
    },
    'Datastore': {
        'root': [],
        'admin': ['Datastore.Allocate', 'Datastore.AllocateTemplate'],
        'user': ['Datastore.AllocateSpace'],
        'audit': ['Datastore.Audit'],
    },
    'SDN': {
        'root': [],
        'admin': ['SDN.Allocate', 'SDN.Audit'],
        'user': ['SDN.Use'],
        'audit': ['SDN.Audit'],
    },
    'User': {
        'root': ['Realm.Allocate'],
        'admin': ['User.Modify', 'Group.Allocate', 'Realm.AllocateUser'],
        'user': [],
        'audit': [],
    },
    'Pool': {
        'root': [],
        'admin': ['Pool.Allocate'],
        'user': ['Pool.Audit'],
        'audit': ['Pool.Audit'],
    },
    'Mapping': {
        'root': [],
        'admin': ['Mapping.Modify'],
        'user': ['Mapping.Use'],
        'audit': ['Mapping.Audit'],
    },
}


def _build_roles() -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    valid = {'Permissions.Modify'}
    roles: dict[str, set[str]] = {'NoAccess': set(), 'PVEAdmin': set(), 'PVEAuditor': set()}
    for cat, tiers in PRIV_GROUPS.items():
        for tier in ('root', 'admin', 'user', 'audit'):
            valid.update(tiers[tier])
        admin = tiers['admin'] + tiers['user'] + tiers['audit']
        roles.setdefault(f'PVE{cat}Admin', set()).update(admin)
        roles['PVEAdmin'].update(admin)
        if tiers['user']:
            roles.setdefault(f'PVE{cat}User', set()).update(tiers['user'] + tiers['audit'])
        roles['PVEAuditor'].update(tiers['audit'])
    roles['PVEAdmin'].discard('Mapping.Modify')
    roles['PVETemplateUser'] = {'VM.Clone', 'VM.Audit'}
    roles['Administrator'] = set(valid)
    return frozenset(valid), {name: frozenset(privs) for name, privs in roles.items()}


VALID_PRIVS, BUILTIN_ROLES = _build_roles()


class PermissionDenied(Exception):
    """A failed check; ``str()`` is the exact message the real server sends with 403."""


def normalize_path(path: str) -> str:
    parts = [part for part in path.split('/') if part]
    return '/' + '/'.join(parts)


class AccessConfig:
    """users, tokens, groups, roles and ACL entries, as in /etc/pve/user.cfg."""

    def __init__(self) -> None:
        self.roles: dict[str, frozenset[str]] = dict(BUILTIN_ROLES)
        # acl[path] = list of (kind, ugid, role, propagate); kind is user|group|token
        self.acl: dict[str, list[tuple[str, str, str, bool]]] = {}
        self.groups: dict[str, set[str]] = {}
        self.users: dict[str, dict] = {}

    def add_role(self, name: str, privs: list[str]) -> None:
        unknown = [priv for priv in privs if priv not in VALID_PRIVS]
        if unknown:
            raise ValueError(f"role {name}: invalid privilege '{unknown[0]}'")
        self.roles[name] = frozenset(privs)

    def add_acl(self, path: str, role: str, propagate: bool = True, user: str | None = None,
                group: str | None = None, token: str | None = None) -> None:
        if role not in self.roles:
            raise ValueError(f"role '{role}' does not exist")
        kind, ugid = ('token', token) if token else ('group', group) if group else ('user', user)
        if not ugid:
            raise ValueError(f'ACL on {path}: name a user, group or token')
        self.acl.setdefault(normalize_path(path), []).append((kind, ugid, role, bool(propagate)))

    def _user_groups(self, userid: str) -> set[str]:
        return {name for name, members in self.groups.items() if userid in members}

    def roles_for(self, ugid: str, path: str, is_token: bool) -> dict[str, bool]:
        """The roles of one user or token on ``path`` (PVE's AccessControl::roles, without pools)."""
        path = normalize_path(path)
        split = [''] if path == '/' else path.split('/')
        result: dict[str, bool] = {}
        groups = set() if is_token else self._user_groups(ugid)
        current = ''
        for index, part in enumerate(split):
            final = index == len(split) - 1
            current = '/' if part == '' and index == 0 else (current.rstrip('/') + '/' + part)
            entries = self.acl.get(current)
            if not entries:
                continue
            own_kind = 'token' if is_token else 'user'
            new: dict[str, bool] = {}
            for kind, name, role, propagate in entries:
                if kind == own_kind and name == ugid and (final or propagate):
                    new[role] = propagate
            if new:
                result = new
                continue
            if is_token:
                continue
            for kind, name, role, propagate in entries:
                if kind == 'group' and name in groups and (final or propagate):
                    new[role] = propagate
            if new:
                result = new
        return result

    def _privs_of(self, ugid: str, path: str, is_token: bool) -> dict[str, bool]:
        roles = self.roles_for(ugid, path, is_token)
        if 'NoAccess' in roles:
            return {}
        privs: dict[str, bool] = {}
        for role, propagate in roles.items():
            for priv in self.roles.get(role, ()):
                privs[priv] = privs.get(priv, False) or propagate
        return privs

    def permissions(self, authid: str, path: str) -> dict[str, bool]:
        """Effective privileges (priv -> propagates) of a user or token on ``path``."""
        if authid == 'root@pam':
            return {priv: True for priv in VALID_PRIVS}
        if '!' in authid:
            userid, tokenname = authid.split('!', 1)
            token = self.users.get(userid, {}).get('tokens', {}).get(tokenname)
            if token is None:
                return {}
            user_privs = self.permissions(userid, path)
            if not token.get('privsep', True):
                return user_privs
            token_privs = self._privs_of(authid, path, True)
            return {priv: prop and user_privs[priv] for priv, prop in token_privs.items()
                    if priv in user_privs}
        return self._privs_of(authid, path, False)

    def acl_paths(self) -> list[str]:
        return sorted(self.acl)


class Checker:
    """Evaluates schema ``check`` expressions for one authenticated caller."""

    def __init__(self, config: AccessConfig, authid: str) -> None:
        self.config = config
        self.authid = authid
        self._cache: dict[str, dict[str, bool]] = {}

    def privs(self, path: str) -> dict[str, bool]:
        path = normalize_path(path)
        key = self._inherit_key(path)
        if key not in self._cache:
            self._cache[key] = self.config.permissions(self.authid, path)
        return self._cache[key]

    def _inherit_key(self, path: str) -> str:
        """Paths without ACL entries of their own (e.g. 10,000 /vms/N) only inherit what
        propagates from their deepest ancestor with entries, so they share one result."""
        acl = self.config.acl
        if path in acl:
            return path
        parent = path
        while parent != '/':
            parent = parent.rsplit('/', 1)[0] or '/'
            if parent in acl:
                break
        return parent + '\0inherit'

    def has(self, path: str, privs: list[str] | tuple[str, ...], any_of: bool = False) -> bool:
        have = self.privs(path)
        if any_of:
            return any(priv in have for priv in privs)
        return all(priv in have for priv in privs)

    def require(self, path: str, privs: list[str] | tuple[str, ...], any_of: bool = False) -> None:
        """check_perm_modify-style: raise the real server's message naming path and privilege."""
        path = normalize_path(path)
        have = self.privs(path)
        if any_of:
            if not any(priv in have for priv in privs):
                raise PermissionDenied(f"Permission check failed ({path}, {'|'.join(privs)})")
            return
        for priv in privs:
            if priv not in have:
                raise PermissionDenied(f'Permission check failed ({path}, {priv})')

    def evaluate(self, check: list, params: dict[str, str], noerr: bool = False) -> bool:
        """Evaluate one ``check`` expression; raise PermissionDenied unless ``noerr``."""
        op = check[0]
        if op == 'and':
            # as in RPCEnvironment: the parts of an 'and' always raise, even under an 'or'
            for sub in check[1:]:
                self.evaluate(sub, params)
            return True
        if op == 'or':
            for sub in check[1:]:
                if self.evaluate(sub, params, True):
                    return True
            if noerr:
                return False
            raise PermissionDenied('Permission check failed')
        if op == 'perm':
            path_tmpl, privs = check[1], check[2]
            opts = dict(zip(check[3::2], check[4::2]))
            if 'require_param' in opts and params.get(opts['require_param']) in (None, ''):
                if noerr:
                    return False
                raise PermissionDenied('Permission check failed')
            path = expand_path(path_tmpl, params)
            any_of = bool(opts.get('any'))
            if noerr:
                return self.has(path, privs, any_of)
            self.require(path, privs, any_of)
            return True
        if op == 'userid-param':
            # a token is never its user: 'self' matches a user acting for itself only
            if check[1] == 'self' and params.get('userid', '') == self.authid:
                return True
            if noerr:
                return False
            raise PermissionDenied('Permission check failed')
        if op == 'userid-group':
            # privileges on /access/groups, or on a group the target user belongs to
            privs = check[1]
            target = params.get('userid', '')
            paths = ['/access/groups'] + [f'/access/groups/{g}' for g in sorted(self.config._user_groups(target))]
            if any(self.has(path, privs, any_of=True) for path in paths):
                return True
            if noerr:
                return False
            raise PermissionDenied('Permission check failed')
        if op == 'admin':
            return self.evaluate(['perm', '/', ['Sys.Audit']], params, noerr)
        raise ValueError(f'unsupported check operator {op!r}')


def expand_path(template: str, params: dict[str, str]) -> str:
    out = template
    for key, value in params.items():
        out = out.replace('{' + key + '}', str(value))
    return normalize_path(out)
