# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The inventory intent (inventory/dev/cluster.yaml and nodes.yaml): load, validate, merge.

This is a private module_utils file of eminfra.pipeline; its API may change at any time.

Each file is validated on its own against ``INTENT_SCHEMA`` (the schema behind ``schema.json``),
then the rules a schema cannot state are checked across both: unique names, vmids and
addresses, addresses inside the cluster network, a PCI mapping for a GPU worker, an enabled
control plane, Ansible groups on Ubuntu nodes only, containers (``guest: lxc``) for Ubuntu
nodes only. Every problem is reported at once, as
``intent_valid: <file>: <field>: <what is wrong>``, with the node's name next to its index.

The YAML is read the way Terraform's ``yamldecode`` reads it, and where the two readers could
disagree the file is refused rather than read two ways: a key given twice, and every plain scalar
that YAML 1.1 (PyYAML, Ansible) and YAML 1.2 (Terraform's ``yamldecode``) resolve differently
(``7_704``, ``0b1111``, ``0o17``, ``0x1F``, ``010``, ``1:30``, ``1e3``, ``yes``/``no``/``on``/``off``/
``y``/``n``, ``.inf``, dates, merge keys, explicit tags). Reading is bounded: a file larger than
``MAX_INTENT_BYTES``, more than ``MAX_ALIASES`` aliases, nesting deeper than ``MAX_DEPTH`` or more
than ``MAX_EXPANDED_NODES`` values once aliases are expanded (a "billion laughs") is refused
before anything is built from it.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
import traceback
from urllib.parse import urlsplit

try:
    import yaml
    HAS_YAML = True
    YAML_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised only on hosts without PyYAML
    HAS_YAML = False
    YAML_IMPORT_ERROR = traceback.format_exc()

from ansible_collections.eminfra.pipeline.plugins.module_utils._contracts import (
    CONTAINER_DEFAULTS,
    INTENT_DEFAULTS,
    INTENT_SCHEMA,
    TALOS_ROLES,
    UBUNTU_ROLES,
    field_path,
    reserved_name_problems,
    schema_errors,
)
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError
from ansible_collections.eminfra.pipeline.plugins.module_utils._state import find_project_root

CHECK = 'intent_valid'
#: Bounds of reading one intent file; the dev intent is a few KiB, a few levels deep, alias-free.
MAX_INTENT_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_ALIASES = 64
MAX_EXPANDED_NODES = 100_000
BOUNDS_REMEDIATION = ('write the intent out plainly (no YAML anchors or aliases, no deep nesting); '
                      'it is a few KiB for a cluster of this size. Then validate again with: make validate-intent')
DEFAULT_CLUSTER_PATH = os.path.join('inventory', 'dev', 'cluster.yaml')
DEFAULT_NODES_PATH = os.path.join('inventory', 'dev', 'nodes.yaml')
REMEDIATION = ('correct the named field in the intent file (field meanings: schema.json and '
               'docs/EM-Infra-Talos-Proxmox-Architecture.md, section "Inventory intent"), '
               'then validate again with: make validate-intent')


class IntentError(CheckError):
    """The intent does not validate; ``errors`` holds every problem as (file, field, message)."""

    def __init__(self, errors: list[tuple[str, str, str]], remediation: str = REMEDIATION) -> None:
        self.errors = errors
        detail = '; '.join(render_problem(entry) for entry in errors)
        super().__init__(CHECK, detail, remediation=remediation)


def render_problem(entry: tuple[str, str, str]) -> str:
    source, field, message = entry
    return ': '.join(part for part in (source, field, message) if part)


# ---------------------------------------------------------------- reading YAML
class IntentReadError(Exception):
    """A bound or a two-readers rule broken while composing: the field path and what is wrong."""

    def __init__(self, field: str, line: int, column: int, problem: str, bound: bool = False) -> None:
        self.field = field
        self.line = line
        self.column = column
        self.problem = problem
        self.bound = bound
        super().__init__(problem)


# Plain scalars both readers resolve to the same value: canonical decimal integers, floats with a
# dot (an exponent with its sign), true/false and null in their three spellings.
_CANONICAL_INT = re.compile(r'^[-+]?(0|[1-9][0-9]*)$')
_CANONICAL_FLOAT = re.compile(r'^([-+]?[0-9]+\.[0-9]*|\.[0-9]+)([eE][-+][0-9]+)?$')
_CANONICAL_BOOL = frozenset(('true', 'True', 'TRUE', 'false', 'False', 'FALSE'))
# Text that PyYAML keeps as a string but YAML 1.2 (or Terraform's yamldecode) reads as a number or
# a boolean.
_NUMBER_IN_YAML12 = re.compile(r'^([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|0o[0-7]+|[-+]?0x[0-9a-fA-F]+|'
                               r'[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN))$')
_BOOL_IN_TERRAFORM = frozenset(('y', 'Y', 'n', 'N'))


def ambiguous_scalar(value: str, tag: str) -> str | None:
    """Why the plain scalar ``value`` (resolved by PyYAML to ``tag``) is read two ways, or None."""
    kind = tag.rsplit(':', 1)[-1]
    quote = f'quote it ("{value}") if it is text'
    if kind == 'bool' and value not in _CANONICAL_BOOL:
        return f'{value!r} is a boolean in YAML 1.1 (PyYAML, Ansible) but a string in YAML 1.2; write true or false, or {quote}'
    if kind == 'int' and re.match(r'^[-+]?0[0-9_]+$', value):
        # YAML 1.1 (PyYAML) reads 010 as octal 8, Terraform's yamldecode as 10.
        return f'integer {value!r} has a leading zero (ambiguous: octal or decimal); write it without the zero'
    if kind == 'int' and not _CANONICAL_INT.match(value):
        return (f'{value!r} is the integer {yaml.safe_load(value)} in YAML 1.1 (PyYAML, Ansible) but not in YAML 1.2 '
                f"(Terraform's yamldecode); write the number in plain decimal digits, or {quote}")
    if kind == 'float' and not _CANONICAL_FLOAT.match(value):
        return (f'{value!r} is a float in YAML 1.1 (PyYAML) but not the same value in YAML 1.2 (Terraform); write a '
                f'plain decimal number, or {quote}')
    if kind == 'timestamp':
        return f'{value!r} is a date in YAML 1.1 (PyYAML) but a string in Terraform; {quote}'
    if kind == 'merge':
        return 'merge keys (<<) are YAML 1.1 only; write the keys out'
    if kind == 'str' and (_NUMBER_IN_YAML12.match(value) or value in _BOOL_IN_TERRAFORM):
        return (f"{value!r} is a string in YAML 1.1 (PyYAML, Ansible) but a number or boolean in Terraform's "
                f'yamldecode; write a plain decimal number or true/false, or {quote}')
    if kind not in ('bool', 'int', 'float', 'null', 'str'):
        return f'{value!r} resolves to {tag}, which the intent does not use; {quote}'
    return None


if HAS_YAML:
    class _IntentLoader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
        """SafeLoader that refuses what PyYAML and Terraform's yamldecode would read differently,
        and that stops at the reading bounds (depth, aliases, expanded size) while composing,
        before any Python object is built."""

        def __init__(self, stream) -> None:
            super().__init__(stream)
            self.intent_path: list = []
            self.intent_aliases = 0
            self.intent_expanded = 0
            self.intent_sizes: dict[int, int] = {}

        def intent_field(self) -> str:
            return field_path([part for part in self.intent_path if part is not None])

        def intent_refuse(self, mark, problem: str, bound: bool = False):
            raise IntentReadError(self.intent_field(), mark.line + 1, mark.column + 1, problem, bound)

        def compose_node(self, parent, index):
            if isinstance(index, yaml.ScalarNode):
                segment = index.value
            elif isinstance(index, int):
                segment = index
            else:
                segment = None
            self.intent_path.append(segment)
            try:
                return self._compose_bounded(parent, index)
            finally:
                self.intent_path.pop()

        def _compose_bounded(self, parent, index):
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent):
                self.intent_aliases += 1
                if self.intent_aliases > MAX_ALIASES:
                    self.intent_refuse(event.start_mark, f'more than {MAX_ALIASES} YAML aliases', bound=True)
                target = self.anchors.get(event.anchor)
                if target is not None:
                    size = self.intent_sizes.get(id(target))
                    if size is None:
                        self.intent_refuse(event.start_mark, f'alias *{event.anchor} refers to a value that contains '
                                           'it (a recursive structure)', bound=True)
                    self._count(size, event.start_mark)
                return super().compose_node(parent, index)
            if len(self.intent_path) > MAX_DEPTH:
                self.intent_refuse(event.start_mark, f'nested deeper than {MAX_DEPTH} levels', bound=True)
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)) and event.tag not in (None, '!'):
                self.intent_refuse(event.start_mark, f'explicit tag {event.tag} is not used in the intent; remove it')
            before = self.intent_expanded
            self._count(1, event.start_mark)
            node = super().compose_node(parent, index)
            self.intent_sizes[id(node)] = self.intent_expanded - before
            return node

        def _count(self, size: int, mark) -> None:
            self.intent_expanded += size
            if self.intent_expanded > MAX_EXPANDED_NODES:
                self.intent_refuse(mark, f'more than {MAX_EXPANDED_NODES} values once YAML aliases are expanded',
                                   bound=True)

        def compose_scalar_node(self, anchor):
            event = self.peek_event()
            if event.tag not in (None, '!'):
                self.intent_refuse(event.start_mark, f'explicit tag {event.tag} is not used in the intent; remove it')
            if event.style is None and event.implicit[0]:
                why = ambiguous_scalar(event.value, self.resolve(yaml.ScalarNode, event.value, event.implicit))
                if why:
                    self.intent_refuse(event.start_mark, why)
            return super().compose_scalar_node(anchor)

    def _construct_mapping(loader, node, deep=False):
        seen: dict = {}
        for key_node, dummy in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f'key {key!r} is given twice (first on line {seen[key]})',
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    def _construct_int(loader, node):
        text = loader.construct_scalar(node)
        if re.match(r'^[-+]?0[0-9_]+$', text):
            # YAML 1.1 (PyYAML) reads 010 as octal 8, Terraform's yamldecode as 10.
            raise yaml.constructor.ConstructorError(
                None, None, f'integer {text!r} has a leading zero (ambiguous: octal or decimal); '
                'write it without the zero', node.start_mark)
        return yaml.SafeLoader.construct_yaml_int(loader, node)

    _IntentLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
    _IntentLoader.add_constructor('tag:yaml.org,2002:int', _construct_int)


