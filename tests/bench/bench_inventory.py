# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark of the proxmox_dynamic inventory plugin: parse time against a stock-Constructable baseline.

One outputs.json of --hosts nodes (default 1,000; all in `base`, every second one also in
`docker`) is parsed, in this one process, by:
  - proxmox_dynamic with a compose and keyed_groups config, and
  - a minimal inventory plugin defined below (MINIMAL_PLUGIN): json.load of the same file, the
    hosts, their groups, the three connection variables and the vmid variable the config reads,
    then the same compose and keyed_groups through ansible-core's stock Constructable methods.
Both are loaded through ansible-core's inventory plugin loader and parse into a fresh
InventoryData each time. After one warm-up parse each, the two run --repeat times, interleaved;
the median CPU time (process time) counts, and the ratio proxmox_dynamic / minimal plugin is
the figure (goal <= 1.2). Wall times are printed beside it. What the ratio buys: the outputs
contract's validation (_outputs.read), the unsafe marking and the host variable name checks.

    python tests/bench/bench_inventory.py [--hosts 1000] [--repeat 5]

Results also land in tests/output/bench/bench_inventory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ['ANSIBLE_CONFIG'] = os.path.join(ROOT, 'ansible.cfg')
GOAL = 1.2

MINIMAL_PLUGIN = '''
from __future__ import annotations

DOCUMENTATION = """
name: minimal_constructed
short_description: baseline, reads outputs.json and runs the stock constructed features
description: [baseline]
extends_documentation_fragment: [ansible.builtin.constructed]
options:
  plugin: {description: plugin name, required: true, choices: [minimal_constructed]}
  path: {description: outputs.json, type: str, required: true}
"""

import json

from ansible.plugins.inventory import BaseInventoryPlugin, Constructable


class InventoryModule(BaseInventoryPlugin, Constructable):
    NAME = 'minimal_constructed'

    def verify_file(self, path):
        return path.endswith('minimal_constructed.yml')

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        with open(self.get_option('path'), encoding='utf-8') as handle:
            data = json.load(handle)
        strict = self.get_option('strict')
        for node in data['nodes']:
            name = node['name']
            inventory.add_host(name)
            host = inventory.get_host(name)
            host.set_variable('ansible_host', node['ipv4'])
            host.set_variable('ansible_user', node['ssh_user'])
            host.set_variable('ansible_port', node.get('ssh_port', 22))
            host.set_variable('eminfra_vmid', node['vmid'])
            for group in node['groups']:
                inventory.add_group(group)
                inventory.add_child(group, name)
            self._set_composite_vars(self.get_option('compose'), host.get_vars(), name, strict=strict)
            self._add_host_to_keyed_groups(self.get_option('keyed_groups'), host.get_vars(), name, strict=strict,
                                           fetch_hostvars=False)
'''

CONSTRUCTED = '''strict: true
compose:
  node_vmid: eminfra_vmid
  ssh_target: ansible_user ~ '@' ~ ansible_host
keyed_groups:
  - key: ansible_user
    prefix: user
  - key: "'s' ~ eminfra_vmid % 4"
    prefix: shard
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


def write_sources(work: str, count: int) -> dict[str, str]:
    """The outputs.json and the two inventory sources reading it: case name -> source path."""
    outputs = os.path.join(work, 'outputs.json')
    with open(outputs, 'w', encoding='utf-8') as handle:
        json.dump({'schema_version': 1, 'nodes': nodes(count), 'talos_nodes': []}, handle)
    plugin_dir = os.path.join(work, 'plugins')
    os.makedirs(plugin_dir)
    with open(os.path.join(plugin_dir, 'minimal_constructed.py'), 'w', encoding='utf-8') as handle:
        handle.write(MINIMAL_PLUGIN)
    sources = {'proxmox_dynamic': os.path.join(work, 'proxmox_dynamic.yml'),
               'minimal_constructed': os.path.join(work, 'minimal_constructed.yml')}
    with open(sources['proxmox_dynamic'], 'w', encoding='utf-8') as handle:
        handle.write(f'plugin: eminfra.pipeline.proxmox_dynamic\noutputs_path: {outputs}\n{CONSTRUCTED}')
    with open(sources['minimal_constructed'], 'w', encoding='utf-8') as handle:
        handle.write(f'plugin: minimal_constructed\npath: {outputs}\n{CONSTRUCTED}')
    return sources


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--hosts', type=int, default=1000)
    parser.add_argument('--repeat', type=int, default=5)
    args = parser.parse_args()

    # imported here: ANSIBLE_CONFIG (set above) must be in place before ansible-core reads its configuration
    from ansible.inventory.data import InventoryData  # pylint: disable=import-outside-toplevel
    from ansible.parsing.dataloader import DataLoader  # pylint: disable=import-outside-toplevel
    from ansible.plugins.loader import init_plugin_loader, inventory_loader  # pylint: disable=import-outside-toplevel

    init_plugin_loader()
    with tempfile.TemporaryDirectory(prefix='bench-inventory-') as work:
        sources = write_sources(work, args.hosts)
        inventory_loader.add_directory(os.path.join(work, 'plugins'))
        loader = DataLoader()
        names = {'proxmox_dynamic': 'eminfra.pipeline.proxmox_dynamic', 'minimal_constructed': 'minimal_constructed'}

        def parse(case: str) -> tuple[float, float]:
            plugin = inventory_loader.get(names[case])
            inventory = InventoryData()
            cpu, wall = time.process_time(), time.perf_counter()
            plugin.parse(inventory, loader, sources[case], cache=False)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            hosts = [name for name in inventory.hosts if 'node_vmid' in inventory.get_host(name).vars]
            if len(hosts) != args.hosts or len(inventory.groups['user_ubuntu'].hosts) != args.hosts:
                raise SystemExit(f'bench: {case} built {len(hosts)} composed hosts, not {args.hosts}')
            return cpu, wall

        for case in names:
            parse(case)  # warm-up: imports, the plugins' documentation, jsonschema
        cpu: dict[str, list[float]] = {case: [] for case in names}
        wall: dict[str, list[float]] = {case: [] for case in names}
        for dummy in range(args.repeat):
            for case in names:
                used, elapsed = parse(case)
                cpu[case].append(used)
                wall[case].append(elapsed)

    cpu_median = {case: statistics.median(values) for case, values in cpu.items()}
    wall_median = {case: statistics.median(values) for case, values in wall.items()}
    for case in names:
        print(f'{args.hosts:>6} hosts  {case:<20} cpu {cpu_median[case]:6.3f} s  wall {wall_median[case]:6.3f} s  '
              f'(cpu runs: {", ".join(f"{value:.3f}" for value in cpu[case])})')
    ratio = cpu_median['proxmox_dynamic'] / cpu_median['minimal_constructed']
    wall_ratio = wall_median['proxmox_dynamic'] / wall_median['minimal_constructed']
    print(f'{args.hosts:>6} hosts  proxmox_dynamic / minimal stock-Constructable plugin: {ratio:5.3f} '
          f'(wall {wall_ratio:5.3f}; goal <= {GOAL}: {"met" if ratio <= GOAL else "MISSED"})')
    out_dir = os.path.join(ROOT, 'tests', 'output', 'bench')
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'bench_inventory.json'), 'w', encoding='utf-8') as handle:
        json.dump({'hosts': args.hosts, 'repeat': args.repeat, 'cpu_seconds': cpu_median, 'wall_seconds': wall_median,
                   'ratio': ratio, 'wall_ratio': wall_ratio, 'goal': GOAL}, handle, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
