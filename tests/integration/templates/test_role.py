# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The templates role through real ansible-playbook runs against the artefact mirror and pvesim.

The runs use the role's defaults: only the locations change (the mirror's two base URLs, the
state root with a proxmox.env for pvesim), so these tests hold what an operator gets.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
import yaml

from ansible_collections.eminfra.pipeline.plugins.module_utils import _manifest
from ansible_collections.eminfra.pipeline.plugins.module_utils._templates import CONTENT_FOR_TYPE
from ansible_collections.eminfra.pipeline.plugins.module_utils._envfile import read_env_file
from tests.ansible_run import ROOT, run_playbook
from tests.pvesim.mirror_fixtures import (CONTAINER_TEMPLATE_PATH, LXC_INDEX_DIR, TALOS_FACTORY_PATH, TALOS_QCOW2_PATH,
                                          UBUNTU_DIR, UBUNTU_PATH)

HERE = os.path.dirname(os.path.abspath(__file__))
PLAYBOOK = os.path.join(HERE, 'site_templates.yml')
UBUNTU_VOLID = 'local:import/noble-server-cloudimg-amd64.qcow2'
LXC_VOLID = 'local:vztmpl/ubuntu-24.04-standard_24.04-2_amd64.tar.zst'
TALOS_VOLID = 'local:import/talos-v1.11.5-nocloud-amd64.qcow2'


def mirror_vars(mirror, **extra):
    """The locations only: where the mirror serves the release directory and the image factory."""
    variables = {
        'templates_ubuntu_base_url': mirror.url_for(UBUNTU_DIR),
        'templates_talos_factory_url': mirror.url_for(TALOS_FACTORY_PATH),
        'templates_ubuntu_lxc_index_url': mirror.url_for(LXC_INDEX_DIR),
    }
    variables.update(extra)
    return ['-e', json.dumps(variables)]


def fetch_results(run, skipped=False):
    """The finished template_fetch results; those of an artefact the intent does not need
    (action not_needed: the container template without a container) only with ``skipped``."""
    return [entry for entry in run.results if entry['task'] == 'Check whether the download has ended'
            and entry['result'].get('finished') and (entry['result'].get('action') == 'not_needed') == skipped]


def role_file(*parts):
    with open(os.path.join(ROOT, 'roles', 'templates', *parts), encoding='utf-8') as handle:
        return yaml.safe_load(handle)


def test_role_defaults_are_disk_images_placed_on_the_intents_template_storage():
    """What an operator gets: both artefacts are disk images placed as import content (a VM
    disk's import-from takes nothing else), on the intent's template_storage unless overridden;
    the argument specs say the same as the defaults."""
    defaults = role_file('defaults', 'main.yml')
    assert defaults['templates_talos_image'] == 'nocloud-amd64.qcow2'
    assert defaults['templates_talos_type'] == 'qcow2' and CONTENT_FOR_TYPE[defaults['templates_talos_type']] == 'import'
    assert defaults['templates_ubuntu_url'].endswith('/noble-server-cloudimg-amd64.img')
    assert defaults['templates_ubuntu_type'] == 'vm' and CONTENT_FOR_TYPE[defaults['templates_ubuntu_type']] == 'import'
    # Both URLs derive from the base URLs, so that a mirror needs nothing but those two.
    assert defaults['templates_ubuntu_url'].startswith('{{ templates_ubuntu_base_url }}/')
    assert defaults['templates_ubuntu_checksum'] == 'sha256:{{ templates_ubuntu_base_url }}/SHA256SUMS'
    assert defaults['templates_talos_url'].startswith('{{ templates_talos_factory_url }}/image/')
    assert defaults['templates_proxmox_storage'] == ''  # empty: the intent's template_storage
    assert defaults['templates_intent_cluster_file'] == 'inventory/dev/cluster.yaml'
    options = role_file('meta', 'argument_specs.yml')['argument_specs']['main']['options']
    for name, value in defaults.items():
        assert options[name].get('default') == value, name


