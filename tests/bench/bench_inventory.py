# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark of the proxmox_dynamic inventory plugin: `ansible-inventory --graph` wall time.

At 1,000 and 10,000 nodes (all in `base`, every second one also in `docker`), in one run:
  - the same hosts as a static YAML inventory (ansible.builtin.yaml); goal: ratio <= 0.15
  - a minimal inventory plugin that only reads the JSON and adds hosts, groups and the three
    connection variables (an ad-hoc plugin dir in the temp dir); goal: ratio <= 1.2
  - the same minimal plugin doing the same compose/groups/keyed_groups with ansible-core's stock
    Constructable methods (the like-for-like baseline for the constructed case)
  - proxmox_dynamic with default options, and with a compose/groups/keyed_groups config.
The constructed case is reported against the plain minimal plugin (as the goal is worded: it does
no compose at all) and against the minimal plugin with the same constructed config.
Each command runs REPEAT times, interleaved; the median counts. Wall time and CPU time (user+sys
of the ansible-inventory process) are both reported; on a shared, loaded machine the CPU time is
the steadier figure, so the goals are judged on it and the wall-time ratios are printed beside it.

    python tests/bench/bench_inventory.py [--sizes 1000,10000] [--repeat 3] [--profile]

--profile also writes a cProfile of the plugin run at the largest size to tests/output/bench/.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
ANSIBLE_INVENTORY = os.path.join(BIN, 'ansible-inventory')

MINIMAL_PLUGIN = '''
from __future__ import annotations

DOCUMENTATION = """
name: minimal_json
short_description: baseline, reads outputs.json and adds hosts
description: [baseline]
options:
  plugin: {description: plugin name, required: true, choices: [minimal_json]}
  path: {description: outputs.json, type: str, required: true}
"""

import json

from ansible.plugins.inventory import BaseInventoryPlugin


class InventoryModule(BaseInventoryPlugin):
    NAME = 'minimal_json'

    def verify_file(self, path):
        return path.endswith('minimal_json.yml')

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        with open(self.get_option('path'), encoding='utf-8') as handle:
            data = json.load(handle)
        for node in data['nodes']:
            name = node['name']
            inventory.add_host(name)
            inventory.set_variable(name, 'ansible_host', node['ipv4'])
            inventory.set_variable(name, 'ansible_user', node['ssh_user'])
            inventory.set_variable(name, 'ansible_port', node.get('ssh_port', 22))
            for group in node['groups']:
                inventory.add_group(group)
                inventory.add_child(group, name)
'''

# The same baseline with ansible-core's stock constructed features (Constructable's own
# _set_composite_vars, _add_host_to_composed_groups, _add_host_to_keyed_groups, as
# ansible.builtin.constructed calls them), the vmid variable the config reads, and the same config: the fair baseline for the
# compose/groups/keyed_groups case, which the plain minimal plugin does not do at all.
MINIMAL_CONSTRUCTED_PLUGIN = MINIMAL_PLUGIN.replace(
    "name: minimal_json\n", "name: minimal_json_constructed\nextends_documentation_fragment: [ansible.builtin.constructed]\n"
).replace(
    "choices: [minimal_json]", "choices: [minimal_json_constructed]"
).replace(
    "import BaseInventoryPlugin\n", "import BaseInventoryPlugin, Constructable\n"
).replace(
    "class InventoryModule(BaseInventoryPlugin):", "class InventoryModule(BaseInventoryPlugin, Constructable):"
).replace(
    "NAME = 'minimal_json'", "NAME = 'minimal_json_constructed'"
).replace(
    "endswith('minimal_json.yml')", "endswith('minimal_json_constructed.yml')"
).replace(
    """                inventory.add_child(group, name)
""", """                inventory.add_child(group, name)
            inventory.set_variable(name, 'eminfra_vmid', node['vmid'])
            strict = self.get_option('strict')
            variables = inventory.get_host(name).get_vars()
            self._set_composite_vars(self.get_option('compose'), variables, name, strict=strict)
            self._add_host_to_composed_groups(self.get_option('groups'), variables, name, strict=strict)
            self._add_host_to_keyed_groups(self.get_option('keyed_groups'), variables, name, strict=strict)
""")

CONSTRUCTED = '''
strict: true
compose:
  node_vmid: eminfra_vmid
  ssh_target: ansible_user ~ '@' ~ ansible_host
groups:
  even: eminfra_vmid % 2 == 0
keyed_groups:
  - key: ansible_user
    prefix: user
'''


