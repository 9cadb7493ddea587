# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Access: effective permissions and API token info."""

from __future__ import annotations


from tests.pvesim.acl import Checker
from tests.pvesim.api.base import Ctx
from tests.pvesim.state import ApiError


# RPCEnvironment::get_effective_permissions: these plus every path with an ACL entry
PERMISSION_ROOTS = ['/', '/access', '/access/groups', '/nodes', '/pool', '/sdn', '/storage', '/vms']


def get_permissions(ctx: Ctx) -> object:
    sim = ctx.sim
    target = ctx.params.get('userid')
    authid = ctx.authid
    if target:
        target = str(target)
        owner = authid.split('!', 1)[0]
        own = target == authid or (target.startswith(owner + '!') and '!' not in authid)
        if not own:
            ctx.checker.require('/access', ['Sys.Audit'])
        authid = target
    checker = Checker(sim.access, authid)
    if ctx.params.get('path'):
        # one path: answered even when empty ({path: {}})
        path = str(ctx.params['path'])
        return {path: {priv: 1 if prop else 0 for priv, prop in sorted(checker.privs(path).items())}}
    out = {}
    for path in sorted(set(PERMISSION_ROOTS) | set(sim.access.acl_paths())):
        privs = checker.privs(path)
        if privs:  # paths with nothing are left out
            out[path] = {priv: 1 if prop else 0 for priv, prop in sorted(privs.items())}
    return out


def get_token_info(ctx: Ctx) -> object:
    userid = str(ctx.params['userid'])
    name = str(ctx.params['tokenid'])
    user = ctx.sim.access.users.get(userid)
    if user is None:
        raise ApiError(500, f"no such user ('{userid}')")
    token = user['tokens'].get(name)
    if token is None:
        raise ApiError(500, f"no such token '{name}' for user '{userid}'")
    out: dict[str, object] = {'privsep': 1 if token.get('privsep', True) else 0, 'expire': int(token.get('expire', 0))}
    if token.get('comment'):
        out['comment'] = token['comment']
    return out
