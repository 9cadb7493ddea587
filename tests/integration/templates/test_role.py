# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The templates role through real ansible-playbook runs against the artefact mirror and pvesim."""

from __future__ import annotations

import json
import os
import shutil

from ansible_collections.eminfra.pipeline.plugins.module_utils import _manifest
from ansible_collections.eminfra.pipeline.plugins.module_utils._envfile import read_env_file
from tests.ansible_run import run_playbook
from tests.pvesim.mirror_fixtures import TALOS_ISO_PATH, UBUNTU_DIR, UBUNTU_PATH

HERE = os.path.dirname(os.path.abspath(__file__))
PLAYBOOK = os.path.join(HERE, 'site_templates.yml')


def mirror_vars(mirror, **extra):
    variables = {
        'templates_ubuntu_base_url': mirror.url_for(UBUNTU_DIR),
        'templates_talos_factory_url': mirror.url + '/talos',
        'templates_progress_interval': 1,
        'templates_retries': 1,
    }
    variables.update(extra)
    return ['-e', json.dumps(variables)]


def fetch_results(run):
    return [entry for entry in run.results if entry['task'] == 'Check whether the download has ended'
            and entry['result'].get('finished')]


def test_role_fetches_records_and_is_idempotent(clean_mirror, tmp_path):
    state = tmp_path / 'state'
    first = run_playbook(PLAYBOOK, *mirror_vars(clean_mirror), state_dir=str(state))
    assert first.rc == 0, first.output
    finished = fetch_results(first)
    assert [r['result']['changed'] for r in finished] == [True, True]
    manifest_path = state / 'cache' / 'templates' / 'manifest.json'
    manifest = json.loads(manifest_path.read_text())
    _manifest.validate_complete(manifest, source=str(manifest_path))
    assert manifest['ubuntu']['checksum_source'] == 'published'
    assert manifest['talos']['checksum_source'] == 'first_fetch'
    assert manifest['talos']['filename'] == 'talos-v1.11.5-nocloud-amd64.iso'
    assert manifest['talos']['source'] == clean_mirror.url_for(TALOS_ISO_PATH)
    latest = read_env_file(str(state / 'runs' / 'latest.env'))
    assert latest['LAST_STEP_COMPLETED'] == 'templates'
    assert latest['TEMPLATE_UBUNTU_IMAGE'] == manifest['ubuntu']['path']
    assert latest['TEMPLATE_TALOS_IMAGE'] == manifest['talos']['path']

    clean_mirror.reset()
    before = manifest_path.read_bytes()
    second = run_playbook(PLAYBOOK, *mirror_vars(clean_mirror), state_dir=str(state))
    assert second.rc == 0, second.output
    finished = fetch_results(second)
    assert [r['result']['changed'] for r in finished] == [False, False]
    assert [r['result']['bytes_transferred'] for r in finished] == [0, 0]
    assert manifest_path.read_bytes() == before
    assert clean_mirror.log() == []


def test_role_shows_progress_of_a_slow_download(clean_mirror, tmp_path):
    clean_mirror.fault(UBUNTU_PATH, throttle=4 << 20)  # 16 MiB at 4 MiB/s: about 4 s
    run = run_playbook(PLAYBOOK, *mirror_vars(clean_mirror), state_dir=str(tmp_path / 'state'))
    assert run.rc == 0, run.output
    shown = [entry['result']['msg'] for entry in run.results if entry['task'] == 'Show the download progress'
             and 'msg' in entry['result']]
    assert shown, run.output
    assert any(msg.startswith('ubuntu: ') and 'of 16.00 MB' in msg and '/s' in msg for msg in shown), shown


def test_role_failure_records_the_failed_step_and_check(clean_mirror, tmp_path):
    state = tmp_path / 'state'
    clean_mirror.fault(TALOS_ISO_PATH, status=404)
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


def test_role_dry_run_fetches_nothing(clean_mirror, tmp_path):
    state = tmp_path / 'state'
    run = run_playbook(PLAYBOOK, *mirror_vars(clean_mirror, eminfra_dry_run=True), state_dir=str(state))
    assert run.rc == 0, run.output
    assert clean_mirror.log() == []
    assert not (state / 'cache' / 'templates' / 'manifest.json').exists()
    latest = read_env_file(str(state / 'runs' / 'latest.env'))
    assert latest['LAST_STEP_COMPLETED'] == ''


def test_role_places_artefacts_on_proxmox(clean_mirror, pvesim, tmp_path):
    pvesim.reset()
    state = tmp_path / 'state'
    state.mkdir()
    shutil.copy(pvesim.env_files['nodownload'], state / 'proxmox.env')
    os.chmod(state / 'proxmox.env', 0o600)
    variables = mirror_vars(clean_mirror, templates_proxmox_storage='local')
    run = run_playbook(PLAYBOOK, *variables, state_dir=str(state))
    assert run.rc == 0, run.output
    manifest = json.loads((state / 'cache' / 'templates' / 'manifest.json').read_text())
    assert manifest['ubuntu']['proxmox_volid'] == 'local:import/noble-server-cloudimg-amd64.qcow2'
    assert manifest['talos']['proxmox_volid'] == 'local:iso/talos-v1.11.5-nocloud-amd64.iso'
    secret = read_env_file(str(state / 'proxmox.env'))['PROXMOX_TOKEN_SECRET']
    assert secret not in run.stdout + run.stderr + json.dumps(run.results)
    assert secret not in (state / 'cache' / 'templates' / 'manifest.json').read_text()
    again = run_playbook(PLAYBOOK, *variables, state_dir=str(state))
    assert again.rc == 0, again.output
    assert [r['result']['changed'] for r in fetch_results(again)] == [False, False]
    assert [r['result']['proxmox']['action'] for r in fetch_results(again)] == ['kept', 'kept']
