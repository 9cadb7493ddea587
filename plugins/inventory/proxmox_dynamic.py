# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: proxmox_dynamic
short_description: Ansible inventory from the Terraform outputs contract (outputs.json)
version_added: 0.1.0
description:
  - Reads the Terraform outputs contract file C(state/cache/terraform/outputs.json), written by the
    C(terraform_apply) step, and turns it into an inventory. It reads one local file and never calls
    the Proxmox API or runs Terraform.
  - Every entry of C(nodes) becomes a host with C(ansible_host) (its C(ipv4)), C(ansible_user) (its
    C(ssh_user)) and C(ansible_port) (its C(ssh_port), default V(22)). The node's C(groups) become
    inventory groups; a group name that is not a valid Ansible group name is sanitised the way
    Ansible sanitises group names (invalid characters become C(_)) and a warning names the change.
  - Every other key of a node becomes a host variable named O(hostvar_prefix) plus the key. A key whose
    variable name would be invalid or would start with C(ansible_) is left out with a warning, so
    outputs.json can never set connection or privilege settings other than the three above.
  - Entries of C(talos_nodes) are added only with O(include_talos=true), to the groups
    C(talos_controlplane), C(talos_worker) or C(talos_gpu_worker) by their C(role). Talos nodes are
    managed by Talos, not over SSH, so they never get C(ansible_host), C(ansible_user) or
    C(ansible_port); their keys other than C(name) become prefixed host variables.
  - The file is validated against the outputs contract (check C(terraform_outputs_valid)). A malformed
    file, or a name used twice across C(nodes) and C(talos_nodes), fails the inventory source with the
    check id, the field and the file. A missing file gives an empty inventory and one warning, so that
    a playbook can start before Terraform has run.
  - Ansible reports a failed inventory source as a warning and goes on with an empty inventory unless
    C(any_unparsed_is_failed) is set in the C([inventory]) section of C(ansible.cfg)
    (E(ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED)); set it where a bad outputs.json must stop the run.
  - Every value taken from the file is marked unsafe, so it is never templated.
  - With O(compose), O(groups) or O(keyed_groups), each expression is compiled once and evaluated per
    host; O(groups) and O(keyed_groups) see the host variables after O(compose), including
    C(group_names) from the node's C(groups), as with P(ansible.builtin.constructed#inventory).
  - The inventory source file name must end with C(proxmox_dynamic.yml) or C(proxmox_dynamic.yaml).
extends_documentation_fragment:
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
notes:
  - With O(cache=true) the cache entry records the identity of the outputs file (path, size,
    modification time in nanoseconds, inode); an entry recorded for another identity is ignored and
    replaced, so a new outputs.json is never served from the cache.
options:
  plugin:
    description: Marks this file as a source for this plugin.
    required: true
    type: str
    choices:
      - eminfra.pipeline.proxmox_dynamic
  outputs_path:
    description:
      - Path of the Terraform outputs file.
      - A relative path is resolved against the project root, which is E(EMINFRA_PROJECT_ROOT) if set, else the
        nearest directory above the inventory source that holds this collection's C(galaxy.yml).
      - Unset, the contract path C(cache/terraform/outputs.json) under the state root (O(state_dir)).
    type: str
  state_dir:
    description:
      - The pipeline's state root, used when O(outputs_path) is not set.
      - A relative path is resolved against the project root. Unset, C(state) under the project root.
    type: str
    env:
      - name: EMINFRA_STATE_DIR
    vars:
      - name: eminfra_state_dir
  hostvar_prefix:
    description:
      - Prefix of the host variables made from node keys other than the connection keys and C(groups).
      - Keys whose prefixed name is not a valid variable name are left out with a warning.
    type: str
    default: eminfra_
  include_talos:
    description:
      - Add the Talos nodes (C(talos_nodes)) to the groups C(talos_controlplane), C(talos_worker) and
        C(talos_gpu_worker), without any SSH connection variables.
    type: bool
    default: false
"""

EXAMPLES = r"""
---
# inventory/proxmox_dynamic.yml: the pipeline's inventory, reading state/cache/terraform/outputs.json
plugin: eminfra.pipeline.proxmox_dynamic

---
# Talos nodes too, extra groups built from host variables, and a cache
plugin: eminfra.pipeline.proxmox_dynamic
include_talos: true
strict: true
compose:
  node_vmid: eminfra_vmid
