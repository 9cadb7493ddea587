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
  - O(compose), O(groups) and O(keyed_groups) are evaluated per host by ansible-core's own constructed
    features; O(groups) and O(keyed_groups) see the host variables after O(compose), including
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

import keyword
import os

from ansible.errors import AnsibleParserError
from ansible.inventory.group import to_safe_group_name
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.display import Display
from ansible.utils.unsafe_proxy import AnsibleUnsafeText

from ansible_collections.eminfra.pipeline.plugins.module_utils import _outputs
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError
from ansible_collections.eminfra.pipeline.plugins.module_utils._state import StateLayout, find_project_root

display = Display()

TALOS_GROUPS = {'controlplane': 'talos_controlplane', 'worker': 'talos_worker', 'gpu-worker': 'talos_gpu_worker'}
NODE_CONNECTION_KEYS = frozenset(('name', 'ipv4', 'ssh_user', 'ssh_port', 'groups'))
TALOS_SKIPPED_KEYS = frozenset(('name',))


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


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    """Hosts and groups from the Terraform outputs contract."""

    NAME = 'eminfra.pipeline.proxmox_dynamic'

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
        identity = _outputs.identity(outputs_path)
        if identity is None:
            display.warning(f'{_outputs.CHECK}: {outputs_path}: not found, so the inventory has no hosts yet. '
                            f'Remediation: run the terraform_apply step (ansible-playbook playbooks/site.yml)')
            return
        cache_key = self.get_cache_key(path)
        cache_enabled = self.get_option('cache')
        data = None
        if cache_enabled and cache:
            entry = self._cache.get(cache_key)
            if isinstance(entry, dict) and entry.get('identity') == identity:
                data = entry.get('outputs')
        if data is None:
            try:
                data = _outputs.read(outputs_path)
            except CheckError as err:
                raise AnsibleParserError(str(err)) from None
            if cache_enabled:
                self._cache[cache_key] = {'identity': identity, 'outputs': data}
        self.populate(data)

    def populate(self, data: dict) -> None:
        """Add the validated outputs' hosts, groups and variables to the inventory."""
        inventory = self.inventory
        prefix = self.get_option('hostvar_prefix') or ''
        compose = self.get_option('compose')
        groups = self.get_option('groups')
        keyed_groups = self.get_option('keyed_groups')
        strict = self.get_option('strict')
        constructed = bool(compose or groups or keyed_groups)
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
