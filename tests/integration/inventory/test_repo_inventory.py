# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The repository's inventory/proxmox_dynamic.yml, from the repository root, with no extra setup."""

from __future__ import annotations

import json
import os
import re

from tests.integration.inventory.conftest import CHECKOUT, write_source

SEED_OUTPUTS = {'nodes': [{'name': 'lab-01', 'ipv4': '192.168.1.10', 'ssh_user': 'ubuntu', 'ssh_port': 22,
                           'groups': ['base', 'docker']}]}
SEED_GRAPH = ['@all:', '|--@ungrouped:', '|--@base:', '|', '|--lab-01', '|--@docker:', '|', '|--lab-01']


def write_state(state_dir, outputs) -> str:
    path = os.path.join(state_dir, 'cache', 'terraform', 'outputs.json')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as handle:
        json.dump(outputs, handle)
    return path


def test_graph_from_repo_root(inventory_run, tmp_path):
    write_state(tmp_path, SEED_OUTPUTS)
    proc = inventory_run('-i', 'inventory/proxmox_dynamic.yml', '--graph', env={'EMINFRA_STATE_DIR': str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == SEED_GRAPH
    assert '[WARNING]' not in proc.stderr


def test_ansible_cfg_default_inventory(inventory_run, tmp_path):
    """ansible.cfg names inventory/proxmox_dynamic.yml, so no -i is needed."""
    write_state(tmp_path, SEED_OUTPUTS)
    proc = inventory_run('--graph', env={'EMINFRA_STATE_DIR': str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == SEED_GRAPH


def test_missing_outputs_warns_once(inventory_run, tmp_path):
    proc = inventory_run('--graph', env={'EMINFRA_STATE_DIR': str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['@all:', '|--@ungrouped:']
    assert proc.stderr.count('[WARNING]') == 1
    expected = os.path.join(str(tmp_path), 'cache', 'terraform', 'outputs.json')
    assert f'terraform_outputs_valid: {expected}: not found' in re.sub(r'\s+', ' ', proc.stderr)


def test_extra_var_state_dir_wins_over_environment(inventory_run, tmp_path):
    write_state(tmp_path / 'env', {'nodes': [dict(SEED_OUTPUTS['nodes'][0], name='from-env')]})
    write_state(tmp_path / 'var', SEED_OUTPUTS)
    proc = inventory_run('--graph', '-e', f'eminfra_state_dir={tmp_path / "var"}',
                         env={'EMINFRA_STATE_DIR': str(tmp_path / 'env')})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == SEED_GRAPH


def test_relative_state_dir_resolves_against_project_root(inventory_run, tmp_path):
    """From any working directory, a relative EMINFRA_STATE_DIR means <project root>/<it>."""
    relative = 'tests/integration/inventory/golden/state_dir/pipeline-state'
    proc = inventory_run('-i', os.path.join(CHECKOUT, 'inventory', 'proxmox_dynamic.yml'), '--graph',
                         env={'EMINFRA_STATE_DIR': relative}, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert '|--lab-02' in proc.stdout.split()


def test_values_are_never_templated(inventory_run, tmp_path):
    """A template-looking value from outputs.json stays text when a play reads it."""
    marker = tmp_path / 'lookup-ran'
    outputs = {'nodes': [{'name': 'lab-01', 'ipv4': '192.168.1.10', 'ssh_user': 'ubuntu', 'groups': ['base'],
                          'description': f"{{{{ lookup('pipe', 'touch {marker}') }}}}{{{{ 7 * 6 }}}}"}]}
    write_state(tmp_path, outputs)
    proc = inventory_run('lab-01', '-m', 'ansible.builtin.debug', '-a', 'msg={{ eminfra_description }}',
                         env={'EMINFRA_STATE_DIR': str(tmp_path)}, command='ansible')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '{{ 7 * 6 }}' in proc.stdout
    assert '42' not in proc.stdout
    assert not marker.exists()


def _cache_config(cache_dir) -> str:
    return f'cache: true\ncache_plugin: ansible.builtin.jsonfile\ncache_connection: {cache_dir}\ncache_timeout: 3600\n'


def _cache_files(cache_dir) -> list[str]:
    return sorted(os.listdir(cache_dir)) if os.path.isdir(cache_dir) else []


def _rename_cached_host(entry_path: str, name: str) -> None:
    """Edit the cached outputs (ansible-core 2.19's jsonfile cache wraps the entry in __payload__)."""
    with open(entry_path, encoding='utf-8') as handle:
        stored = json.load(handle)
    entry = json.loads(stored['__payload__']) if '__payload__' in stored else stored
    entry['outputs']['nodes'][0]['name'] = name
    if '__payload__' in stored:
        stored['__payload__'] = json.dumps(entry)
    else:
        stored = entry
    with open(entry_path, 'w', encoding='utf-8') as handle:
        json.dump(stored, handle)


def test_cache_serves_only_the_same_file(inventory_run, tmp_path):
    cache_dir = tmp_path / 'cache'
    source = write_source(tmp_path / 'inv', SEED_OUTPUTS, config=_cache_config(cache_dir))
    listed, dummy = inventory_run.list(source)
    assert list(listed['_meta']['hostvars']) == ['lab-01']
    files = _cache_files(cache_dir)
    assert len(files) == 1

    # the cache is really read: an entry with the file's identity is served as it is
    _rename_cached_host(os.path.join(cache_dir, files[0]), 'served-from-cache')
    listed, dummy = inventory_run.list(source)
    assert list(listed['_meta']['hostvars']) == ['served-from-cache']

    # a new outputs.json (written aside and renamed, as the pipeline writes it) is read, not the cache
    outputs_path = tmp_path / 'inv' / 'outputs.json'
    new = {'nodes': [dict(SEED_OUTPUTS['nodes'][0], name='lab-09')]}
    (tmp_path / 'inv' / 'outputs.json.new').write_text(json.dumps(new), encoding='utf-8')
    os.replace(tmp_path / 'inv' / 'outputs.json.new', outputs_path)
    listed, dummy = inventory_run.list(source)
    assert list(listed['_meta']['hostvars']) == ['lab-09']

    # rewritten in place with the same size: the modification time differs
    info = os.stat(outputs_path)
    outputs_path.write_text(json.dumps(new).replace('lab-09', 'lab-07'), encoding='utf-8')
    os.utime(outputs_path, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000))
    assert os.stat(outputs_path).st_size == info.st_size
    listed, dummy = inventory_run.list(source)
    assert list(listed['_meta']['hostvars']) == ['lab-07']


def test_flush_cache_rereads(inventory_run, tmp_path):
    cache_dir = tmp_path / 'cache'
    source = write_source(tmp_path / 'inv', SEED_OUTPUTS, config=_cache_config(cache_dir))
    inventory_run.list(source)
    _rename_cached_host(os.path.join(cache_dir, _cache_files(cache_dir)[0]), 'served-from-cache')
    proc = inventory_run('-i', source, '--list', '--flush-cache')
    assert proc.returncode == 0, proc.stderr
    assert list(json.loads(proc.stdout)['_meta']['hostvars']) == ['lab-01']