@pytest.fixture
def state(pvesim, tmp_path):
    """A state root holding proxmox.env for a reset pvesim (token ``full``), as proxmox_access leaves it."""
    pvesim.reset()
    root = tmp_path / 'state'
    root.mkdir()
    shutil.copy(pvesim.env_files['full'], root / 'proxmox.env')
    os.chmod(root / 'proxmox.env', 0o600)
    return root


def test_role_defaults_place_both_disk_images_on_the_intents_template_storage(clean_mirror, pvesim, state):
    """The defaults with nothing but the mirror's base URLs: the Ubuntu qcow2 .img and the Talos
    nocloud qcow2 are fetched, verified, and placed as import content on the storage the intent
    names, so the manifest gives Terraform a volume to import every VM disk from."""
    first = run_playbook(PLAYBOOK, *mirror_vars(clean_mirror), state_dir=str(state))
    assert first.rc == 0, first.output
    finished = fetch_results(first)
    assert [r['result']['changed'] for r in finished] == [True, True]
    # The dev intent has no container: the container template is neither fetched nor recorded.
    assert [r['result']['action'] for r in fetch_results(first, skipped=True)] == ['not_needed']
    assert not [e for e in clean_mirror.log() if e['path'].startswith(LXC_INDEX_DIR)]
    manifest_path = state / 'cache' / 'templates' / 'manifest.json'
    manifest = json.loads(manifest_path.read_text())
    _manifest.validate_complete(manifest, source=str(manifest_path))
    assert manifest['ubuntu']['type'] == 'vm' and manifest['ubuntu']['checksum_source'] == 'published'
    assert manifest['ubuntu']['source'] == clean_mirror.url_for(UBUNTU_PATH)
    assert manifest['talos']['type'] == 'qcow2' and manifest['talos']['checksum_source'] == 'first_fetch'
    assert manifest['talos']['filename'] == 'talos-v1.11.5-nocloud-amd64.qcow2'
    assert manifest['talos']['source'] == clean_mirror.url_for(TALOS_QCOW2_PATH)
    # Placed on the intent's template_storage (inventory/dev/cluster.yaml: local), as import content.
    with open(os.path.join(ROOT, 'inventory', 'dev', 'cluster.yaml'), encoding='utf-8') as handle:
        assert 'template_storage: local\n' in handle.read()
    assert manifest['ubuntu']['proxmox_volid'] == UBUNTU_VOLID
    assert manifest['talos']['proxmox_volid'] == TALOS_VOLID
    assert [r['result']['proxmox']['storage_from'] for r in finished] == [
        'inventory/dev/cluster.yaml: cluster.proxmox.template_storage'] * 2
    content = {item['volid']: item for item in pvesim.client().nodes('pve').storage('local').content.get()}
    assert content[UBUNTU_VOLID]['size'] == manifest['ubuntu']['size']
    assert content[TALOS_VOLID]['size'] == manifest['talos']['size']
    assert not [volid for volid in content if volid.startswith('local:iso/')]
    latest = read_env_file(str(state / 'runs' / 'latest.env'))
    assert latest['LAST_STEP_COMPLETED'] == 'templates'
    assert latest['TEMPLATE_UBUNTU_IMAGE'] == manifest['ubuntu']['path']
    assert latest['TEMPLATE_TALOS_IMAGE'] == manifest['talos']['path']
    secret = read_env_file(str(state / 'proxmox.env'))['PROXMOX_TOKEN_SECRET']
    assert secret not in first.stdout + first.stderr + json.dumps(first.results) + manifest_path.read_text()

    clean_mirror.reset()
    before = manifest_path.read_bytes()
    second = run_playbook(PLAYBOOK, *mirror_vars(clean_mirror), state_dir=str(state))
    assert second.rc == 0, second.output
    finished = fetch_results(second)
    assert [r['result']['changed'] for r in finished] == [False, False]
    assert [r['result']['bytes_transferred'] for r in finished] == [0, 0]
    assert [r['result']['proxmox']['action'] for r in finished] == ['kept', 'kept']
    assert manifest_path.read_bytes() == before
    assert clean_mirror.log() == []


