# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Which Proxmox VE privileges each pipeline step needs, and the pveum commands that grant them.

This is a private module_utils file of eminfra.pipeline; its API may change at any time.

The matrix is data (``MATRIX``), taken from the permission rules of the API calls each step
makes (see the ``permissions`` of the calls in the official API schema):

- templates: ``POST /nodes/{node}/storage/{storage}/download-url`` needs
  Datastore.AllocateTemplate on /storage/{storage} and either Sys.AccessNetwork on
  /nodes/{node} or Sys.Audit + Sys.Modify on /. An upload needs Datastore.AllocateTemplate only.
- terraform_apply: ``POST /nodes/{node}/qemu`` needs VM.Allocate on /vms/{vmid}, VM.Config.* for
  the options set, Datastore.AllocateSpace on every storage used (the VM storage and the import
  source), SDN.Use on every bridge (/sdn/zones/localnetwork/{bridge}), Mapping.Use on
  /mapping/pci/{id} for a mapped PCI device; reading and starting VMs needs VM.Audit and
  VM.PowerMgmt.
- terraform_apply, only when the intent has a container: ``POST /nodes/{node}/lxc`` needs the
  same on /vms (VM.Config.* for the container's options), Datastore.AllocateSpace on the rootfs
  storage and on the template's storage, SDN.Use on the bridge.
- ansible_inventory: guest-agent reads need VM.GuestAgent.Audit on PVE 9 (VM.Monitor on PVE 8).

Privileges are evaluated against ``GET /access/permissions``: ``{path: {privilege: 0|1}}`` with
each path's effective privileges; a path without an entry inherits the privileges flagged 1
(propagate) on its nearest listed ancestor. Proxmox always evaluates the top-level paths
(``ALWAYS_EVALUATED``) and leaves out paths where nothing is granted, so a missing top-level
path means no privileges below it (unless a deeper path is listed). An omitted deeper path
(a NoAccess ACL) cannot be seen in the whole answer: callers add the exact answer for each
path they need with ``set_exact`` (``GET /access/permissions?path=...``).
"""

from __future__ import annotations

import re

from ansible_collections.eminfra.pipeline.plugins.module_utils._state import STEPS

#: Role name the remediation creates.
ROLE_NAME = 'EMInfraPipeline'

#: The steps whose privileges the token check covers, in order (the token_checked steps of STEPS).
STEP_ORDER = tuple(str(step) for step in STEPS if step.token_checked)

VM_CONFIG_PRIVS = ('VM.Config.Disk', 'VM.Config.CDROM', 'VM.Config.CPU', 'VM.Config.Memory', 'VM.Config.Network',
                   'VM.Config.Options', 'VM.Config.Cloudinit', 'VM.Config.HWType')

#: Each rule: the step, a rule id, what the step does with it, ``all`` (path, privileges) pairs
#: that must all hold, optional ``any_of`` alternatives (each a tuple of pairs; the first is the
#: one the remediation grants), ``foreach`` (a context list; ``{item}`` in paths), and the PVE
#: major versions it applies to. Paths are templates over the context (node, storages ...).
MATRIX: tuple[dict, ...] = (
    {
        'step': 'templates', 'id': 'download_url',
        'what': 'download the template artefacts into {template_storage} (download-url)',
        'all': (('/storage/{template_storage}', ('Datastore.AllocateTemplate',)),),
        'any_of': ((('/nodes/{node}', ('Sys.AccessNetwork',)),),
                   (('/', ('Sys.Audit', 'Sys.Modify')),)),
        'fallback': 'without them the artefacts can still be uploaded from this machine, which needs '
                    'only Datastore.AllocateTemplate on /storage/{template_storage}',
    },
    {
        'step': 'terraform_apply', 'id': 'vm_lifecycle',
        'what': 'create, configure, start and read the VMs',
        'all': (('/vms', ('VM.Allocate', 'VM.Audit', 'VM.PowerMgmt') + VM_CONFIG_PRIVS),),
    },
    {
        # Only when the intent has a container (``when``: a true context value). POST
        # /nodes/{node}/lxc needs VM.Allocate on /vms/{vmid}, VM.Config.* for the options set
        # (cores: CPU, memory/swap: Memory, rootfs: Disk, net0/hostname/nameserver: Network,
        # features/ostype/onboot/tags: Options), Datastore.AllocateSpace on the rootfs storage,
        # access to the template volume (Datastore.AllocateSpace on its storage) and SDN.Use on
        # the bridge; the templates step places the template (Datastore.AllocateTemplate).
        'step': 'terraform_apply', 'id': 'container_lifecycle', 'when': 'containers',
        'what': 'create, configure, start and read the containers (from the container template on '
                '{template_storage}, root file systems on {vm_storage})',
        'all': (('/vms', ('VM.Allocate', 'VM.Audit', 'VM.PowerMgmt', 'VM.Config.Disk', 'VM.Config.CPU',
                          'VM.Config.Memory', 'VM.Config.Network', 'VM.Config.Options')),
                ('/storage/{vm_storage}', ('Datastore.AllocateSpace',)),
                ('/storage/{template_storage}', ('Datastore.AllocateSpace', 'Datastore.AllocateTemplate')),
                ('/sdn/zones/localnetwork/{bridge}', ('SDN.Use',))),
    },
    {
        'step': 'terraform_apply', 'id': 'storage_space', 'foreach': 'storages',
        'what': 'allocate disks on {item} and import from it',
        'all': (('/storage/{item}', ('Datastore.AllocateSpace', 'Datastore.Audit')),),
    },
    {
        'step': 'terraform_apply', 'id': 'bridge', 'foreach': 'bridges',
        'what': 'attach VM NICs to bridge {item}',
        'all': (('/sdn/zones/localnetwork/{item}', ('SDN.Use',)),),
    },
    {
        'step': 'terraform_apply', 'id': 'pci_mapping', 'foreach': 'pci_mappings',
        'what': 'pass the mapped PCI device {item} through',
        'all': (('/mapping/pci/{item}', ('Mapping.Use',)),),
    },
    {
        'step': 'ansible_inventory', 'id': 'guest_agent', 'max_major': 8,
        'what': 'read VM state and guest-agent addresses (PVE 8: VM.Monitor)',
        'all': (('/vms', ('VM.Audit', 'VM.Monitor')),),
    },
    {
        'step': 'ansible_inventory', 'id': 'guest_agent', 'min_major': 9,
        'what': 'read VM state and guest-agent addresses (PVE 9: VM.GuestAgent.Audit)',
        'all': (('/vms', ('VM.Audit', 'VM.GuestAgent.Audit')),),
    },
)

#: Paths PVE's get_effective_permissions always evaluates (absent from the answer: nothing there).
ALWAYS_EVALUATED = frozenset({'/', '/access', '/access/groups', '/nodes', '/pool', '/sdn', '/storage', '/vms'})

RAW_PCI_RE = re.compile(r'^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(\.[0-7])?$')


def is_raw_pci_address(value: str) -> bool:
    """True for ``0000:01:00.0`` / ``01:00.0`` / ``01:00``: host PCI ids, not mapping names."""
    return bool(RAW_PCI_RE.match(str(value).strip()))


def normalise_path(path: str) -> str:
    path = '/' + '/'.join(seg for seg in str(path).split('/') if seg)
    return path


def ancestors(path: str) -> list[str]:
    """Proper ancestors of ``path``, nearest first, ending with ``/``."""
    path = normalise_path(path)
    out = []
    while path != '/':
        path = path.rsplit('/', 1)[0] or '/'
        out.append(path)
    return out


class Permissions:
    """The answer of ``GET /access/permissions`` with PVE's propagation rules."""

    def __init__(self, dump: dict | None) -> None:
        self.dump: dict[str, dict[str, bool]] = {}
        for path, privs in (dump or {}).items():
            if isinstance(privs, dict):
                self.dump[normalise_path(path)] = {str(priv): bool(int(flag or 0)) for priv, flag in privs.items()}

    @property
    def empty(self) -> bool:
        return not any(self.dump.values())

    def set_exact(self, path: str, privs: dict | None) -> None:
        """Record the exact answer for ``path`` (``GET /access/permissions?path=...``)."""
        self.dump[normalise_path(path)] = {str(priv): bool(int(flag or 0)) for priv, flag in (privs or {}).items()}

    def listed(self, path: str) -> bool:
        return normalise_path(path) in self.dump

    def privileges_at(self, path: str) -> set[str]:
        path = normalise_path(path)
        if path in self.dump:
            return set(self.dump[path])
        if path in ALWAYS_EVALUATED:
            return set()
        for parent in ancestors(path):
            if parent in self.dump:
                return {priv for priv, propagate in self.dump[parent].items() if propagate}
            if parent in ALWAYS_EVALUATED:
                return set()
        return set()

    def has(self, path: str, privilege: str) -> bool:
        return privilege in self.privileges_at(path)

    def missing(self, pairs) -> list[tuple[str, str]]:
        return [(path, priv) for path, privs in pairs for priv in privs if not self.has(path, priv)]


def pve_major(version: str | None) -> int | None:
    match = re.match(r'\s*(\d+)', str(version or ''))
    return int(match.group(1)) if match else None


def rules_for(steps, major: int | None, context: dict | None = None) -> list[dict]:
    out = []
    for rule in MATRIX:
        if rule['step'] not in steps:
            continue
        if rule.get('when') and not (context or {}).get(rule['when']):
            continue
        if major is not None and (major < rule.get('min_major', 0) or major > rule.get('max_major', 99)):
            continue
        if major is None and 'min_major' in rule:
            continue  # unknown version: the PVE 8 rule (older name) is checked
        out.append(rule)
    return out


def required_paths(steps, context: dict, major: int | None) -> list[str]:
    """Every ACL path the rules for ``steps`` look at, in matrix order."""
    paths: list[str] = []
    for rule in rules_for(steps, major, context):
        items = list(dict.fromkeys(context.get(rule['foreach']) or [])) if rule.get('foreach') else [None]
        for item in items:
            pairs = list(_expand(rule['all'], context, item))
            for alt in rule.get('any_of', ()):
                pairs.extend(_expand(alt, context, item))
            paths.extend(path for path, dummy in pairs)
    return list(dict.fromkeys(paths))


def _expand(pairs, context: dict, item: str | None = None):
    values = dict(context, item=item)
    return tuple((normalise_path(path.format(**values)), tuple(privs)) for path, privs in pairs)


def evaluate(perms: Permissions, steps, context: dict, major: int | None) -> list[dict]:
    """One result per rule instance: {step, rule, what, path pairs, missing, alternatives, ok}.

    ``context``: node, template_storage, storages (list), bridges (list), pci_mappings (list);
    with ``containers`` true also vm_storage and bridge (the container rule).
    """
    results = []
    for rule in rules_for(steps, major, context):
        items = [None]
        if rule.get('foreach'):
            items = list(dict.fromkeys(context.get(rule['foreach']) or []))
            if not items:
                continue
        for item in items:
            fmt = dict(context, item=item)
            required = _expand(rule['all'], context, item)
            missing = perms.missing(required)
            alternatives = [_expand(alt, context, item) for alt in rule.get('any_of', ())]
            alt_missing = [perms.missing(alt) for alt in alternatives]
            any_ok = not alternatives or any(not miss for miss in alt_missing)
            if not any_ok:
                missing = missing + alt_missing[0]
            results.append({
                'step': rule['step'],
                'rule': rule['id'],
                'what': rule['what'].format(**fmt),
                'required': required,
                'alternatives': alternatives,
                'missing': missing,
                'alternatives_missing': [] if any_ok else alt_missing,
                'fallback': rule.get('fallback', '').format(**fmt) if rule.get('fallback') else '',
                'ok': not missing,
            })
    return results


def describe_missing(missing) -> str:
    """``VM.Allocate, VM.Audit on /vms; SDN.Use on /sdn/zones/localnetwork/vmbr0``."""
    by_path: dict[str, list[str]] = {}
    for path, priv in missing:
        by_path.setdefault(path, []).append(priv)
    return '; '.join(f'{", ".join(privs)} on {path}' for path, privs in by_path.items())


def describe_alternatives(alternatives) -> str:
    """``Sys.AccessNetwork on /nodes/pve or Sys.Audit+Sys.Modify on /``."""
    texts = []
    for alt in alternatives:
        texts.append(' and '.join(f'{"+".join(privs)} on {path}' for path, privs in alt))
    return ' or '.join(texts)


def step_detail(results: list[dict], step: str) -> tuple[str, str]:
    """(status, detail) of one step from ``evaluate`` results."""
    mine = [res for res in results if res['step'] == step]
    if not mine:
        return 'skip', f'no privilege rule applies to {step}'
    failed = [res for res in mine if not res['ok']]
    if not failed:
        return 'pass', 'all privileges present: ' + '; '.join(res['what'] for res in mine)
    parts = []
    for res in failed:
        text = f'cannot {res["what"]}: missing ' + describe_missing(res['missing'])
        if res['alternatives_missing']:
            text += f' (needs {describe_alternatives(res["alternatives"])})'
        if res['fallback']:
            text += f'; {res["fallback"]}'
        parts.append(text)
    return 'fail', '; '.join(parts)


def missing_privileges(results: list[dict]) -> list[dict]:
    """The flat list {step, path, privilege}, without duplicates, in matrix order."""
    seen = set()
    out = []
    for res in results:
        for path, priv in res['missing']:
            key = (res['step'], path, priv)
            if key not in seen:
                seen.add(key)
                out.append({'step': res['step'], 'path': path, 'privilege': priv})
    return out


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def remediation(missing: list[dict], token_id: str, user_missing: list[dict] | None = None,
                user_known: bool = False, role: str = ROLE_NAME, alternatives_note: str = '') -> list[str]:
    """Ready ``pveum`` commands that grant exactly the missing privileges.

    One role holding the union of the missing privileges, then one ACL per path for the token.
    A privilege-separated token gets at most what its user has: when the user's own
    privileges are known (``user_known``) the ``--users`` lines cover exactly what the user
    lacks (``user_missing``); otherwise they are given for every path, to run if the user lacks
    them.
    """
    if not missing:
        return []
    user = token_id.split('!', 1)[0]
    privs = sorted({entry['privilege'] for entry in missing})
    paths = list(dict.fromkeys(entry['path'] for entry in missing))
    priv_text = ','.join(privs)
    commands = [
        f'pveum role add {role} --privs {_quote(priv_text)}',
        f'# if the role {role} already exists: pveum role modify {role} --append 1 --privs {_quote(priv_text)}',
    ]
    for path in paths:
        commands.append(f'pveum acl modify {path} --tokens {_quote(token_id)} --roles {role}')
    if user_known:
        user_paths = list(dict.fromkeys(entry['path'] for entry in (user_missing or [])))
        if user_paths:
            commands.append(f'# {user} lacks them too, and a privilege-separated token gets only what its user has:')
            commands.extend(f'pveum acl modify {path} --users {_quote(user)} --roles {role}' for path in user_paths)
    else:
        commands.append(f'# a privilege-separated token gets only what its user has; if {user} lacks them too:')
        commands.extend(f'pveum acl modify {path} --users {_quote(user)} --roles {role}' for path in paths)
    if alternatives_note:
        commands.append(f'# {alternatives_note}')
    return commands