groups:
  gpu: "'gpu' in (eminfra_tags | default([]))"
keyed_groups:
  - key: eminfra_role | default('none')
    prefix: role
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: state/cache/inventory

---
# A file kept somewhere else (a relative path is relative to the project root)
plugin: eminfra.pipeline.proxmox_dynamic
outputs_path: build/outputs.json
"""

import hashlib
import json
import keyword
import os
import re

from ansible.errors import AnsibleParserError
from ansible.inventory.group import to_safe_group_name
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.display import Display
from ansible.utils.vars import combine_vars
from ansible.utils.unsafe_proxy import AnsibleUnsafeText
from jinja2 import Environment, TemplateSyntaxError
from jinja2.parser import Parser

try:
    from ansible.template import is_trusted_as_template
except ImportError:  # pragma: no cover - a core without template trust: every expression goes to the templar
    is_trusted_as_template = None

from ansible_collections.eminfra.pipeline.plugins.module_utils._contracts import (
    OUTPUTS_SCHEMA, ContractError, _describe, field_path, reserved_name_problems, schema_errors,
)
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError
from ansible_collections.eminfra.pipeline.plugins.module_utils._state import StateLayout, find_project_root

display = Display()

CHECK = 'terraform_outputs_valid'
REMEDIATION = ('re-run the terraform_apply step (ansible-playbook playbooks/site.yml -e eminfra_start_at=terraform_apply) '
               'so that it writes a valid outputs.json')
TALOS_GROUPS = {'controlplane': 'talos_controlplane', 'worker': 'talos_worker', 'gpu-worker': 'talos_gpu_worker'}
NODE_CONNECTION_KEYS = frozenset(('name', 'ipv4', 'ssh_user', 'ssh_port', 'groups'))
TALOS_SKIPPED_KEYS = frozenset(('name',))


class _Violation:
    """One failed keyword, with the attributes of a jsonschema error that the messages use."""

    __slots__ = ('path', 'validator', 'validator_value', 'instance', 'message')

    def __init__(self, path, validator, validator_value, instance, message):
        self.path = path
        self.validator = validator
        self.validator_value = validator_value
        self.instance = instance
        self.message = message


def _is_type(instance, kind: str) -> bool:
    """JSON Schema 2020-12 types, as jsonschema decides them (a bool is no number; 1.0 is an integer)."""
    if kind == 'object':
        return isinstance(instance, dict)
    if kind == 'array':
        return isinstance(instance, list)
    if kind == 'string':
        return isinstance(instance, str)
    if kind == 'null':
        return instance is None
    if kind == 'boolean':
        return isinstance(instance, bool)
    if isinstance(instance, bool):
        return False
    if kind == 'integer':
        return isinstance(instance, int) or (isinstance(instance, float) and instance.is_integer())
    if kind == 'number':
        return isinstance(instance, (int, float))
    raise NotImplementedError(kind)


_TRUE = object()
_FALSE = object()


def _unbool(value):
    if value is True:
        return _TRUE
    if value is False:
        return _FALSE
    return value


def _json_equal(one, two) -> bool:
    """Equality as jsonschema decides it for const and enum: True is not 1, recursively."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return one == two
    if isinstance(one, list) and isinstance(two, list):
        return len(one) == len(two) and all(_json_equal(left, right) for left, right in zip(one, two))
    if isinstance(one, dict) and isinstance(two, dict):
        return one.keys() == two.keys() and all(_json_equal(one[key], two[key]) for key in one)
    return _unbool(one) == _unbool(two)


_ANNOTATIONS = frozenset(('$schema', '$id', 'title', 'description'))