def test_role_shows_progress_of_a_slow_download(clean_mirror, state):
    clean_mirror.fault(UBUNTU_PATH, throttle=4 << 20)  # 16 MiB at 4 MiB/s: about 4 s
    # This test is about the progress lines: it asks for them every second (default 5).
    run = run_playbook(PLAYBOOK, *mirror_vars(clean_mirror, templates_progress_interval=1), state_dir=str(state))
    assert run.rc == 0, run.output
    shown = [entry['result']['msg'] for entry in run.results if entry['task'] == 'Show the download progress'
             and 'msg' in entry['result']]
    assert shown, run.output
    assert any(msg.startswith('ubuntu: ') and 'of 16.00 MB' in msg and '/s' in msg for msg in shown), shown


def test_role_failure_records_the_failed_step_and_check(clean_mirror, state):
    clean_mirror.fault(TALOS_QCOW2_PATH, status=404)
    run = run_playbook(PLAYBOOK, *mirror_vars(clean_mirror), state_dir=str(state))
    assert run.rc != 0
    assert 'template_download' in run.stdout and '404' in run.stdout
    latest = read_env_file(str(state / 'runs' / 'latest.env'))
    assert latest['LAST_STEP_FAILED'] == 'templates'
    assert latest['LAST_FAILED_CHECK'] == 'template_download'
    assert latest['LAST_STEP_COMPLETED'] == ''
    manifest = json.loads((state / 'cache' / 'templates' / 'manifest.json').read_text())
    assert 'talos' not in manifest and 'ubuntu' in manifest  # only what was verified is recorded
    assert not list((state / 'cache' / 'templates').glob('talos*'))


def test_role_dry_run_fetches_nothing(clean_mirror, state):
    run = run_playbook(PLAYBOOK, *mirror_vars(clean_mirror, eminfra_dry_run=True), state_dir=str(state))
    assert run.rc == 0, run.output
    assert clean_mirror.log() == []
    assert not (state / 'cache' / 'templates' / 'manifest.json').exists()
    latest = read_env_file(str(state / 'runs' / 'latest.env'))
    assert latest['LAST_STEP_COMPLETED'] == ''


def test_role_reads_the_storage_from_the_intent_file_and_the_override_wins(clean_mirror, state, tmp_path):
    """templates_intent_cluster_file names the intent whose template_storage is used;
    templates_proxmox_storage overrides it; without an intent the step stops with intent_valid
    before anything is downloaded."""
    with open(os.path.join(ROOT, 'inventory', 'dev', 'cluster.yaml'), encoding='utf-8') as handle:
        text = handle.read()
    assert 'template_storage: local\n' in text
    elsewhere = tmp_path / 'cluster.yaml'
    elsewhere.write_text(text.replace('template_storage: local\n', 'template_storage: elsewhere\n'))

    # The intent's storage is the one placed on (pvesim has no storage "elsewhere").
    run = run_playbook(PLAYBOOK, *mirror_vars(clean_mirror, templates_intent_cluster_file=str(elsewhere)),
                       state_dir=str(state))
    assert run.rc != 0
    assert "'elsewhere'" in run.stdout or 'storage/elsewhere' in run.stdout, run.output

    # The override wins over the intent.
    run = run_playbook(PLAYBOOK, *mirror_vars(clean_mirror, templates_intent_cluster_file=str(elsewhere),
                                              templates_proxmox_storage='local'), state_dir=str(state))
    assert run.rc == 0, run.output
    manifest = json.loads((state / 'cache' / 'templates' / 'manifest.json').read_text())
    assert manifest['ubuntu']['proxmox_volid'] == UBUNTU_VOLID
    assert manifest['talos']['proxmox_volid'] == TALOS_VOLID
    assert [r['result']['proxmox']['storage_from'] for r in fetch_results(run)] == ['proxmox.storage'] * 2

    clean_mirror.reset()
    fresh = tmp_path / 'fresh'
    fresh.mkdir()
    shutil.copy(state / 'proxmox.env', fresh / 'proxmox.env')
    missing = tmp_path / 'no-such-cluster.yaml'
    run = run_playbook(PLAYBOOK, *mirror_vars(clean_mirror, templates_intent_cluster_file=str(missing)),
                       state_dir=str(fresh))
    assert run.rc != 0
    assert f'intent_valid: {missing}: the cluster intent does not exist' in run.stdout, run.output
    assert 'templates_proxmox_storage' in run.stdout
    assert read_env_file(str(fresh / 'runs' / 'latest.env'))['LAST_FAILED_CHECK'] == 'intent_valid'
    assert clean_mirror.log() == []