def nodes(count: int) -> list[dict]:
    return [{
        'name': f'node-{index:05d}',
        'ipv4': f'10.{index // 65536}.{(index // 256) % 256}.{index % 256}',
        'ssh_user': 'ubuntu',
        'ssh_port': 22,
        'groups': ['base', 'docker'] if index % 2 else ['base'],
        'vmid': 1000 + index,
    } for index in range(count)]


def write_cases(work: str, count: int) -> dict[str, tuple[list[str], dict]]:
    """The four inventories of ``count`` hosts: name -> (ansible-inventory argv, extra env)."""
    base = os.path.join(work, str(count))
    os.makedirs(base)
    outputs = os.path.join(base, 'outputs.json')
    data = nodes(count)
    with open(outputs, 'w', encoding='utf-8') as handle:
        json.dump({'schema_version': 1, 'nodes': data}, handle)

    static = {'all': {'children': {
        'base': {'hosts': {node['name']: {'ansible_host': node['ipv4'], 'ansible_user': node['ssh_user'],
                                          'ansible_port': node['ssh_port'], 'eminfra_vmid': node['vmid']}
                           for node in data}},
        'docker': {'hosts': {node['name']: None for node in data if 'docker' in node['groups']}},
    }}}
    static_path = os.path.join(base, 'hosts.yml')
    with open(static_path, 'w', encoding='utf-8') as handle:
        # block style, as an operator would write it (a JSON-style flow document parses far faster)
        yaml.dump(static, handle, Dumper=getattr(yaml, 'CSafeDumper', yaml.SafeDumper), default_flow_style=False)

    minimal_dir = os.path.join(work, 'minimal_plugins')
    os.makedirs(minimal_dir, exist_ok=True)
    with open(os.path.join(minimal_dir, 'minimal_json.py'), 'w', encoding='utf-8') as handle:
        handle.write(MINIMAL_PLUGIN)
    minimal_path = os.path.join(base, 'minimal_json.yml')
    with open(minimal_path, 'w', encoding='utf-8') as handle:
        handle.write(f'plugin: minimal_json\npath: {outputs}\n')

    with open(os.path.join(minimal_dir, 'minimal_json_constructed.py'), 'w', encoding='utf-8') as handle:
        handle.write(MINIMAL_CONSTRUCTED_PLUGIN)
    minimal_constructed_path = os.path.join(base, 'minimal_json_constructed.yml')
    with open(minimal_constructed_path, 'w', encoding='utf-8') as handle:
        handle.write(f'plugin: minimal_json_constructed\npath: {outputs}\n{CONSTRUCTED}')

    cases = {
        'static_yaml': ([static_path], {'ANSIBLE_INVENTORY_ENABLED': 'ansible.builtin.yaml'}),
        'minimal_plugin_constructed': ([minimal_constructed_path], {'ANSIBLE_INVENTORY_ENABLED': 'minimal_json_constructed',
                                                                    'ANSIBLE_INVENTORY_PLUGINS': minimal_dir}),
        'minimal_plugin': ([minimal_path], {'ANSIBLE_INVENTORY_ENABLED': 'minimal_json',
                                            'ANSIBLE_INVENTORY_PLUGINS': minimal_dir}),
    }
    for name, extra in (('proxmox_dynamic', ''), ('proxmox_dynamic_constructed', CONSTRUCTED)):
        case_dir = os.path.join(base, name)
        os.makedirs(case_dir)
        config = os.path.join(case_dir, 'proxmox_dynamic.yml')
        with open(config, 'w', encoding='utf-8') as handle:
            handle.write(f'plugin: eminfra.pipeline.proxmox_dynamic\noutputs_path: {outputs}\n{extra}')
        cases[name] = ([config], {})
    return cases