def _compile(schema: dict):
    """A checker for the JSON Schema keywords that the outputs contract uses.

    The common case (a valid file) costs a few attribute lookups per value, against about 70 us
    per node for jsonschema. A keyword outside this set raises NotImplementedError, and the caller
    falls back to jsonschema, so a richer schema never goes unchecked.
    """
    checks = []
    for keyword, value in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        if keyword == 'type':
            kinds = value if isinstance(value, list) else [value]
            for kind in kinds:
                _is_type(None, kind)

            def check(inst, path, out, kinds=kinds, value=value):
                if not any(_is_type(inst, kind) for kind in kinds):
                    out.append(_Violation(path, 'type', value, inst,
                                          f"{inst!r} is not of type {', '.join(repr(kind) for kind in kinds)}"))
        elif keyword == 'required':
            def check(inst, path, out, value=value):
                if isinstance(inst, dict):
                    missing = [key for key in value if key not in inst]
                    if missing:
                        for key in missing:
                            out.append(_Violation(path, 'required', value, inst, f'{key!r} is a required property'))
        elif keyword == 'properties':
            subs = [(key, _compile(sub)) for key, sub in value.items()]

            def check(inst, path, out, subs=subs):
                if isinstance(inst, dict):
                    for key, sub in subs:
                        if key in inst:
                            sub(inst[key], path + (key,), out)
        elif keyword == 'additionalProperties':
            if value is not True:
                raise NotImplementedError('additionalProperties other than true')
            continue
        elif keyword == 'items':
            sub = _compile(value)

            def check(inst, path, out, sub=sub):
                if isinstance(inst, list):
                    for index, item in enumerate(inst):
                        sub(item, path + (index,), out)
        elif keyword == 'minLength':
            message = 'should be non-empty' if value == 1 else 'is too short'

            def check(inst, path, out, value=value, message=message):
                if isinstance(inst, str) and len(inst) < value:
                    out.append(_Violation(path, 'minLength', value, inst, f'{inst!r} {message}'))
        elif keyword == 'pattern':
            search = re.compile(value).search

            def check(inst, path, out, value=value, search=search):
                if isinstance(inst, str) and not search(inst):
                    out.append(_Violation(path, 'pattern', value, inst, f'{inst!r} does not match {value!r}'))
        elif keyword in ('minimum', 'maximum'):
            def check(inst, path, out, keyword=keyword, value=value):
                if _is_type(inst, 'number') and (inst < value if keyword == 'minimum' else inst > value):
                    relation = 'less than the minimum' if keyword == 'minimum' else 'greater than the maximum'
                    out.append(_Violation(path, keyword, value, inst, f'{inst!r} is {relation} of {value!r}'))
        elif keyword == 'const':
            def check(inst, path, out, value=value):
                if not _json_equal(inst, value):
                    out.append(_Violation(path, 'const', value, inst, f'{value!r} was expected'))
        elif keyword == 'enum':
            def check(inst, path, out, value=value):
                if not any(_json_equal(inst, each) for each in value):
                    out.append(_Violation(path, 'enum', value, inst, f'{inst!r} is not one of {value!r}'))
        else:
            raise NotImplementedError(keyword)
        checks.append(check)

    def check_all(inst, path, out):
        for check in checks:
            check(inst, path, out)
    return check_all


try:
    _CHECK_OUTPUTS = _compile(OUTPUTS_SCHEMA)
except NotImplementedError:  # pragma: no cover - a schema keyword added without a fast check
    _CHECK_OUTPUTS = None


# The schema that quick_valid() below was written for; any change to OUTPUTS_SCHEMA turns it off
# (a unit test then fails until quick_valid() is brought in line and this digest updated).
_QUICK_SCHEMA_SHA256 = '56c188f0067e307030f1667236817249c15e54bdaeaa553ae3ee2c7dea1c60f1'
QUICK_CHECK_ENABLED = hashlib.sha256(json.dumps(OUTPUTS_SCHEMA, sort_keys=True).encode()).hexdigest() == _QUICK_SCHEMA_SHA256
_IPV4 = re.compile(OUTPUTS_SCHEMA['properties']['nodes']['items']['properties']['ipv4']['pattern']).search
_TALOS_ROLES = frozenset(OUTPUTS_SCHEMA['properties']['talos_nodes']['items']['properties']['role']['enum'])