def test_role_fetches_the_container_template_only_for_an_intent_with_a_container(clean_mirror, pvesim, state, tmp_path):
    """With a container (guest: lxc) in the nodes intent the role also fetches the Ubuntu
    container template from the appliance index, verifies it against the index's sha512sum,
    places it as vztmpl content, and records it as the manifest's ubuntu_lxc entry (type lxc)
    beside the ubuntu VM image; a second run changes nothing."""
    with open(os.path.join(ROOT, 'inventory', 'dev', 'nodes.yaml'), encoding='utf-8') as handle:
        nodes = yaml.safe_load(handle)
    nodes['nodes'].append({'name': 'util-ct-01', 'role': 'utility', 'os': 'ubuntu', 'guest': 'lxc', 'vmid': 7705,
                           'cores': 1, 'memory': 1024, 'disk': 8, 'ipv4': '10.77.0.41', 'groups': ['base']})
    nodes_file = tmp_path / 'nodes.yaml'
    nodes_file.write_text(yaml.safe_dump(nodes))
    variables = mirror_vars(clean_mirror, templates_intent_nodes_file=str(nodes_file))

    first = run_playbook(PLAYBOOK, *variables, state_dir=str(state))
    assert first.rc == 0, first.output
    assert [r['result']['action'] for r in fetch_results(first)] == ['fetch', 'fetch', 'fetch']
    assert fetch_results(first, skipped=True) == []
    manifest_path = state / 'cache' / 'templates' / 'manifest.json'
    manifest = json.loads(manifest_path.read_text())
    _manifest.validate_complete(manifest, source=str(manifest_path))
    entry = manifest['ubuntu_lxc']
    published = clean_mirror.files[CONTAINER_TEMPLATE_PATH]
    assert entry['type'] == 'lxc' and entry['checksum_source'] == 'published'
    assert entry['checksum_url'] == clean_mirror.url_for(f'{LXC_INDEX_DIR}/aplinfo-pve-9.dat')
    assert entry['sha512'] == published['sha512'] and entry['size'] == published['size']
    assert entry['source'] == clean_mirror.url_for(CONTAINER_TEMPLATE_PATH)
    assert entry['proxmox_volid'] == LXC_VOLID
    assert manifest['ubuntu']['type'] == 'vm' and manifest['ubuntu']['proxmox_volid'] == UBUNTU_VOLID
    content = {item['volid']: item for item in pvesim.client().nodes('pve').storage('local').content.get()}
    assert content[LXC_VOLID]['size'] == published['size'] and content[LXC_VOLID]['content'] == 'vztmpl'

    clean_mirror.reset()
    before = manifest_path.read_bytes()
    second = run_playbook(PLAYBOOK, *variables, state_dir=str(state))
    assert second.rc == 0, second.output
    assert [r['result']['changed'] for r in fetch_results(second)] == [False, False, False]
    assert manifest_path.read_bytes() == before
    assert clean_mirror.log() == []
