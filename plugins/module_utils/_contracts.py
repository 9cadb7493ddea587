# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The handoff contracts between the pipeline's steps, as JSON Schema 2020-12 in Python.

This is a private module_utils file of eminfra.pipeline; its API may change at any time.

These schemas are the one source of truth: modules import them (AnsiballZ ships Python
module_utils only) and ``schema.json`` at the repository root is generated from
``INTENT_SCHEMA`` (``python -m tests.tools.gen_schema``; a test fails when it is stale).
The seed contract's minimum is never weakened; extra keys are allowed where it allows them.
"""

from __future__ import annotations

import copy
import functools
import traceback

from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError
from ansible_collections.eminfra.pipeline.plugins.module_utils._state import STEPS

SCHEMA_DIALECT = 'https://json-schema.org/draft/2020-12/schema'
MANIFEST_SCHEMA_VERSION = 1
OUTPUTS_SCHEMA_VERSION = 1

TOKEN_ID_PATTERN = r'^[A-Za-z0-9._-]+@[A-Za-z0-9._-]+![A-Za-z][A-Za-z0-9._-]*$'
# A UTC offset is mandatory: Z or +HH:MM.
TIMESTAMP_PATTERN = r'^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$'
RUN_ID_PATTERN = r'^\d{8}T\d{6}Z-[0-9a-f]{6}$'
NAME_PATTERN = r'^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'
IPV4_PATTERN = (r'^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}'
                r'(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$')
CIDR_PATTERN = IPV4_PATTERN[:-1] + r'/(3[0-2]|[12]?\d)$'
SHA256_PATTERN = r'^[0-9a-f]{64}$'

# ---------------------------------------------------------------- state/proxmox.env
PROXMOX_ENV_REQUIRED = ('PROXMOX_API_URL', 'PROXMOX_NODE', 'PROXMOX_TOKEN_ID', 'PROXMOX_TOKEN_SECRET')
PROXMOX_ENV_SECRET_KEYS = ('PROXMOX_TOKEN_SECRET',)

PROXMOX_ENV_SCHEMA = {
    '$schema': SCHEMA_DIALECT,
    '$id': 'eminfra.pipeline/proxmox.env',
    'title': 'state/proxmox.env keys',
    'type': 'object',
    'required': list(PROXMOX_ENV_REQUIRED),
    'properties': {
        'PROXMOX_API_URL': {'type': 'string', 'pattern': r'^https?://[^\s/?#]+(:\d+)?(/[^\s]*)?$'},
        'PROXMOX_NODE': {'type': 'string', 'pattern': r'^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$'},
        'PROXMOX_TOKEN_ID': {'type': 'string', 'pattern': TOKEN_ID_PATTERN},
        'PROXMOX_TOKEN_SECRET': {'type': 'string', 'minLength': 1},
        'PROXMOX_TLS_VERIFY': {'type': 'string', 'enum': ['true', 'false']},
        'PROXMOX_CA_BUNDLE': {'type': 'string', 'minLength': 1},
    },
    'additionalProperties': {'type': 'string'},
}

# ---------------------------------------------------------------- manifest.json
_ARTEFACT = {
    'type': 'object',
    'required': ['type', 'source', 'filename', 'path'],
    'properties': {
        'type': {'type': 'string', 'enum': ['lxc', 'vm', 'iso', 'img', 'qcow2', 'raw']},
        'source': {'type': 'string', 'minLength': 1},
        'filename': {'type': 'string', 'minLength': 1, 'pattern': r'^[A-Za-z0-9_.-]+$'},
        'path': {'type': 'string', 'minLength': 1},
        'proxmox_template_id': {'type': ['string', 'integer', 'null']},
        'sha256': {'type': 'string', 'pattern': SHA256_PATTERN},
        'size': {'type': 'integer', 'minimum': 0},
        'fetched_at': {'type': 'string', 'pattern': TIMESTAMP_PATTERN},
        'checksum_source': {'type': 'string', 'enum': ['published', 'pinned', 'first_fetch']},
        'proxmox_volid': {'type': 'string', 'pattern': r'^[A-Za-z0-9_.-]+:.+$'},
    },
    'additionalProperties': True,
}

MANIFEST_SCHEMA = {
    '$schema': SCHEMA_DIALECT,
    '$id': 'eminfra.pipeline/manifest.json',
    'title': 'state/cache/templates/manifest.json',
    'type': 'object',
    'required': ['generated_at', 'ubuntu', 'talos'],
    'properties': {
        'schema_version': {'type': 'integer', 'const': MANIFEST_SCHEMA_VERSION},
        'generated_at': {'type': 'string', 'pattern': TIMESTAMP_PATTERN},
        'ubuntu': _ARTEFACT,
        'talos': _ARTEFACT,
    },
    'additionalProperties': _ARTEFACT,
}

# ---------------------------------------------------------------- outputs.json
OUTPUTS_SCHEMA = {
    '$schema': SCHEMA_DIALECT,
    '$id': 'eminfra.pipeline/outputs.json',
    'title': 'state/cache/terraform/outputs.json',
    'type': 'object',
    'required': ['nodes'],
    'properties': {
        'schema_version': {'type': 'integer', 'const': OUTPUTS_SCHEMA_VERSION},
        'nodes': {
            'type': 'array',
            'items': {
                'type': 'object',
                'required': ['name', 'ipv4', 'ssh_user', 'groups'],
                'properties': {
                    'name': {'type': 'string', 'minLength': 1},
                    'ipv4': {'type': 'string', 'pattern': IPV4_PATTERN},
                    'ssh_user': {'type': 'string', 'minLength': 1},
                    'ssh_port': {'type': 'integer', 'minimum': 1, 'maximum': 65535},
                    'groups': {'type': 'array', 'items': {'type': 'string', 'minLength': 1}},
                },
                'additionalProperties': True,
            },
        },
        'talos_nodes': {
            'type': 'array',
            'items': {
                'type': 'object',
                'required': ['name', 'ipv4', 'role', 'vmid'],
                'properties': {
                    'name': {'type': 'string', 'minLength': 1},
                    'ipv4': {'type': 'string', 'pattern': IPV4_PATTERN},
                    'role': {'type': 'string', 'enum': ['controlplane', 'worker', 'gpu-worker']},
                    'vmid': {'type': 'integer', 'minimum': 100, 'maximum': 999999999},
                },
                'additionalProperties': True,
            },
        },
    },
    'additionalProperties': True,
}

# ---------------------------------------------------------------- latest.env
LATEST_ENV_REQUIRED = (
    'RUN_ID', 'RUN_TIMESTAMP', 'DRY_RUN', 'PROXMOX_API_URL', 'PROXMOX_NODE', 'PROXMOX_TOKEN_ID',
    'TEMPLATE_UBUNTU_IMAGE', 'TEMPLATE_TALOS_IMAGE', 'TERRAFORM_WORKDIR', 'TERRAFORM_OUTPUT_JSON',
    'ANSIBLE_INVENTORY_PATH', 'LAST_STEP_COMPLETED',
)
#: Substrings that mark a key as secret; such keys never enter latest.env.
SECRET_KEY_MARKERS = ('SECRET', 'PASSWORD', 'PASSWD', 'PRIVATE_KEY', 'TOKEN_VALUE', 'API_KEY',
                      'CREDENTIAL')

LATEST_ENV_SCHEMA = {
    '$schema': SCHEMA_DIALECT,
    '$id': 'eminfra.pipeline/latest.env',
    'title': 'state/runs/latest.env keys',
    'type': 'object',
    'required': list(LATEST_ENV_REQUIRED),
    'properties': {
        'RUN_ID': {'type': 'string', 'pattern': RUN_ID_PATTERN},
        'RUN_TIMESTAMP': {'type': 'string', 'pattern': TIMESTAMP_PATTERN},
        'DRY_RUN': {'type': 'string', 'enum': ['true', 'false']},
        'LAST_STEP_COMPLETED': {'type': 'string', 'enum': [''] + list(STEPS)},
        'LAST_STEP_FAILED': {'type': 'string', 'enum': [''] + list(STEPS)},
        'LAST_FAILED_CHECK': {'type': 'string', 'pattern': r'^([a-z][a-z0-9_]*)?$'},
        'DRY_RUN_LAST_STEP': {'type': 'string', 'enum': [''] + list(STEPS)},
        'RUN_STATUS': {'type': 'string', 'enum': ['running', 'succeeded', 'failed']},
    },
    'propertyNames': {'pattern': r'^[A-Za-z_][A-Za-z0-9_]*$',
                      'not': {'enum': list(PROXMOX_ENV_SECRET_KEYS)}},
    'additionalProperties': {'type': 'string'},
}

# ---------------------------------------------------------------- inventory intent
# inventory/dev/cluster.yaml and inventory/dev/nodes.yaml. Field meanings are documented in
# docs/EM-Infra-Talos-Proxmox-Architecture.md ("Inventory intent"); rules that involve more
# than one field (unique names, IPs inside the network, ...) live in _intent.py.
NODE_ROLES = ('controlplane', 'worker', 'gpu-worker', 'utility')
NODE_OS = ('talos', 'ubuntu')
#: Roles that are Kubernetes nodes; their OS is Talos and Talos owns it.
TALOS_ROLES = ('controlplane', 'worker', 'gpu-worker')
#: Roles of SSH-managed nodes that Ansible configures.
UBUNTU_ROLES = ('utility',)
#: How a node runs on Proxmox: a QEMU VM, or an LXC container (Ubuntu nodes only).
NODE_GUESTS = ('vm', 'lxc')
INTENT_DEFAULTS = {'enabled': True, 'ssh_user': 'ubuntu', 'ssh_port': 22}
#: A container's defaults where they differ: the container template has only root, and
#: Proxmox installs the SSH key for root (there is no cloud-init in a container).
CONTAINER_DEFAULTS = {'ssh_user': 'root', 'ssh_port': 22}
#: The manifest entry of the container template, beside the contract's ``ubuntu`` (the VM image).
CONTAINER_ARTEFACT = 'ubuntu_lxc'


def artefact_for(node: dict) -> str:
    """The manifest entry a node is built from: its OS's, or the container template for an
    Ubuntu container (``guest: lxc``)."""
    if node.get('guest') == 'lxc' and node.get('os') == 'ubuntu':
        return CONTAINER_ARTEFACT
    return node.get('os')


_PROXMOX_ID_PATTERN = r'^[A-Za-z][A-Za-z0-9_.-]*$'
_VERSION_PATTERN = r'^v\d+\.\d+\.\d+$'

INTENT_SCHEMA = {
    '$schema': SCHEMA_DIALECT,
    '$id': 'https://eminfra.invalid/schema/inventory-intent.json',
    'title': 'EM-Infra inventory intent (inventory/dev/cluster.yaml and nodes.yaml)',
    'description': 'Each intent file is validated on its own, loaded as data: cluster.yaml '
                   'carries the top-level "cluster" key, nodes.yaml the top-level "nodes" key.',
    'type': 'object',
    'minProperties': 1,
    'properties': {
        'cluster': {
            'type': 'object',
            'description': 'The cluster as a whole: versions, API endpoint, network, Proxmox placement.',
            'required': ['name', 'talos_version', 'kubernetes_version', 'controlplane_endpoint',
                         'network', 'proxmox'],
            'properties': {
                'name': {'type': 'string', 'pattern': NAME_PATTERN,
                         'description': 'Cluster name (DNS label).'},
                'talos_version': {'type': 'string', 'pattern': _VERSION_PATTERN,
                                  'description': 'Talos release of the Talos nodes, e.g. v1.11.5.'},
                'kubernetes_version': {'type': 'string', 'pattern': _VERSION_PATTERN,
                                       'description': 'Kubernetes release Talos installs, e.g. v1.34.1.'},
                'controlplane_endpoint': {'type': 'string', 'pattern': r'^https://[^\s/]+:\d+$',
                                          'description': 'Kubernetes API URL, https://HOST:PORT.'},
                'network': {
                    'type': 'object',
                    'description': 'The IPv4 network every node has a static address in.',
                    'required': ['cidr', 'gateway', 'dns'],
                    'properties': {
                        'cidr': {'type': 'string', 'pattern': CIDR_PATTERN,
                                 'description': 'Network in CIDR notation, e.g. 10.77.0.0/24.'},
                        'gateway': {'type': 'string', 'pattern': IPV4_PATTERN,
                                    'description': 'Default gateway, inside cidr.'},
                        'dns': {'type': 'array', 'minItems': 1, 'uniqueItems': True,
                                'items': {'type': 'string', 'pattern': IPV4_PATTERN},
                                'description': 'DNS resolvers.'},
                    },
                    'additionalProperties': False,
                },
                'proxmox': {
                    'type': 'object',
                    'description': 'Where the VMs go on the Proxmox VE host.',
                    'required': ['vm_storage', 'template_storage', 'bridge'],
                    'properties': {
                        'vm_storage': {'type': 'string', 'pattern': _PROXMOX_ID_PATTERN,
                                       'description': 'Storage for VM disks (content images).'},
                        'template_storage': {'type': 'string', 'pattern': _PROXMOX_ID_PATTERN,
                                             'description': 'Storage for template artefacts (content iso/import).'},
                        'bridge': {'type': 'string', 'pattern': _PROXMOX_ID_PATTERN,
                                   'description': 'Linux bridge the VM NICs attach to.'},
                    },
                    'additionalProperties': False,
                },
            },
            'additionalProperties': False,
        },
        'nodes': {
            'type': 'array',
            'description': 'Every VM of the cluster, enabled or not.',
            'minItems': 1,
            'items': {
                'type': 'object',
                'required': ['name', 'role', 'os', 'vmid', 'cores', 'memory', 'disk', 'ipv4'],
                'properties': {
                    'name': {'type': 'string', 'pattern': NAME_PATTERN,
                             'description': 'VM and host name (DNS label), unique.'},
                    'role': {'type': 'string', 'enum': list(NODE_ROLES),
                             'description': 'controlplane, worker and gpu-worker are Talos nodes; '
                                            'utility is an SSH-managed Ubuntu node.'},
                    'os': {'type': 'string', 'enum': list(NODE_OS)},
                    'guest': {'type': 'string', 'enum': list(NODE_GUESTS), 'default': 'vm',
                              'description': 'vm: a QEMU VM; lxc: an unprivileged LXC container from the '
                                             'Ubuntu container template (os: ubuntu only; cores then '
                                             'limit its CPUs, memory its RAM in MiB, disk its root '
                                             'file system in GiB).'},
                    'enabled': {'type': 'boolean', 'default': INTENT_DEFAULTS['enabled'],
                                'description': 'false keeps the node in the intent without creating it.'},
                    'vmid': {'type': 'integer', 'minimum': 100, 'maximum': 999999999,
                             'description': 'Proxmox VM id, unique.'},
                    'cores': {'type': 'integer', 'minimum': 1, 'maximum': 512},
                    'memory': {'type': 'integer', 'minimum': 512, 'description': 'MiB'},
                    'disk': {'type': 'integer', 'minimum': 1, 'description': 'GiB'},
                    'ipv4': {'type': 'string', 'pattern': IPV4_PATTERN,
                             'description': 'Static address inside cluster.network.cidr, unique.'},
                    'pci_mapping': {'type': 'string', 'pattern': _PROXMOX_ID_PATTERN,
                                    'description': 'Proxmox PCI resource mapping passed through '
                                                   '(required for gpu-worker).'},
                    'groups': {'type': 'array', 'uniqueItems': True,
                               'items': {'type': 'string', 'pattern': r'^[A-Za-z_][A-Za-z0-9_]*$'},
                               'description': 'Ansible groups (ubuntu nodes only, at least one).'},
                    'ssh_user': {'type': 'string', 'pattern': r'^[a-z_][a-z0-9_-]*$',
                                 'default': INTENT_DEFAULTS['ssh_user'],
                                 'description': 'SSH login user (ubuntu nodes only).'},
                    'ssh_port': {'type': 'integer', 'minimum': 1, 'maximum': 65535,
                                 'default': INTENT_DEFAULTS['ssh_port'],
                                 'description': 'SSH port (ubuntu nodes only).'},
                },
                'additionalProperties': False,
            },
        },
    },
    'additionalProperties': False,
}


# ---------------------------------------------------------------- reserved host and group names
#: Names Ansible itself gives a meaning: its implicit groups and its implicit localhost. A node so
#: named would turn the pipeline's own ``hosts: localhost`` plays onto that node.
ANSIBLE_RESERVED_NAMES = ('all', 'ungrouped', 'localhost', '127.0.0.1', '::1')
#: Groups of the pipeline's plays (playbooks/site.yml: ``hosts: base``, ``hosts: docker``) and of the
#: inventory plugin (Talos nodes by role): no host may carry one of these names.
PIPELINE_GROUPS = ('base', 'docker', 'talos_controlplane', 'talos_worker', 'talos_gpu_worker')
#: Groups only the inventory plugin assigns: an intent or outputs.json never names them.
PIPELINE_ONLY_GROUPS = ('talos_controlplane', 'talos_worker', 'talos_gpu_worker')


def reserved_name_problems(data) -> list[tuple[str, str]]:
    """Host and group names Ansible or the pipeline reserves, as (field path, message).

    ``data`` has the shape of outputs.json (and of the nodes intent): ``nodes`` with ``name`` and
    ``groups``, optionally ``talos_nodes`` with ``name``. Entries of the wrong type are left to
    the schema."""
    problems: list[tuple[str, str]] = []
    if not isinstance(data, dict):
        return problems
    hosts = set()
    for list_key in ('nodes', 'talos_nodes'):
        entries = data.get(list_key)
        for index, node in enumerate(entries if isinstance(entries, list) else ()):
            name = node.get('name') if isinstance(node, dict) else None
            if not isinstance(name, str):
                continue
            hosts.add(name)
            if name in ANSIBLE_RESERVED_NAMES:
                problems.append((f'{list_key}[{index}].name', f'{name!r} is a name Ansible reserves (its implicit '
                                 'localhost or groups all/ungrouped); a node so named would take over the '
                                 "pipeline's own plays"))
            elif name in PIPELINE_GROUPS:
                problems.append((f'{list_key}[{index}].name', f'{name!r} is a group of the pipeline '
                                 f'({", ".join(PIPELINE_GROUPS)}); a host cannot have that name'))
    entries = data.get('nodes')
    for index, node in enumerate(entries if isinstance(entries, list) else ()):
        groups = node.get('groups') if isinstance(node, dict) else None
        for position, group in enumerate(groups if isinstance(groups, list) else ()):
            field = f'nodes[{index}].groups[{position}]'
            if not isinstance(group, str):
                continue
            if group in ANSIBLE_RESERVED_NAMES:
                problems.append((field, f'{group!r} is a name Ansible reserves (its implicit localhost or groups '
                                 'all/ungrouped); it cannot be a group of the intent'))
            elif group in PIPELINE_ONLY_GROUPS:
                problems.append((field, f'{group!r} is the inventory\'s group of Talos nodes; an SSH-managed node '
                                 'cannot join it'))
            elif group in hosts:
                problems.append((field, f'{group!r} is also the name of a node; a group and a host cannot share a name'))
    return problems


class ContractError(CheckError):
    """A contract file or value that does not meet its schema."""

    def __init__(self, check: str, errors: list[tuple[str, str]], source: str | None = None,
                 remediation: str | None = None) -> None:
        self.errors = errors
        self.source = source
        detail = '; '.join(f'{field}: {msg}' if field else msg for field, msg in errors)
        if source:
            detail = f'{detail} (in {source})'
        super().__init__(check, detail, remediation=remediation)


def field_path(path) -> str:
    """``['nodes', 2, 'ssh_port']`` as ``nodes[2].ssh_port``."""
    out = ''
    for part in path:
        if isinstance(part, int):
            out += f'[{part}]'
        else:
            out += ('.' if out else '') + str(part)
    return out


def _describe(error) -> str:
    validator = error.validator
    value = error.validator_value
    instance = error.instance
    if validator == 'maximum':
        return f'{instance!r} is greater than {value}'
    if validator == 'minimum':
        return f'{instance!r} is less than {value}'
    if validator == 'type':
        return f'{instance!r} is not of type {value!r}'
    if validator == 'enum':
        return f'{instance!r} is not one of {", ".join(repr(v) for v in value)}'
    if validator == 'pattern':
        return f'{instance!r} does not match {value!r}'
    if validator == 'additionalProperties' and value is False:
        return f'unknown key(s): {error.message.split("(")[-1].rstrip(")")}'
    if validator in ('propertyNames', 'not'):
        return f'{instance!r} is not allowed here'
    if validator == 'minItems' and value == 1:
        return 'must not be empty'
    return error.message


@functools.lru_cache(maxsize=None)
def _jsonschema():
    """(the jsonschema module or None, the import error's traceback or None), imported on first use.

    Importing jsonschema costs about 40 ms of CPU, which a module or plugin that never validates
    a contract file should not pay.
    """
    try:
        import jsonschema  # pylint: disable=import-outside-toplevel
    except ImportError:  # pragma: no cover - exercised only on hosts without jsonschema
        return None, traceback.format_exc()
    return jsonschema, None


def __getattr__(name: str):
    """HAS_JSONSCHEMA and JSONSCHEMA_IMPORT_ERROR, which import jsonschema when a module asks for them."""
    if name == 'HAS_JSONSCHEMA':
        return _jsonschema()[0] is not None
    if name == 'JSONSCHEMA_IMPORT_ERROR':
        return _jsonschema()[1]
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def schema_errors(instance, schema: dict) -> list[tuple[str, str]]:
    """All schema violations as (field path, message), in a stable order."""
    jsonschema = _jsonschema()[0]
    if jsonschema is None:
        raise RuntimeError('the jsonschema Python library is required: pip install jsonschema')
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(instance),
                    key=lambda err: ([(0, p, '') if isinstance(p, int) else (1, 0, str(p)) for p in err.absolute_path],
                                     str(err.validator)))
    result: list[tuple[str, str]] = []
    for error in errors:
        path = list(error.absolute_path)
        if error.validator == 'required' and isinstance(error.instance, dict):
            for key in error.validator_value:
                entry = (field_path(path + [key]), 'missing required key')
                if key not in error.instance and entry not in result:
                    result.append(entry)
            continue
        result.append((field_path(path), _describe(error)))
    return result


def validate(instance, schema: dict, check: str, source: str | None = None,
             remediation: str | None = None) -> None:
    """Raise ContractError (check id first, then field paths) when ``instance`` fails ``schema``."""
    errors = schema_errors(instance, schema)
    if errors:
        raise ContractError(check, errors, source=source, remediation=remediation)


def is_secret_key(key: str) -> bool:
    upper = key.upper()
    return any(marker in upper for marker in SECRET_KEY_MARKERS)


def intent_schema_document() -> dict:
    """The content of the repository's ``schema.json``."""
    return copy.deepcopy(INTENT_SCHEMA)