def display_path(path: str, root: str | None = None) -> str:
    """``path`` as an operator reads it: relative to ``root`` (default: cwd) when inside it."""
    absolute = os.path.abspath(path)
    base = os.path.abspath(root or find_project_root())
    relative = os.path.relpath(absolute, base)
    if relative == '..' or relative.startswith('..' + os.sep):
        return absolute
    return relative


def parse_intent_text(text: str, source: str):
    """YAML text to data, or IntentError naming ``source``, the field and the line."""
    if not HAS_YAML:
        raise RuntimeError('the PyYAML Python library is required: pip install PyYAML')
    if len(text) > MAX_INTENT_BYTES:
        raise _too_large(source, len(text))
    loader = _IntentLoader(text)
    try:
        return loader.get_single_data()
    except IntentReadError as exc:
        where = f'line {exc.line}, column {exc.column}'
        field = f'{exc.field} ({where})' if exc.field else where
        raise _read_error(source, field, exc.problem, exc.bound) from None
    except RecursionError:
        raise _read_error(source, loader.intent_field(), f'nested too deeply (more than {MAX_DEPTH} levels)',
                          True) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        where = f'line {mark.line + 1}, column {mark.column + 1}' if mark else ''
        problem = getattr(exc, 'problem', None) or str(exc).splitlines()[0]
        raise IntentError([(source, where, f'not valid YAML: {problem}')]) from None
    finally:
        loader.dispose()