def quick_valid(instance) -> bool:
    """True only for a document that OUTPUTS_SCHEMA accepts, in a few microseconds per node.

    It may say False for a valid document (an integral float port, say); the full check then
    decides. It never says True for an invalid one: a unit test holds it to jsonschema.
    """
    if type(instance) is not dict:  # pylint: disable=unidiomatic-typecheck
        return False
    version = instance.get('schema_version', 1)
    nodes = instance.get('nodes')
    talos = instance.get('talos_nodes', [])
    if type(version) is not int or version != 1 or type(nodes) is not list or type(talos) is not list:  # pylint: disable=unidiomatic-typecheck
        return False
    ipv4 = _IPV4
    for node in nodes:
        if type(node) is not dict:  # pylint: disable=unidiomatic-typecheck
            return False
        name = node.get('name')
        address = node.get('ipv4')
        user = node.get('ssh_user')
        port = node.get('ssh_port', 22)
        groups = node.get('groups')
        if (type(name) is not str or not name or type(address) is not str or not ipv4(address)  # pylint: disable=unidiomatic-typecheck
                or type(user) is not str or not user or type(port) is not int or not 1 <= port <= 65535  # pylint: disable=unidiomatic-typecheck
                or type(groups) is not list):  # pylint: disable=unidiomatic-typecheck
            return False
        for group in groups:
            if type(group) is not str or not group:  # pylint: disable=unidiomatic-typecheck
                return False
    for node in talos:
        if type(node) is not dict:  # pylint: disable=unidiomatic-typecheck
            return False
        name = node.get('name')
        address = node.get('ipv4')
        role = node.get('role')
        vmid = node.get('vmid')
        if (type(name) is not str or not name or type(address) is not str or not ipv4(address)  # pylint: disable=unidiomatic-typecheck
                or type(role) is not str or role not in _TALOS_ROLES  # pylint: disable=unidiomatic-typecheck
                or type(vmid) is not int or not 100 <= vmid <= 999999999):  # pylint: disable=unidiomatic-typecheck
            return False
    return True


def outputs_errors(instance) -> list[tuple[str, str]]:
    """The outputs contract's violations as (field path, message), equal to ``schema_errors(instance, OUTPUTS_SCHEMA)``."""
    if QUICK_CHECK_ENABLED and quick_valid(instance):
        return []
    if _CHECK_OUTPUTS is None:
        return schema_errors(instance, OUTPUTS_SCHEMA)
    found: list[_Violation] = []
    _CHECK_OUTPUTS(instance, (), found)
    if not found:
        return []
    # the same order as schema_errors: list indexes numerically, then keys as text
    found.sort(key=lambda err: ([(0, part, '') if isinstance(part, int) else (1, 0, str(part)) for part in err.path],
                                str(err.validator)))
    result: list[tuple[str, str]] = []
    for error in found:
        path = list(error.path)
        if error.validator == 'required':
            for key in error.validator_value:
                entry = (field_path(path + [key]), 'missing required key')
                if key not in error.instance and entry not in result:
                    result.append(entry)
            continue
        result.append((field_path(path), _describe(error)))
    return result


