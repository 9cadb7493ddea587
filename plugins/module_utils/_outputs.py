# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Terraform outputs contract, ``state/cache/terraform/outputs.json``: its one home.

This is a private module_utils file of eminfra.pipeline; its API may change at any time.

``normalise`` turns ``terraform output -json`` into the contract, ``render`` and ``write``
produce the file (validated, never holding the token secret, written atomically), ``read``
is the one reader and ``validate`` the one validation (check ``terraform_outputs_valid``):
the schema (``_contracts.OUTPUTS_SCHEMA``), then the host and group names Ansible or the
pipeline reserves, then host names used twice across ``nodes`` and ``talos_nodes``.
"""

from __future__ import annotations

import json
import os

from ansible_collections.eminfra.pipeline.plugins.module_utils import _atomic, _contracts
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError

CHECK = 'terraform_outputs_valid'
#: What fixes a bad or stale outputs.json: the step that writes it.
REMEDIATION = ('re-run the terraform_apply step (ansible-playbook playbooks/site.yml -e eminfra_start_at=terraform_apply) '
               'so that it writes a valid outputs.json')
REMEDIATION_UNREADABLE = 'make it a regular file that the user running Ansible can read, or re-run the terraform_apply step'
#: When the outputs Terraform produced break the contract, the fix is in the environment or the intent.
REMEDIATION_OUTPUTS_TF = "fix the environment's outputs (terraform/environments/*/outputs.tf)"
REMEDIATION_NAMES = 'rename the node or group in the intent (inventory/dev/nodes.yaml)'


def as_int(value, default=None):
    """An integer from Terraform's JSON (an integral float, a digit string), else ``default``."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return default


def normalise(raw: dict) -> dict:
    """``terraform output -json`` to the outputs.json contract; sensitive outputs are dropped."""
    values = {name: out.get('value') for name, out in (raw or {}).items()
              if isinstance(out, dict) and not out.get('sensitive')}
    nodes = []
    for node in values.get('nodes') or []:
        if not isinstance(node, dict):
            continue
        entry = {
            'name': node.get('name'),
            'ipv4': node.get('ipv4'),
            'ssh_user': node.get('ssh_user'),
            'ssh_port': as_int(node.get('ssh_port'), 22),
            'groups': list(node.get('groups') or []),
        }
        for key in ('vmid', 'role'):
            if node.get(key) is not None:
                entry[key] = as_int(node[key], node[key]) if key == 'vmid' else node[key]
        nodes.append(entry)
    talos_nodes = [{'name': n.get('name'), 'ipv4': n.get('ipv4'), 'role': n.get('role'), 'vmid': as_int(n.get('vmid'))}
                   for n in values.get('talos_nodes') or [] if isinstance(n, dict)]
    return {
        'schema_version': _contracts.OUTPUTS_SCHEMA_VERSION,
        'nodes': sorted(nodes, key=lambda n: str(n['name'])),
        'talos_nodes': sorted(talos_nodes, key=lambda n: str(n['name'])),
    }


def name_problems(outputs: dict) -> list[tuple[str, str]]:
    """Reserved host and group names, else host names used twice, as (field path, message)."""
    problems = _contracts.reserved_name_problems(outputs)
    if problems:
        return problems
    seen: dict[str, str] = {}
    for list_key in ('nodes', 'talos_nodes'):
        for index, node in enumerate(outputs.get(list_key) or ()):
            field = f'{list_key}[{index}].name'
            first = seen.setdefault(node['name'], field)
            if first is not field:
                problems.append((field, f'duplicate host name {node["name"]!r}, already used by {first}'))
    return problems


def validate(outputs, source: str, remediation: str = REMEDIATION, names_remediation: str | None = None) -> dict:
    """``outputs`` if it meets the contract, else ContractError naming the file and every bad field."""
    errors = _contracts.schema_errors(outputs, _contracts.OUTPUTS_SCHEMA)
    if errors:
        raise _contracts.ContractError(CHECK, errors, source=source, remediation=remediation)
    problems = name_problems(outputs)
    if problems:
        raise _contracts.ContractError(CHECK, problems, source=source, remediation=names_remediation or remediation)
    return outputs


def render(outputs: dict, path: str, secret: str | None) -> str:
    """The file's text for normalised outputs, validated; refused if it carries the token secret."""
    validate(outputs, path, remediation=REMEDIATION_OUTPUTS_TF, names_remediation=REMEDIATION_NAMES)
    text = json.dumps(outputs, indent=2, sort_keys=True) + '\n'
    if secret and secret in text:
        raise CheckError(CHECK, 'a Terraform output holds the Proxmox token secret; nothing was written', where=path,
                         remediation='remove that output from terraform/environments/*/outputs.tf')
    return text


def write(path: str, outputs: dict, secret: str | None) -> bool:
    """Render and write atomically (mode 0644); True when the file changed."""
    return _atomic.write_if_changed(path, render(outputs, path, secret), mode=0o644)


def identity(path: str) -> list | None:
    """[path, size, modification time in ns, inode] of the file, or None when it does not exist."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return [path, info.st_size, info.st_mtime_ns, info.st_ino]


def read(path: str, remediation: str = REMEDIATION) -> dict:
    """The validated content of outputs.json; CheckError (missing, unreadable, not JSON, invalid) otherwise."""
    try:
        with open(path, 'rb') as handle:
            text = handle.read().decode('utf-8')
    except FileNotFoundError:
        raise CheckError(CHECK, 'outputs.json does not exist', where=path, remediation=remediation) from None
    except OSError as err:
        raise CheckError(CHECK, f'cannot read: {err.strerror}', where=path, remediation=REMEDIATION_UNREADABLE) from None
    except UnicodeDecodeError as err:
        raise CheckError(CHECK, f'cannot read: {err}', where=path, remediation=remediation) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckError(CHECK, f'not valid JSON: {err.msg} at line {err.lineno} column {err.colno}',
                         where=path, remediation=remediation) from None
    return validate(data, path, remediation=remediation)


def compare(recorded: dict, current: dict, where: str, remediation: str = REMEDIATION) -> None:
    """CheckError naming the top-level keys where outputs.json differs from the Terraform state's outputs."""
    differing = sorted(key for key in set(current) | set(recorded) if current.get(key) != recorded.get(key))
    if differing:
        raise CheckError(CHECK, f'outputs.json differs from the Terraform state in {", ".join(differing)}',
                         where=where, remediation=remediation)