def _read_error(source: str, field: str, problem: str, bound: bool) -> IntentError:
    return IntentError([(source, field, problem)], remediation=BOUNDS_REMEDIATION if bound else REMEDIATION)


def _too_large(source: str, size: int) -> IntentError:
    return _read_error(source, '', f'is larger than {MAX_INTENT_BYTES} bytes ({size} or more); not read', True)


def read_intent_file(path: str, source: str | None = None):
    """Read and parse one intent file (at most ``MAX_INTENT_BYTES``; a larger one is not read)."""
    source = source or display_path(path)
    try:
        with open(path, 'rb') as handle:
            data = handle.read(MAX_INTENT_BYTES + 1)
        if len(data) > MAX_INTENT_BYTES:
            raise _too_large(source, len(data))
        text = data.decode('utf-8')
    except FileNotFoundError:
        raise IntentError([(source, '', 'file not found')]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise IntentError([(source, '', f'cannot be read: {exc}')]) from None
    return parse_intent_text(text, source)


def enabled_nodes(path: str, source: str | None = None) -> list[dict]:
    """The enabled nodes of a nodes intent file as written (``read_intent_file``; not checked against
    the schema: the templates step and Terraform's preconditions ask only which nodes are on and what
    they run, and ``intent_valid`` reports the rest)."""
    data = read_intent_file(path, source)
    nodes = data.get('nodes') if isinstance(data, dict) else None
    if not isinstance(nodes, list):
        raise CheckError(CHECK, 'no top-level "nodes" list', where=path,
                         remediation='fix the nodes intent (see schema.json), then validate it with: make validate-intent')
    return [node for node in nodes if isinstance(node, dict) and node.get('enabled', True)]


# ---------------------------------------------------------------- checks
def _node_label(nodes, index: int) -> str:
    node = nodes[index] if isinstance(nodes, list) and index < len(nodes) else None
    name = node.get('name') if isinstance(node, dict) else None
    label = f'nodes[{index}]'
    return f'{label} ({name})' if isinstance(name, str) and name else label


def _labelled_path(data, path: list) -> str:
    """A field path with the node's name after its index: ``nodes[1] (worker-01).ipv4``."""
    if len(path) >= 2 and path[0] == 'nodes' and isinstance(path[1], int) and isinstance(data, dict):
        head = _node_label(data.get('nodes'), path[1])
        rest = field_path(path[2:])
        if not rest:
            return head
        return f'{head}{rest}' if rest.startswith('[') else f'{head}.{rest}'
    return field_path(path)


def _schema_problems(data, source: str, required_key: str) -> list[tuple[str, str, str]]:
    if not isinstance(data, dict):
        kind = 'empty' if data is None else f'a {type(data).__name__}'
        return [(source, '', f'is {kind}; it must be a mapping with the top-level key {required_key!r}')]
    problems = []
    if required_key not in data:
        problems.append((source, required_key, 'missing required key'))
    for other in data:
        if other != required_key and other in INTENT_SCHEMA['properties']:
            problems.append((source, str(other),
                             f'belongs in the other intent file; this file carries only {required_key!r}'))
    for field, message in schema_errors(data, INTENT_SCHEMA):
        path = _parse_field_path(field)
        problems.append((source, _labelled_path(data, path), message))
    return problems


def _parse_field_path(text: str) -> list:
    """Inverse of ``field_path`` for the plain keys and indexes the intent schema uses."""
    path: list = []
    for match in re.finditer(r'([^.\[\]]+)|\[(\d+)\]', text):
        if match.group(2) is not None:
            path.append(int(match.group(2)))
        else:
            path.append(match.group(1))
    return path


def _network(cluster: dict, source: str, problems: list):
    net = cluster['network']
    try:
        return ipaddress.ip_network(net['cidr'], strict=True)
    except ValueError:
        loose = ipaddress.ip_network(net['cidr'], strict=False)
        problems.append((source, 'cluster.network.cidr',
                         f'{net["cidr"]} has host bits set; the network is {loose}'))
        return loose


def _usable(address, network) -> str | None:
    """Why ``address`` cannot be a host address in ``network``, or None."""
    if address not in network:
        return f'is outside cluster network {network}'
    if network.prefixlen < 31 and address in (network.network_address, network.broadcast_address):
        kind = 'network' if address == network.network_address else 'broadcast'
        return f'is the {kind} address of cluster network {network}'
    return None


def cross_field_problems(cluster: dict, nodes: list, cluster_source: str,
                         nodes_source: str) -> list[tuple[str, str, str]]:
    """The rules a schema cannot state; both inputs have passed the schema already."""
    problems: list[tuple[str, str, str]] = []
    network = _network(cluster, cluster_source, problems)
    gateway = ipaddress.ip_address(cluster['network']['gateway'])
    why = _usable(gateway, network)
    if why:
        problems.append((cluster_source, 'cluster.network.gateway', f'{gateway} {why}'))

    seen: dict[str, dict] = {'name': {}, 'vmid': {}, 'ipv4': {}}
    for index, node in enumerate(nodes):
        label = _node_label(nodes, index)
        for key in ('name', 'vmid', 'ipv4'):
            value = node[key]
            if value in seen[key]:
                problems.append((nodes_source, f'{label}.{key}',
                                 f'{value} is already used by {seen[key][value]}'))
            else:
                seen[key][value] = label

        address = ipaddress.ip_address(node['ipv4'])
        why = _usable(address, network)
        if why:
            problems.append((nodes_source, f'{label}.ipv4', f'{address} {why}'))
        elif address == gateway:
            problems.append((nodes_source, f'{label}.ipv4', f'{address} is the cluster gateway'))

        role, os_name = node['role'], node['os']
        if role in TALOS_ROLES and os_name != 'talos':
            problems.append((nodes_source, f'{label}.os',
                             f'{os_name!r} cannot run role {role!r}: Kubernetes nodes are Talos nodes (os: talos)'))
        if role in UBUNTU_ROLES and os_name != 'ubuntu':
            problems.append((nodes_source, f'{label}.os',
                             f'{os_name!r} cannot run role {role!r}: utility nodes are SSH-managed Ubuntu nodes (os: ubuntu)'))

        if role == 'gpu-worker' and 'pci_mapping' not in node:
            problems.append((nodes_source, f'{label}.pci_mapping',
                             'missing: a gpu-worker needs the name of a Proxmox PCI resource mapping'))
        if role != 'gpu-worker' and 'pci_mapping' in node:
            problems.append((nodes_source, f'{label}.pci_mapping',
                             f'only a gpu-worker takes a PCI mapping (role is {role!r})'))

        if os_name == 'ubuntu' and not node.get('groups'):
            problems.append((nodes_source, f'{label}.groups',
                             'missing or empty: an ubuntu node needs at least one Ansible group (e.g. base)'))
        if os_name == 'talos':
            for key in ('groups', 'ssh_user', 'ssh_port'):
                if key in node:
                    problems.append((nodes_source, f'{label}.{key}',
                                     'not allowed on a talos node: Talos owns its OS state, Ansible never connects to it'))
        problems += _container_problems(node, label, nodes_source)

    if not any(node['role'] == 'controlplane' and node.get('enabled', INTENT_DEFAULTS['enabled'])
               for node in nodes):
        problems.append((nodes_source, 'nodes', 'no enabled controlplane node: at least one is required'))

    endpoint = urlsplit(cluster['controlplane_endpoint'])
    try:
        port = endpoint.port
    except ValueError:
        port = 0
    if not port:
        problems.append((cluster_source, 'cluster.controlplane_endpoint',
                         f'{cluster["controlplane_endpoint"]} has no valid port (1-65535)'))
    try:
        host = ipaddress.ip_address(endpoint.hostname or '')
    except ValueError:
        host = None  # a DNS name: nothing to check against the network
    if host is not None:
        why = _usable(host, network)
        if why:
            problems.append((cluster_source, 'cluster.controlplane_endpoint', f'{host} {why}'))
        for index, node in enumerate(nodes):
            if node['ipv4'] == str(host) and node['role'] != 'controlplane':
                problems.append((cluster_source, 'cluster.controlplane_endpoint',
                                 f'{host} is the address of {_node_label(nodes, index)}, '
                                 f'which is a {node["role"]}, not a controlplane'))
    for field, message in reserved_name_problems({'nodes': nodes}):
        problems.append((nodes_source, _labelled_path({'nodes': nodes}, _parse_field_path(field)), message))
    return problems


def _container_problems(node: dict, label: str, nodes_source: str) -> list[tuple[str, str, str]]:
    """The rules for ``guest: lxc``: only Ubuntu nodes, and only what a container template offers."""
    if node.get('guest', 'vm') != 'lxc':
        return []
    problems = []
    if node['os'] != 'ubuntu':
        problems.append((nodes_source, f'{label}.guest',
                         f"'lxc' is for ubuntu nodes only: a {node['os']} node ({node['role']}) is always a VM (guest: vm)"))
    if 'pci_mapping' in node:
        problems.append((nodes_source, f'{label}.pci_mapping',
                         'not allowed on a container (guest: lxc): PCI passthrough needs a VM'))
    if node.get('ssh_user', CONTAINER_DEFAULTS['ssh_user']) != CONTAINER_DEFAULTS['ssh_user']:
        problems.append((nodes_source, f'{label}.ssh_user',
                         f"{node['ssh_user']!r} on a container (guest: lxc): the container template has only "
                         "root, and Proxmox installs the SSH key for root; leave ssh_user out or set it to root"))
    if node.get('ssh_port', CONTAINER_DEFAULTS['ssh_port']) != CONTAINER_DEFAULTS['ssh_port']:
        problems.append((nodes_source, f'{label}.ssh_port',
                         f"{node['ssh_port']} on a container (guest: lxc): the container template's sshd "
                         "listens on 22; leave ssh_port out or set it to 22"))
    return problems


# ---------------------------------------------------------------- the merged intent
def _with_defaults(node: dict) -> dict:
    full = copy.deepcopy(node)
    full.setdefault('enabled', INTENT_DEFAULTS['enabled'])
    full.setdefault('pci_mapping', None)
    full.setdefault('guest', 'vm')
    if full['guest'] == 'lxc':
        full.setdefault('ssh_user', CONTAINER_DEFAULTS['ssh_user'])
        full.setdefault('ssh_port', CONTAINER_DEFAULTS['ssh_port'])
    if full['os'] == 'ubuntu':
        full.setdefault('ssh_user', INTENT_DEFAULTS['ssh_user'])
        full.setdefault('ssh_port', INTENT_DEFAULTS['ssh_port'])
    else:
        full['groups'] = []
        full['ssh_user'] = None
        full['ssh_port'] = None
    return full


def merge_intent(cluster_data: dict, nodes_data: dict, cluster_source: str, nodes_source: str) -> dict:
    """Validate both parsed files and return the merged intent (raises IntentError)."""
    problems = _schema_problems(cluster_data, cluster_source, 'cluster')
    problems += _schema_problems(nodes_data, nodes_source, 'nodes')
    if problems:
        raise IntentError(problems)
    cluster = cluster_data['cluster']
    nodes = nodes_data['nodes']
    problems = cross_field_problems(cluster, nodes, cluster_source, nodes_source)
    if problems:
        raise IntentError(problems)

    network = ipaddress.ip_network(cluster['network']['cidr'])
    merged_cluster = copy.deepcopy(cluster)
    merged_cluster['network']['prefix_length'] = network.prefixlen
    all_nodes = [_with_defaults(node) for node in nodes]
    enabled = [node for node in all_nodes if node['enabled']]
    proxmox = copy.deepcopy(cluster['proxmox'])
    proxmox['pci_mappings'] = sorted({node['pci_mapping'] for node in enabled if node['pci_mapping']})
    return {
        'cluster': merged_cluster,
        'nodes': enabled,
        'talos_nodes': [node for node in enabled if node['os'] == 'talos'],
        'ssh_nodes': [node for node in enabled if node['os'] == 'ubuntu'],
        'containers': [node for node in enabled if node['guest'] == 'lxc'],
        'disabled_nodes': [node['name'] for node in all_nodes if not node['enabled']],
        'proxmox': proxmox,
        'sources': {'cluster': cluster_source, 'nodes': nodes_source},
    }


def load_intent(cluster_path: str = DEFAULT_CLUSTER_PATH, nodes_path: str = DEFAULT_NODES_PATH,
                root: str | None = None) -> dict:
    """Load both intent files, validate them, and return the merged intent.

    The result: ``cluster`` (as written, plus ``network.prefix_length``), ``nodes`` (the
    enabled nodes, every optional key filled: ``enabled``, ``pci_mapping``, ``groups``,
    ``ssh_user``, ``ssh_port``; the last three are empty/None on Talos nodes),
    ``talos_nodes`` and ``ssh_nodes`` (the enabled nodes split by OS), ``containers`` (the
    enabled nodes with ``guest: lxc``; every node has ``guest``, default ``vm``), ``disabled_nodes``
    (names), ``proxmox`` (``vm_storage``, ``template_storage``, ``bridge`` and the
    ``pci_mappings`` the enabled nodes use) and ``sources`` (the files, as displayed).
    Relative paths are taken from ``root`` (default: the project root, the nearest directory
    upwards from the working directory that holds this collection's galaxy.yml).
    Raises IntentError listing every problem in both files.
    """
    return validated_intent_files(cluster_path, nodes_path, root)['merged']


def validated_intent_files(cluster_path: str = DEFAULT_CLUSTER_PATH, nodes_path: str = DEFAULT_NODES_PATH,
                           root: str | None = None) -> dict:
    """Read and validate both intent files as ``load_intent`` does; return ``merged`` (its result)
    and ``cluster`` and ``nodes``: each file's data exactly as read and validated, which is what
    Terraform is handed. Raises IntentError."""
    base = os.path.abspath(root or find_project_root())
    cluster_abs = os.path.join(base, cluster_path)
    nodes_abs = os.path.join(base, nodes_path)
    cluster_source = display_path(cluster_abs, base)
    nodes_source = display_path(nodes_abs, base)
    problems: list[tuple[str, str, str]] = []
    remediation = REMEDIATION
    parsed = {}
    for key, path, source in (('cluster', cluster_abs, cluster_source), ('nodes', nodes_abs, nodes_source)):
        try:
            parsed[key] = read_intent_file(path, source)
        except IntentError as exc:
            problems += exc.errors
            if exc.remediation != REMEDIATION:
                remediation = exc.remediation
    if problems:
        raise IntentError(problems, remediation=remediation)
    merged = merge_intent(parsed['cluster'], parsed['nodes'], cluster_source, nodes_source)
    return {'merged': merged, 'cluster': parsed['cluster'], 'nodes': parsed['nodes']}


def load_cluster(cluster_path: str = DEFAULT_CLUSTER_PATH, root: str | None = None) -> dict:
    """Load and validate the cluster intent file alone; return its ``cluster`` mapping.

    For steps that need only cluster-wide settings (the templates step reads
    ``cluster.proxmox.template_storage``). The file is checked against ``INTENT_SCHEMA``;
    the rules that span both files are ``load_intent``'s. A relative path is taken from
    ``root`` (default: the project root). Raises IntentError.
    """
    base = os.path.abspath(root or find_project_root())
    cluster_abs = os.path.join(base, cluster_path)
    source = display_path(cluster_abs, base)
    data = read_intent_file(cluster_abs, source)
    problems = _schema_problems(data, source, 'cluster')
    if problems:
        raise IntentError(problems)
    return copy.deepcopy(data['cluster'])