def make_unsafe(value):
    """``value`` with every string in it marked unsafe (never templated); JSON types only."""
    if isinstance(value, str):
        return AnsibleUnsafeText(value)
    if isinstance(value, dict):
        return {AnsibleUnsafeText(key) if isinstance(key, str) else key: make_unsafe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [make_unsafe(item) for item in value]
    return value


def variable_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a host variable taken from outputs.json, or None."""
    if not (name.isascii() and name.isidentifier()) or keyword.iskeyword(name) or name.lower() in ('true', 'false', 'none'):
        return 'is not a valid variable name'
    if name.startswith('ansible_'):
        # connection and become settings come only from the contract's keys, never from extra keys
        return 'would set an ansible_* variable'
    return None


def read_outputs(path: str, handle) -> dict:
    """Parse and validate an opened outputs.json; raise CheckError naming the file and field."""
    try:
        data = json.load(handle)
    except json.JSONDecodeError as err:
        raise CheckError(CHECK, f'not valid JSON: {err.msg} at line {err.lineno} column {err.colno}',
                         where=path, remediation=REMEDIATION) from None
    except (OSError, UnicodeDecodeError) as err:
        raise CheckError(CHECK, f'cannot read: {err}', where=path, remediation=REMEDIATION) from None
    errors = outputs_errors(data) or reserved_name_problems(data)
    if errors:
        raise ContractError(CHECK, errors, source=path, remediation=REMEDIATION)
    seen: dict[str, str] = {}
    for list_key in ('nodes', 'talos_nodes'):
        for index, node in enumerate(data.get(list_key) or ()):
            field = f'{list_key}[{index}].name'
            first = seen.setdefault(node['name'], field)
            if first is not field:
                raise ContractError(CHECK, [(field, f'duplicate host name {node["name"]!r}, already used by {first}')],
                                    source=path, remediation=REMEDIATION)
    return data


# Jinja names that the expression context defines itself, or that mean more than a variable
_NOT_VARIABLES = frozenset(('self', 'loop', 'caller', 'varargs', 'kwargs', 'super', 'omit'))
_SCALARS = frozenset((str, int, float, bool, type(None)))
_NUMBERS = frozenset((int, float))
_MISSING = object()


class _Unanswered(Exception):
    """The fast path cannot tell; the templar decides (and raises its own errors)."""


def _plain_copy(value):
    """A copy of ``value`` if it holds only plain JSON-like types (no tagged or custom ones), else _MISSING."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is list:
        items = [_plain_copy(item) for item in value]
        return _MISSING if any(item is _MISSING for item in items) else items
    if kind is dict:
        copied = {}
        for key, item in value.items():
            item = _plain_copy(item)
            if type(key) not in _SCALARS or item is _MISSING:  # pylint: disable=unidiomatic-typecheck
                return _MISSING
            copied[key] = item
        return copied
    return _MISSING


def _scalar(value):
    if type(value) not in _SCALARS:  # pylint: disable=unidiomatic-typecheck
        raise _Unanswered()
    return value


def _number(value):
    if type(value) not in _NUMBERS:  # pylint: disable=unidiomatic-typecheck
        raise _Unanswered()
    return value


def _concat_part(value):
    if type(value) is str:  # pylint: disable=unidiomatic-typecheck
        return value
    if type(value) is int:  # pylint: disable=unidiomatic-typecheck
        return str(value)
    raise _Unanswered()


def _arithmetic(operator):
    def apply(left, right):
        if type(left) is str and type(right) is str and operator == '+':  # pylint: disable=unidiomatic-typecheck
            return left + right
        left, right = _number(left), _number(right)
        try:
            if operator == '+':
                return left + right
            if operator == '-':
                return left - right
            if operator == '*':
                return left * right
            if operator == '/':
                return left / right
            if operator == '//':
                return left // right
            return left % right
        except ArithmeticError:
            raise _Unanswered() from None
    return apply


def _comparison(operator):
    def apply(left, right):
        if operator in ('in', 'notin'):
            left = _scalar(left)
            if type(right) is str:  # pylint: disable=unidiomatic-typecheck
                if type(left) is not str:  # pylint: disable=unidiomatic-typecheck
                    raise _Unanswered()
            elif type(right) is not list or _plain_copy(right) is _MISSING:  # pylint: disable=unidiomatic-typecheck
                raise _Unanswered()
            return (left in right) is (operator == 'in')
        left, right = _scalar(left), _scalar(right)
        if operator == 'eq':
            return left == right
        if operator == 'ne':
            return left != right
        if not ((type(left) in _NUMBERS and type(right) in _NUMBERS) or (type(left) is str and type(right) is str)):  # pylint: disable=unidiomatic-typecheck
            raise _Unanswered()
        if operator == 'lt':
            return left < right
        if operator == 'lteq':
            return left <= right
        if operator == 'gt':
            return left > right
        return left >= right
    return apply


_ARITHMETIC = {'Add': '+', 'Sub': '-', 'Mul': '*', 'Div': '/', 'FloorDiv': '//', 'Mod': '%'}
_COMPARISONS = frozenset(('eq', 'ne', 'lt', 'lteq', 'gt', 'gteq', 'in', 'notin'))


def _lookup(container, key, attribute: bool):
    """Jinja's ``container.key`` / ``container[key]`` where the answer is certain, else _Unanswered."""
    kind = type(container)
    if kind is dict and type(key) is str:  # pylint: disable=unidiomatic-typecheck
        # ``x.items`` is dict.items to Jinja, and ``x._y`` is refused by its sandbox
        if attribute and (key.startswith('_') or hasattr(dict, key)):
            raise _Unanswered()
        if key in container:
            return container[key]
    elif kind is list and type(key) is int and 0 <= key < len(container) and not attribute:  # pylint: disable=unidiomatic-typecheck
        return container[key]
    raise _Unanswered()


def _compile_node(node):  # pylint: disable=too-many-return-statements
    """A function of the variables for one Jinja expression node, or None outside the supported subset."""
    kind = type(node).__name__
    if kind == 'Const':
        value = node.value
        return None if type(value) not in _SCALARS else (lambda variables: value)  # pylint: disable=unidiomatic-typecheck
    if kind == 'Name':
        name = node.name
        if node.ctx != 'load' or name in _NOT_VARIABLES:
            return None

        def load(variables):
            if name not in variables:
                raise _Unanswered()
            return variables[name]
        return load
    if kind in ('Getattr', 'Getitem'):
        inner = _compile_node(node.node)
        if kind == 'Getattr':
            key, attribute = node.attr, True
        elif type(node.arg).__name__ == 'Const' and type(node.arg.value) in (str, int):
            key, attribute = node.arg.value, False
        else:
            return None
        if inner is None or (type(key) is int and key < 0):  # pylint: disable=unidiomatic-typecheck
            return None
        return lambda variables: _lookup(inner(variables), key, attribute)
    if kind == 'Concat':
        parts = [_compile_node(part) for part in node.nodes]
        if any(part is None for part in parts):
            return None
        return lambda variables: ''.join(_concat_part(part(variables)) for part in parts)
    if kind in _ARITHMETIC:
        left, right, apply = _compile_node(node.left), _compile_node(node.right), _arithmetic(_ARITHMETIC[kind])
        if left is None or right is None:
            return None
        return lambda variables: apply(left(variables), right(variables))
    if kind == 'Compare':
        first = _compile_node(node.expr)
        operands = [(_comparison(operand.op), _compile_node(operand.expr)) for operand in node.ops if operand.op in _COMPARISONS]
        if first is None or len(operands) != 1 or len(node.ops) != 1 or operands[0][1] is None:
            return None
        apply, second = operands[0]
        return lambda variables: apply(first(variables), second(variables))
    if kind in ('And', 'Or', 'CondExpr', 'Not'):
        return _compile_logic(kind, node)
    return None


def _compile_logic(kind: str, node):
    if kind == 'Not':
        inner = _compile_node(node.node)
        return None if inner is None else (lambda variables: not _scalar(inner(variables)))
    if kind == 'CondExpr':
        test, then, otherwise = _compile_node(node.test), _compile_node(node.expr1), node.expr2 and _compile_node(node.expr2)
        if test is None or then is None or otherwise is None:
            return None
        return lambda variables: then(variables) if _scalar(test(variables)) else otherwise(variables)
    left, right = _compile_node(node.left), _compile_node(node.right)
    if left is None or right is None:
        return None
    if kind == 'And':
        return lambda variables: _scalar(left(variables)) and _scalar(right(variables))
    return lambda variables: _scalar(left(variables)) or _scalar(right(variables))


def compile_fast(expression):
    """A function answering ``expression`` for a dict of variables the way ansible-core's templar does, or None.

    The subset: variables, .attribute/[key]/[index] lookups, string, number, boolean and none
    constants, ``~``, ``+ - * / // %``, one comparison (``== != < <= > >= in not in``), ``and``,
    ``or``, ``not`` and ``x if y else z``, on values of plain types. The function returns _MISSING
    wherever the answer is not certain (an undefined name or key, a tagged value, a type outside the
    subset, an arithmetic error); the templar decides then. A unit test holds it to the templar.
    """
    if not isinstance(expression, str) or '{' in expression or '}' in expression or '\\' in expression:
        return None
    try:
        parser = Parser(Environment(), expression, state='variable')
        node = parser.parse_expression()
        if not parser.stream.eos:
            return None
    except TemplateSyntaxError:
        return None
    function = _compile_node(node)
    if function is None:
        return None

    def answer(variables):
        if type(variables) is not dict:  # pylint: disable=unidiomatic-typecheck
            return _MISSING
        try:
            return _plain_copy(function(variables))
        except _Unanswered:
            return _MISSING
    return answer


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    """Hosts and groups from the Terraform outputs contract."""

    NAME = 'eminfra.pipeline.proxmox_dynamic'

    def __init__(self):
        super().__init__()
        self._fast_expressions: dict = {}

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(('proxmox_dynamic.yml', 'proxmox_dynamic.yaml'))

    def outputs_file(self, source: str) -> str:
        """The outputs.json this inventory source reads."""
        project_root = find_project_root(os.path.dirname(os.path.abspath(source)))
        configured = self.get_option('outputs_path')
        if configured:
            return os.path.abspath(os.path.join(project_root, os.path.expanduser(configured)))
        return StateLayout.resolve(self.get_option('state_dir'), project_root).outputs_json

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        outputs_path = self.outputs_file(path)
        try:
            handle = open(outputs_path, 'rb')  # pylint: disable=consider-using-with
        except FileNotFoundError:
            display.warning(f'{CHECK}: {outputs_path}: not found, so the inventory has no hosts yet. '
                            f'Remediation: run the terraform_apply step (ansible-playbook playbooks/site.yml)')
            return
        except OSError as err:
            raise AnsibleParserError(str(CheckError(
                CHECK, f'cannot read: {err.strerror}', where=outputs_path,
                remediation='make it a regular file that the user running Ansible can read, or re-run the terraform_apply step'))) from None
        with handle:
            info = os.fstat(handle.fileno())
            identity = [outputs_path, info.st_size, info.st_mtime_ns, info.st_ino]
            cache_key = self.get_cache_key(path)
            cache_enabled = self.get_option('cache')
            data = None
            if cache_enabled and cache:
                entry = self._cache.get(cache_key)
                if isinstance(entry, dict) and entry.get('identity') == identity:
                    data = entry.get('outputs')
            if data is None:
                try:
                    data = read_outputs(outputs_path, handle)
                except CheckError as err:
                    raise AnsibleParserError(str(err)) from None
                if cache_enabled:
                    self._cache[cache_key] = {'identity': identity, 'outputs': data}
        self.populate(data)

    def _reuse_compiled_expressions(self) -> None:
        """Compile each compose/groups/keyed_groups expression once, not once per host.

        ansible-core 2.19 compiles an expression on every evaluation, which is about four fifths of
        the cost of compose/groups/keyed_groups per host. Compiled expressions are reused only for
        this plugin's own templar, and only for sources without a backslash (the one thing that
        compiles differently between expressions and conditionals). On a core without this layout
        nothing changes.
        """
        engine = getattr(self.templar, '_engine', None)
        environment = getattr(engine, 'environment', None)
        compile_expression = getattr(environment, 'compile_expression', None)
        if compile_expression is None or getattr(compile_expression, 'reuses_compiled', False):
            return
        compiled: dict = {}

        def reuse(source, *args, **kwargs):
            if kwargs or not isinstance(source, str) or '\\' in source:
                return compile_expression(source, *args, **kwargs)
            key = (source, args)
            if key not in compiled:
                compiled[key] = compile_expression(source, *args)
            return compiled[key]
        reuse.reuses_compiled = True
        environment.compile_expression = reuse

    def _fast(self, expression):
        """compile_fast(expression), once per expression text; None for an untrusted expression."""
        if not isinstance(expression, str) or is_trusted_as_template is None or not is_trusted_as_template(expression):
            return None
        if expression not in self._fast_expressions:
            self._fast_expressions[expression] = compile_fast(expression)
        return self._fast_expressions[expression]

    def _compose(self, template, variables, disable_lookups=...):
        """Constructable._compose, answering expressions in compile_fast's subset without the templar.

        ``node_vmid: eminfra_vmid`` or ``ansible_user ~ '@' ~ ansible_host`` cost about 100 us per
        host in the templar and a few dictionary lookups here. Whatever compile_fast cannot answer
        for certain, and every error, is the templar's. The templar's variables are set either way,
        as keyed_groups' parent_group is templated with them afterwards.
        """
        fast = self._fast(template) if disable_lookups is ... and not self._use_extra_vars() else None
        if fast is not None:
            value = fast(variables)
            if value is not _MISSING:
                self.templar.available_variables = variables
                return value
        return super()._compose(template, variables, disable_lookups=disable_lookups)

    def _add_host_to_composed_groups(self, groups, variables, host, strict=False, fetch_hostvars=True):
        """Constructable._add_host_to_composed_groups, answering conditionals in compile_fast's subset itself.

        A conditional is answered here only when its value is a boolean, as the templar requires of
        a conditional; everything else goes to the templar as in ansible-core.
        """
        if not (groups and isinstance(groups, dict)):
            super()._add_host_to_composed_groups(groups, variables, host, strict=strict, fetch_hostvars=fetch_hostvars)
            return
        if fetch_hostvars:
            variables = combine_vars(variables, self.inventory.get_host(host).get_vars())
        self.templar.available_variables = variables
        for group_name, conditional in groups.items():
            group_name = self._sanitize_group_name(group_name)
            fast = self._fast(conditional)
            result = fast(variables) if fast is not None else _MISSING
            if type(result) is not bool:  # pylint: disable=unidiomatic-typecheck
                try:
                    result = self.templar.evaluate_conditional(conditional)
                except Exception as err:  # pylint: disable=broad-exception-caught
                    if strict:
                        raise AnsibleParserError(f'Could not add host {host} to group {group_name}: {to_native(err)}') from err
                    continue
            if result:
                self.inventory.add_child(self.inventory.add_group(group_name), host)

    def _use_extra_vars(self) -> bool:
        try:
            return bool(self.get_option('use_extra_vars'))
        except KeyError:
            return False

    def populate(self, data: dict) -> None:
        """Add the validated outputs' hosts, groups and variables to the inventory."""
        inventory = self.inventory
        prefix = self.get_option('hostvar_prefix') or ''
        compose = self.get_option('compose')
        groups = self.get_option('groups')
        keyed_groups = self.get_option('keyed_groups')
        strict = self.get_option('strict')
        constructed = bool(compose or groups or keyed_groups)
        if constructed:
            self._reuse_compiled_expressions()
        group_names: dict[str, str] = {}
        var_names: dict[str, str | None] = {}

        def safe_group(raw: str, where: str) -> str:
            safe = group_names.get(raw)
            if safe is None:
                safe = to_safe_group_name(raw, force=True, silent=True)
                if safe != raw:
                    display.warning(f'{self.NAME}: group {raw!r} ({where}) is not a valid Ansible group name; '
                                    f'it becomes {safe!r}')
                group_names[raw] = inventory.add_group(safe)
                safe = group_names[raw]
            return safe

        def var_name(key: str, where: str) -> str | None:
            if key not in var_names:
                name = f'{prefix}{key}'
                problem = variable_name_problem(name)
                if problem:
                    display.warning(f'{self.NAME}: {where}: key {key!r} is left out: {name!r} {problem}')
                    name = None
                var_names[key] = name
            return var_names[key]

        def add(name: str, hostvars: dict, host_groups: list[str]) -> None:
            known = name in inventory.hosts
            inventory.add_host(name)
            host = inventory.get_host(name)
            if known:
                # a host from another source too: set_variable merges mappings as Ansible does
                for key, value in hostvars.items():
                    host.set_variable(key, value)
            else:
                # names already checked (variable_name_problem), so one bulk update does it
                host.vars.update(hostvars)
            for group in host_groups:
                inventory.add_child(group, name)
            if constructed:
                # as ansible.builtin.constructed: compose, then fetch the host vars once more
                # for groups and keyed_groups (not once per keyed_groups entry)
                if compose:
                    self._set_composite_vars(compose, host.get_vars(), name, strict=strict)
                variables = host.get_vars()
                self._add_host_to_composed_groups(groups, variables, name, strict=strict, fetch_hostvars=False)
                self._add_host_to_keyed_groups(keyed_groups, variables, name, strict=strict, fetch_hostvars=False)

        for index, node in enumerate(data.get('nodes') or ()):
            where = f'nodes[{index}]'
            name = node['name']
            hostvars = {
                'ansible_host': AnsibleUnsafeText(node['ipv4']),
                'ansible_user': AnsibleUnsafeText(node['ssh_user']),
                'ansible_port': int(node.get('ssh_port', 22)),
            }
            for key, value in node.items():
                if key not in NODE_CONNECTION_KEYS:
                    variable = var_name(key, where)
                    if variable:
                        hostvars[variable] = make_unsafe(value)
            add(name, hostvars, [safe_group(raw, f'{where}.groups, host {name}') for raw in node['groups']])

        if not self.get_option('include_talos'):
            return
        for index, node in enumerate(data.get('talos_nodes') or ()):
            where = f'talos_nodes[{index}]'
            hostvars = {}
            for key, value in node.items():
                if key not in TALOS_SKIPPED_KEYS:
                    variable = var_name(key, where)
                    if variable:
                        hostvars[variable] = make_unsafe(value)
            add(node['name'], hostvars, [inventory.add_group(TALOS_GROUPS[node['role']])])
