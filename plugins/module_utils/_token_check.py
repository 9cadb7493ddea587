# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The proxmox_access step's preflight: env file, token, node, storages, privileges per step.

This is a private module_utils file of eminfra.pipeline; its API may change at any time.

``_proxmox_env.load`` validates ``state/proxmox.env`` without any network call (presence, mode,
syntax, contract). ``TokenCheck.run`` then asks the API, read-only, and returns every check with
its status; ``TokenCheck.failure`` is the first failed check as a CheckError whose message ends
with the remediation (for privileges: the exact pveum commands).
"""

from __future__ import annotations

import os
import re

from ansible_collections.eminfra.pipeline.plugins.module_utils import _privileges as privileges
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError
from ansible_collections.eminfra.pipeline.plugins.module_utils._intent import load_intent
from ansible_collections.eminfra.pipeline.plugins.module_utils._proxmox import (
    ProxmoxAuthError, ProxmoxClient, ProxmoxError, ProxmoxPermissionError, ProxmoxTLSError,
    ProxmoxUnreachable,
)
from ansible_collections.eminfra.pipeline.plugins.module_utils._proxmox_env import ProxmoxSettings

MIN_VERSION = (8, 0)
IMPORT_MIN_VERSION = (8, 4)


def load_intent_context(cluster_file: str, nodes_file: str) -> dict:
    """Storages, bridge and PCI mappings from the validated intent (``_intent.load_intent``)."""
    for path in (cluster_file, nodes_file):
        if not os.path.isfile(path):
            raise CheckError('intent_valid', 'the intent file does not exist', where=path,
                             remediation='write the intent (inventory/dev/cluster.yaml and nodes.yaml) or pass '
                             'vm_storage, template_storage, bridge and pci_mappings as options')
    intent = load_intent(os.path.abspath(cluster_file), os.path.abspath(nodes_file))
    proxmox = intent['proxmox']
    return {'vm_storage': proxmox['vm_storage'], 'template_storage': proxmox['template_storage'],
            'bridge': proxmox['bridge'], 'pci_mappings': list(proxmox['pci_mappings']),
            'containers': [node['name'] for node in intent['containers']],
            'source': f"{intent['sources']['cluster']}, {intent['sources']['nodes']}"}


def check_pci_mappings(mappings, source: str) -> None:
    for mapping in mappings:
        if privileges.is_raw_pci_address(mapping):
            raise CheckError('pci_mapping_valid', f'pci_mapping {mapping!r} is a raw host PCI address; Proxmox lets '
                             "only root@pam with a password set hostpci host=..., never an API token", where=source,
                             remediation='create a resource mapping on the host, e.g. `pvesh create /cluster/mapping/pci '
                             f'--id gpu0 --map node=<node>,path={mapping}`, and write pci_mapping: gpu0')


def parse_version(text: str) -> tuple[int, int] | None:
    match = re.match(r'\s*(\d+)\.(\d+)', str(text or ''))
    return (int(match.group(1)), int(match.group(2))) if match else None


def remediation_line(lines: list[str]) -> str:
    """The pveum lines as one remediation: the commands, then the notes (a note ending in ':'
    carries the commands after it)."""
    commands: list[str] = []
    notes: list[list] = []
    for line in lines:
        if line.startswith('#'):
            notes.append([line[1:].strip(), []])
        elif notes and notes[-1][0].endswith(':'):
            notes[-1][1].append(line)
        else:
            commands.append(line)
    text = 'run on the Proxmox host: ' + '; '.join(commands)
    rendered = []
    for note, extra in notes:
        note = note[:1].upper() + note[1:]
        rendered.append(f'{note} {"; ".join(extra)}.' if extra else f'{note}.')
    if rendered:
        text += ' (' + ' '.join(rendered) + ')'
    return text


class TokenCheck:
    """Read-only preflight of a token for the pipeline's later steps."""

    def __init__(self, settings: ProxmoxSettings, context: dict, steps, timeout: float = 10.0,
                 retries: int = 3, client: ProxmoxClient | None = None) -> None:
        self.settings = settings
        self.context = context
        self.steps = [step for step in privileges.STEP_ORDER if step in steps]
        self.node = settings.node
        self.token_id = settings.token_id
        self.client = client or settings.client(timeout=timeout, retries=retries)
        self.checks: list[dict] = []
        self.errors: dict[str, CheckError] = {}
        self.version: dict = {}
        self.missing: list[dict] = []
        self.remediation: list[str] = []
        self.warnings: list[str] = []

    # ------------------------------------------------------------------ bookkeeping
    def _add(self, check: str, status: str, detail: str, error: CheckError | None = None, **extra) -> None:
        entry = {'id': check, 'status': status, 'detail': self.client.sanitise(detail)}
        entry.update(extra)
        self.checks.append(entry)
        if status == 'fail' and error is not None:
            key = check + (f':{extra["step"]}' if 'step' in extra else '')
            self.errors.setdefault(key, error)
        if status == 'warn':
            self.warnings.append(f'{check}: {entry["detail"]}')

    @property
    def failure(self) -> CheckError | None:
        """The first failed check, naming any other failed ones."""
        if not self.errors:
            return None
        first = next(iter(self.errors.values()))
        others = sorted({err.check for err in self.errors.values()} - {first.check})
        if others:
            first.detail += f' (also failed: {", ".join(others)})'
        return first

    def _fail_from(self, err: ProxmoxError) -> None:
        self._add(err.check, 'fail', err.detail, err, where=err.where or '')

    # ------------------------------------------------------------------ the checks
    def run(self) -> 'TokenCheck':
        if not self._version():
            return self
        if not self._node():
            return self
        perms = self._permissions()
        if perms is not None:
            self._privileges(perms)
        self._storages(perms)
        return self

    def _version(self) -> bool:
        try:
            self.version = self.client.get('version') or {}
        except ProxmoxAuthError as err:
            self._add('proxmox_reachable', 'pass', f'{self.client.base_url} answered')
            self._fail_from(err)
            return False
        except (ProxmoxUnreachable, ProxmoxTLSError) as err:
            self._fail_from(err)
            return False
        except ProxmoxError as err:
            self._fail_from(err)
            return False
        tls = ('verified against ' + (self.client.ca_bundle or 'the system CA store')) if self.client.verify \
            else 'NOT verified (PROXMOX_TLS_VERIFY=false)'
        self._add('proxmox_reachable', 'pass', f'{self.client.base_url} answered; certificate {tls}')
        if not self.client.verify:
            self._add('proxmox_tls', 'warn', 'certificate verification is off: anyone on the path can read the '
                      'token; set PROXMOX_CA_BUNDLE and PROXMOX_TLS_VERIFY=true')
        self._add('token_valid', 'pass', f'token {self.token_id} authenticates')
        text = self.version.get('release') or self.version.get('version') or ''
        parsed = parse_version(self.version.get('version') or text)
        if parsed is None or parsed < MIN_VERSION:
            err = CheckError('proxmox_version', f'Proxmox VE {text or "of unknown version"} is older than 8.0',
                             where=self.client.base_url + '/api2/json/version',
                             remediation='upgrade the host to Proxmox VE 8.4 or newer (9.x recommended)')
            self._add('proxmox_version', 'fail', err.detail, err)
            return True
        self._add('proxmox_version', 'pass', f'Proxmox VE {self.version.get("version", text)}')
        return True

    def _node(self) -> bool:
        where = f'{self.client.base_url}/api2/json/nodes'
        try:
            nodes = self.client.get('nodes') or []
        except ProxmoxError as err:
            self._fail_from(err)
            return False
        names = {entry.get('node'): entry for entry in nodes if isinstance(entry, dict)}
        if self.node not in names:
            known = ', '.join(sorted(str(name) for name in names)) or 'none'
            err = CheckError('node_present', f'node {self.node!r} is not in the cluster (nodes: {known})',
                             where=where, remediation='set PROXMOX_NODE in proxmox.env to one of: ' + known)
            self._add('node_present', 'fail', err.detail, err)
            return False
        self._add('node_present', 'pass', f'node {self.node} exists')
        status = names[self.node].get('status')
        try:
            info = self.client.get(f'nodes/{self.node}/status') or {}
            status = 'online' if info else status
            source = f'uptime {info.get("uptime", "?")} s'
        except ProxmoxPermissionError:
            source = 'from /nodes (no Sys.Audit on /nodes/' + self.node + ' for /status)'
        except ProxmoxError as err:
            if not status:
                self._fail_from(err)
                return False
            source = f'from /nodes (/status failed: {err.detail})'
        if status not in (None, 'online'):
            err = CheckError('node_online', f'node {self.node} is {status}', where=where,
                             remediation=f'start node {self.node} or check its cluster membership (`pvecm status`)')
            self._add('node_online', 'fail', err.detail, err)
            return False
        self._add('node_online', 'pass', f'node {self.node} is online ({source})')
        return True

    def _read_permissions(self, **params) -> privileges.Permissions:
        """The whole answer, then the exact answer for each path the rules need that it does not list.

        The whole answer leaves out paths where nothing is granted (an ACL with NoAccess, say), so
        inheritance from a listed ancestor could be wrong there; ``?path=`` asks PVE itself.
        """
        perms = privileges.Permissions(self.client.get('access/permissions', **params))
        if perms.empty:
            return perms
        major = privileges.pve_major(self.version.get('version') or self.version.get('release'))
        for path in privileges.required_paths(self.steps, self._privilege_context(), major):
            if not perms.listed(path):
                answer = self.client.get('access/permissions', path=path, **params) or {}
                perms.set_exact(path, answer.get(path) or {})
        return perms

    def _permissions(self) -> privileges.Permissions | None:
        try:
            return self._read_permissions()
        except ProxmoxError as err:
            self._fail_from(err)
            return None

    def _user_permissions(self) -> privileges.Permissions | None:
        user = self.token_id.split('!', 1)[0]
        try:
            return self._read_permissions(userid=user)
        except ProxmoxError:
            return None

    def _privilege_context(self) -> dict:
        ctx = self.context
        return {
            'node': self.node,
            'template_storage': ctx['template_storage'],
            'storages': list(dict.fromkeys([ctx['vm_storage'], ctx['template_storage']])),
            'bridges': [ctx['bridge']],
            'pci_mappings': list(ctx.get('pci_mappings') or []),
            'containers': bool(ctx.get('containers')),
            'vm_storage': ctx['vm_storage'],
            'bridge': ctx['bridge'],
        }

    def _privileges(self, perms: privileges.Permissions) -> None:
        major = privileges.pve_major(self.version.get('version') or self.version.get('release'))
        results = privileges.evaluate(perms, self.steps, self._privilege_context(), major)
        self.missing = privileges.missing_privileges(results)
        user = self.token_id.split('!', 1)[0]
        for step in privileges.STEP_ORDER:
            if step not in self.steps:
                self._add('token_privileges', 'skip', f'{step} not requested', step=step)
        if not self.missing:
            for step in self.steps:
                status, detail = privileges.step_detail(results, step)
                self._add('token_privileges', status, detail, step=step)
            return
        user_perms = self._user_permissions()
        user_missing = None
        if user_perms is not None:
            user_missing = [entry for entry in self.missing if not user_perms.has(entry['path'], entry['privilege'])]
        alternatives = [res for res in results if res['alternatives_missing']]
        note = ''
        if alternatives:
            note = ('instead of Sys.AccessNetwork on /nodes/' + self.node + ' you may grant Sys.Audit+Sys.Modify on /; '
                    'Sys.AccessNetwork is the narrower privilege')
        self.remediation = privileges.remediation(self.missing, self.token_id, user_missing=user_missing,
                                                  user_known=user_perms is not None, alternatives_note=note)
        remediation_text = remediation_line(self.remediation)
        if perms.empty:
            if user_perms is not None and not user_perms.empty:
                why = (f'token {self.token_id} is privilege-separated and has no ACLs: GET /access/permissions returns '
                       f'nothing for it, while its user {user} has privileges (a privilege-separated token gets only '
                       'the intersection of its own ACLs and its user\'s)')
            else:
                why = (f'token {self.token_id} has no privileges at all: it is privilege-separated and has no ACLs '
                       f'(GET /access/permissions returns nothing for it; had it been created with --privsep 0, its '
                       f'user {user} would have none either)')
        else:
            why = ''
        step_texts = []
        for step in self.steps:
            status, detail = privileges.step_detail(results, step)
            if status == 'fail':
                step_texts.append(f'step {step}: {detail}')
            err = CheckError('token_privileges', f'step {step}: {detail}',
                             where=f'{self.client.base_url}/api2/json/access/permissions', remediation=remediation_text)
            self._add('token_privileges', status, f'{why}; {detail}' if status == 'fail' and why else detail,
                      err if status == 'fail' else None, step=step)
        failed_errors = [key for key in self.errors if key.startswith('token_privileges:')]
        if failed_errors:
            # One message for every failing step (the reason first, once); the remediation covers them all.
            first = self.errors[failed_errors[0]]
            first.detail = '. '.join(([why] if why else []) + step_texts)
            for key in failed_errors[1:]:
                del self.errors[key]

    def _storages(self, perms: privileges.Permissions | None) -> None:
        where = f'{self.client.base_url}/api2/json/nodes/{self.node}/storage'
        try:
            entries = self.client.get(f'nodes/{self.node}/storage') or []
        except ProxmoxError as err:
            # A check that cannot run fails: the storages were not seen, so nothing says they are fine.
            error = CheckError('storage_content', f'cannot list the storages of node {self.node}: {err.detail}',
                               where=where, remediation=err.remediation or 'check the node\'s storage service '
                               '(`pvesm status` on the node, `systemctl status pvestatd`), then run the step again')
            self._add('storage_content', 'fail', error.detail, error, where=where)
            return
        found = {entry.get('storage'): entry for entry in entries if isinstance(entry, dict)}
        # The templates step places both disk images as import content (a VM disk's import-from
        # takes images or import volumes only, never iso).
        wanted = (('vm_storage', ('images',)), ('template_storage', ('import',)))
        if self.context.get('containers'):
            # Containers: root file systems need rootdir content, the container template vztmpl.
            wanted += (('vm_storage', ('rootdir',)), ('template_storage', ('vztmpl',)))
        problems = []
        invisible = []
        details = []
        for key, contents in wanted:
            name = self.context[key]
            entry = found.get(name)
            if entry is None:
                invisible.append(name)
                continue
            have = set(str(entry.get('content', '')).split(','))
            if not have.intersection(contents):
                problems.append(f'{key} {name} holds {entry.get("content") or "nothing"}, needs '
                                + ' or '.join(contents))
            else:
                if f'{name}: {entry.get("content")}' not in details:
                    details.append(f'{name}: {entry.get("content")}')
            if key == 'template_storage' and 'import' in have:
                parsed = parse_version(self.version.get('version', ''))
                if parsed is not None and parsed < IMPORT_MIN_VERSION:
                    self._add('proxmox_version', 'warn', f'import content needs Proxmox VE 8.4; this host runs '
                              f'{self.version.get("version")}, where the templates step cannot place the disk '
                              'images: upgrade to 8.4 or newer')
        audited = [name for name in invisible if perms is not None and (
            perms.has(f'/storage/{name}', 'Datastore.Audit') or perms.has(f'/storage/{name}', 'Datastore.AllocateSpace'))]
        if audited:
            # The token may see these storages, so they are not there.
            problems.append('storage ' + ', '.join(audited) + f' does not exist on node {self.node} '
                            f'(storages there: {", ".join(sorted(str(name) for name in found)) or "none"})')
            invisible = [name for name in invisible if name not in audited]
        if problems:
            err = CheckError('storage_content', '; '.join(problems), where=where,
                             remediation='enable the content types with `pvesm set <storage> --content <types>` '
                             '(keep the existing ones in the list, e.g. `pvesm set local --content iso,vztmpl,import`), '
                             'or set cluster.proxmox.vm_storage and '
                             'template_storage in the intent to storages of this node')
            self._add('storage_content', 'fail', err.detail, err)
        elif invisible:
            self._add('storage_content', 'skip', 'not visible to the token (no Datastore.Audit there, see '
                      'token_privileges) or not on this node: ' + ', '.join(invisible))
        else:
            self._add('storage_content', 'pass', '; '.join(details))