def environment(extra: dict) -> dict:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(('ANSIBLE_', 'EMINFRA_'))}
    env.update({'ANSIBLE_CONFIG': os.path.join(ROOT, 'ansible.cfg'),
                'PATH': BIN + os.pathsep + env.get('PATH', ''), 'PYTHONDONTWRITEBYTECODE': '1'})
    env.update(extra)
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_graph(sources: list[str], extra: dict, count: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ``ansible-inventory --graph``."""
    argv = [ANSIBLE_INVENTORY, '--graph']
    for source in sources:
        argv += ['-i', source]
    cpu_before = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=environment(extra), capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    cpu = _children_cpu() - cpu_before
    hosts = {line.split('|--')[-1] for line in proc.stdout.splitlines() if '|--' in line and '@' not in line}
    if proc.returncode != 0 or len(hosts) != count:
        raise SystemExit(f'bench: {argv} failed (rc {proc.returncode}, {len(hosts)} hosts):\n{proc.stderr}')
    return elapsed, cpu


def profile(sources: list[str], out_path: str) -> None:
    argv = [sys.executable, '-m', 'cProfile', '-o', out_path, ANSIBLE_INVENTORY, '--graph', '-i', sources[0]]
    subprocess.run(argv, cwd=ROOT, env=environment({}), capture_output=True, check=True)
    import pstats  # pylint: disable=import-outside-toplevel
    stats = pstats.Stats(out_path)
    stats.sort_stats('cumulative').print_stats('proxmox_dynamic|inventory/data|inventory/host|inventory/group', 25)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', default='1000,10000')
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--profile', action='store_true')
    parser.add_argument('--cases', default='', help='comma-separated subset of the cases (default: all)')
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(',')]
    order = ('static_yaml', 'minimal_plugin', 'minimal_plugin_constructed', 'proxmox_dynamic', 'proxmox_dynamic_constructed')
    report = []
    selected = [name for name in order if not args.cases or name in args.cases.split(',')]
    with tempfile.TemporaryDirectory(prefix='bench-inventory-') as work:
        for count in sizes:
            cases = write_cases(work, count)
            wall: dict[str, list[float]] = {name: [] for name in order}
            cpu: dict[str, list[float]] = {name: [] for name in order}
            for dummy in range(args.repeat):
                for name in selected:
                    elapsed, used = run_graph(*cases[name], count)
                    wall[name].append(elapsed)
                    cpu[name].append(used)
            wall_median = {name: statistics.median(values) if values else float('nan') for name, values in wall.items()}
            cpu_median = {name: statistics.median(values) if values else float('nan') for name, values in cpu.items()}
            for name in selected:
                print(f'{count:>6} hosts  {name:<28} wall {wall_median[name]:6.2f} s  cpu {cpu_median[name]:6.2f} s  '
                      f'(wall runs: {", ".join(f"{value:.2f}" for value in wall[name])})')
            for name in ('proxmox_dynamic', 'proxmox_dynamic_constructed'):
                if name not in selected:
                    continue
                vs_static = cpu_median[name] / cpu_median['static_yaml']
                vs_minimal = cpu_median[name] / cpu_median['minimal_plugin']
                wall_static = wall_median[name] / wall_median['static_yaml']
                wall_minimal = wall_median[name] / wall_median['minimal_plugin']
                print(f'{count:>6} hosts  {name:<28} / static YAML {vs_static:5.3f} (wall {wall_static:5.3f}; goal <= 0.15: '
                      f'{"met" if vs_static <= 0.15 else "MISSED"})   / minimal plugin {vs_minimal:5.3f} '
                      f'(wall {wall_minimal:5.3f}; goal <= 1.2: {"met" if vs_minimal <= 1.2 else "MISSED"})')
                vs_same = None
                if name == 'proxmox_dynamic_constructed' and 'minimal_plugin_constructed' in selected:
                    # against the minimal plugin doing the same compose/groups/keyed_groups with ansible-core's own code
                    vs_same = cpu_median[name] / cpu_median['minimal_plugin_constructed']
                    print(f'{count:>6} hosts  {name:<28} / minimal plugin with the same constructed config {vs_same:5.3f} '
                          f'(wall {wall_median[name] / wall_median["minimal_plugin_constructed"]:5.3f}; goal <= 1.2: '
                          f'{"met" if vs_same <= 1.2 else "MISSED"})')
                report.append({'hosts': count, 'case': name,
                               'cpu_seconds': cpu_median[name], 'wall_seconds': wall_median[name],
                               'static_yaml_cpu_seconds': cpu_median['static_yaml'],
                               'minimal_plugin_cpu_seconds': cpu_median['minimal_plugin'],
                               'ratio_static_yaml': vs_static, 'ratio_minimal_plugin': vs_minimal,
                               'ratio_minimal_plugin_same_constructed': vs_same,
                               'wall_ratio_static_yaml': wall_static, 'wall_ratio_minimal_plugin': wall_minimal})
            sys.stdout.flush()
        if args.profile:
            out_dir = os.path.join(ROOT, 'tests', 'output', 'bench')
            os.makedirs(out_dir, exist_ok=True)
            for name in ('proxmox_dynamic', 'proxmox_dynamic_constructed'):
                print(f'== cProfile: {name}, {sizes[-1]} hosts')
                profile(cases[name][0], os.path.join(out_dir, f'inventory_{name}.prof'))
    out_dir = os.path.join(ROOT, 'tests', 'output', 'bench')
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'bench_inventory.json'), 'w', encoding='utf-8') as handle:
        json.dump(report, handle, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
