# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Placement of artefacts on Proxmox storage: the real proxmoxer client over HTTPS against pvesim."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from ansible_collections.eminfra.pipeline.plugins.module_utils import _manifest
from ansible_collections.eminfra.pipeline.plugins.module_utils._download import DownloadError
from ansible_collections.eminfra.pipeline.plugins.module_utils._templates import run
from ansible_collections.eminfra.pipeline.plugins.module_utils._envfile import read_env_file
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError
from ansible_collections.eminfra.pipeline.plugins.module_utils._proxmox import ProxmoxClient
from tests.ansible_run import run_playbook
from tests.pvesim.mirror_fixtures import TALOS_ISO_PATH, TALOS_QCOW2_PATH, UBUNTU_DIR, UBUNTU_PATH


@pytest.fixture
def sim(pvesim):
    pvesim.reset()
    return pvesim


def client_for(sim, token='full'):
    return ProxmoxClient.from_env(read_env_file(sim.env_files[token]))


def storage_content(sim, content):
    return {item['volid']: item for item in client_for(sim).get('nodes/pve/storage/local/content', content=content)}


def ubuntu(mirror, tmp_path, sim, **proxmox):
    return {'name': 'ubuntu', 'type': 'vm', 'url': mirror.url_for(UBUNTU_PATH),
            'checksum': f'sha256:{mirror.url_for(UBUNTU_DIR)}/SHA256SUMS', 'dest_dir': str(tmp_path), 'retries': 0,
            'proxmox': {'env_file': sim.env_files[proxmox.pop('token', 'full')], 'storage': 'local', **proxmox}}


def secret_of(sim, token='full'):
    return read_env_file(sim.env_files[token])['PROXMOX_TOKEN_SECRET']


def test_download_url_places_qcow2_under_import_and_is_idempotent(clean_mirror, sim, tmp_path):
    result = run(ubuntu(clean_mirror, tmp_path, sim, method='download_url'))
    volid = 'local:import/noble-server-cloudimg-amd64.qcow2'
    assert result['proxmox']['method'] == 'download_url' and result['proxmox']['action'] == 'placed'
    assert result['proxmox']['volid'] == volid and result['changed'] is True
    volume = storage_content(sim, 'import')[volid]
    assert volume['size'] == clean_mirror.artefacts[UBUNTU_PATH]
    # Proxmox fetched it from the mirror itself.
    assert any(e['path'] == UBUNTU_PATH and e['status'] == 200 for e in clean_mirror.log())
    manifest = _manifest.load(str(tmp_path / 'manifest.json'))
    assert manifest['ubuntu']['proxmox_volid'] == volid

    clean_mirror.reset()
    before = (tmp_path / 'manifest.json').read_bytes()
    again = run(ubuntu(clean_mirror, tmp_path, sim, method='download_url'))
    assert again['changed'] is False and again['proxmox']['action'] == 'kept'
    assert again['bytes_transferred'] == 0 and clean_mirror.log() == []
    assert (tmp_path / 'manifest.json').read_bytes() == before
    assert secret_of(sim) not in json.dumps(again) + before.decode()


def test_without_a_storage_the_talos_disk_image_goes_to_the_intents_template_storage(clean_mirror, sim, tmp_path):
    """The role's Talos default (the factory's nocloud qcow2, type qcow2) without proxmox.storage:
    placed by download-url as import content on inventory/dev/cluster.yaml's template_storage, a
    volume a VM disk can import (pvesim checks the qcow2 header as the real server does)."""
    result = run({'name': 'talos', 'type': 'qcow2', 'url': clean_mirror.url_for(TALOS_QCOW2_PATH),
                  'dest_dir': str(tmp_path), 'filename': 'talos-v1.11.5-nocloud-amd64.qcow2',
                  'proxmox': {'env_file': sim.env_files['full']}})
    volid = 'local:import/talos-v1.11.5-nocloud-amd64.qcow2'
    info = result['proxmox']
    assert info['volid'] == volid and info['content'] == 'import' and info['method'] == 'download_url'
    assert info['storage_from'] == 'inventory/dev/cluster.yaml: cluster.proxmox.template_storage'
    assert storage_content(sim, 'import')[volid]['size'] == clean_mirror.artefacts[TALOS_QCOW2_PATH]
    assert _manifest.load(str(tmp_path / 'manifest.json'))['talos']['proxmox_volid'] == volid
    # A VM disk imports it: the volume is import content of a qcow2 image (virtual size 2 GiB).
    volume = client_for(sim).get(f'nodes/pve/storage/local/content/{volid}')
    assert volume['format'] == 'qcow2' and volume['size'] == 2 << 30


def test_upload_places_the_verified_local_file(clean_mirror, sim, tmp_path):
    result = run({'name': 'talos', 'type': 'iso', 'url': clean_mirror.url_for(TALOS_ISO_PATH), 'dest_dir': str(tmp_path),
                  'filename': 'talos-v1.11.5-nocloud-amd64.iso',
                  'proxmox': {'env_file': sim.env_files['full'], 'storage': 'local', 'method': 'upload'}})
    volid = 'local:iso/talos-v1.11.5-nocloud-amd64.iso'
    assert result['proxmox']['method'] == 'upload' and result['proxmox']['volid'] == volid
    assert storage_content(sim, 'iso')[volid]['size'] == clean_mirror.artefacts[TALOS_ISO_PATH]
    # What Proxmox stored is the verified file, byte for byte (pvesim keeps volumes under data_dir/<storage>/).
    stored = os.path.join(sim.data_dir, 'local', 'template', 'iso', 'talos-v1.11.5-nocloud-amd64.iso')
    with open(stored, 'rb') as handle:
        assert hashlib.file_digest(handle, 'sha256').hexdigest() == result['sha256']
    # The mirror served the file once (to template_fetch), never to Proxmox.
    assert len([e for e in clean_mirror.log() if e['path'] == TALOS_ISO_PATH]) == 1


def test_nodownload_token_falls_back_to_upload_with_auto(clean_mirror, sim, tmp_path):
    result = run(ubuntu(clean_mirror, tmp_path, sim, token='nodownload'))
    info = result['proxmox']
    assert info['method'] == 'upload'
    assert info['fallback'].startswith('download-url refused') and 'Permission check failed' in info['fallback']
    assert 'local:import/noble-server-cloudimg-amd64.qcow2' in storage_content(sim, 'import')
    assert secret_of(sim, 'nodownload') not in json.dumps(result)


def test_nodownload_token_with_download_url_only_fails_with_privileges_check(clean_mirror, sim, tmp_path):
    with pytest.raises(Exception) as info:
        run(ubuntu(clean_mirror, tmp_path, sim, token='nodownload', method='download_url'))
    message = str(info.value)
    assert message.startswith('token_privileges') and 'download-url' in message
    assert secret_of(sim, 'nodownload') not in message
    # The local artefact is verified and recorded; the manifest does not claim a Proxmox volume.
    manifest = _manifest.load(str(tmp_path / 'manifest.json'))
    assert manifest['ubuntu']['checksum_source'] == 'published' and 'proxmox_volid' not in manifest['ubuntu']
    # The next run (with a token that may place it) transfers nothing from the mirror again.
    clean_mirror.reset()
    result = run(ubuntu(clean_mirror, tmp_path, sim, method='upload'))
    assert result['bytes_transferred'] == 0 and result['proxmox']['action'] == 'placed'
    assert _manifest.load(str(tmp_path / 'manifest.json'))['ubuntu']['proxmox_volid'].startswith('local:import/')


def test_existing_volume_of_other_size_is_refused_unless_forced(clean_mirror, sim, tmp_path):
    path = '/scratch/place/disk.qcow2'
    clean_mirror.add(path, 1 << 20)
    params = {'name': 'other', 'type': 'qcow2', 'url': clean_mirror.url_for(path), 'dest_dir': str(tmp_path),
              'proxmox': {'env_file': sim.env_files['full'], 'storage': 'local', 'method': 'upload'}}
    run(json.loads(json.dumps(params)))
    clean_mirror.add(path, 2 << 20)
    params['dest_dir'] = str(tmp_path / 'second')  # another checkout: its own manifest, a new first fetch
    with pytest.raises(DownloadError) as info:
        run(json.loads(json.dumps(params)))
    assert str(info.value).startswith('template_placement') and 'exists with size' in str(info.value)
    params['proxmox']['force'] = True
    result = run(json.loads(json.dumps(params)))
    assert storage_content(sim, 'import')['local:import/disk.qcow2']['size'] == 2 << 20
    assert result['proxmox']['action'] == 'placed'


def test_check_mode_plans_placement_without_touching_proxmox(clean_mirror, sim, tmp_path):
    run({'name': 'talos', 'type': 'iso', 'url': clean_mirror.url_for(TALOS_ISO_PATH), 'dest_dir': str(tmp_path)})
    result = run({'name': 'talos', 'type': 'iso', 'url': clean_mirror.url_for(TALOS_ISO_PATH), 'dest_dir': str(tmp_path),
                  'proxmox': {'env_file': sim.env_files['full'], 'storage': 'local'}}, check_mode=True)
    assert result['changed'] is True and result['proxmox']['action'] == 'would_place'
    assert 'local:iso/nocloud-amd64.iso' not in storage_content(sim, 'iso')
    assert 'proxmox_volid' not in (tmp_path / 'manifest.json').read_text()


def test_wrong_extension_for_content_is_refused(clean_mirror, sim, tmp_path):
    with pytest.raises(DownloadError) as info:
        run({'name': 'talos', 'type': 'iso', 'url': clean_mirror.url_for(TALOS_ISO_PATH), 'dest_dir': str(tmp_path),
             'proxmox': {'env_file': sim.env_files['full'], 'storage': 'local', 'content': 'import'}})
    assert str(info.value).startswith('template_placement') and '.qcow2, .raw' in str(info.value)


# ------------------------------------------------------------------ proxmox.env through _proxmox_env

PLACE_PLAYBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'place_module.yml')


def test_a_group_readable_env_file_is_refused_before_any_transfer(clean_mirror, sim, tmp_path):
    """Placement reads proxmox.env like every other consumer: mode 0600 or the step fails with
    proxmox_env_valid, naming the file, before a byte is downloaded."""
    env_file = tmp_path / 'proxmox.env'
    env_file.write_bytes(open(sim.env_files['full'], 'rb').read())
    env_file.chmod(0o640)
    params = ubuntu(clean_mirror, tmp_path / 'templates', sim)
    params['proxmox']['env_file'] = str(env_file)
    with pytest.raises(CheckError) as info:
        run(params)
    assert info.value.check == 'proxmox_env_valid' and info.value.where == str(env_file)
    assert 'mode 0640' in info.value.detail and info.value.remediation == f'chmod 600 {env_file}'
    assert secret_of(sim) not in str(info.value)
    assert clean_mirror.log() == [] and not (tmp_path / 'templates').exists()


def test_the_secret_is_registered_for_no_log(clean_mirror, sim, tmp_path):
    registered: set = set()
    run({'name': 'talos', 'type': 'iso', 'url': clean_mirror.url_for(TALOS_ISO_PATH), 'dest_dir': str(tmp_path),
         'filename': 'talos-v1.11.5-nocloud-amd64.iso',
         'proxmox': {'env_file': sim.env_files['full'], 'storage': 'local', 'method': 'upload'}},
        no_log_values=registered)
    assert registered == {secret_of(sim)}


def test_the_module_masks_the_secret_wherever_it_would_show(clean_mirror, sim, tmp_path):
    """Through Ansible at -vvvv: a file name that happens to contain the secret reaches the result
    (the volume id) and the invocation, and Ansible masks it there because the module registered it."""
    secret = secret_of(sim)
    filename = f'{secret}.iso'
    # The variables in a file: -vvvv echoes the command line, which is not the module's to mask.
    extra_vars = tmp_path / 'vars.json'
    extra_vars.write_text(json.dumps({'fetch_url': clean_mirror.url_for(TALOS_ISO_PATH), 'fetch_filename': filename,
                                      'fetch_dest_dir': str(tmp_path / 'templates'),
                                      'fetch_env_file': sim.env_files['full']}))
    run_ = run_playbook(PLACE_PLAYBOOK, '-vvvv', '-e', f'@{extra_vars}', state_dir=str(tmp_path / 'state'))
    assert run_.rc == 0, run_.output
    result = run_.result('Fetch and place the artefact')
    assert result['proxmox']['volid'] == 'local:iso/********.iso'
    assert f'local:iso/{filename}' in storage_content(sim, 'iso')
    assert secret not in run_.stdout + run_.stderr + json.dumps(run_.results)

    env_file = tmp_path / 'proxmox.env'
    env_file.write_bytes(open(sim.env_files['full'], 'rb').read())
    env_file.chmod(0o644)
    refused = run_playbook(PLACE_PLAYBOOK, '-vvvv', '-e', json.dumps({
        'fetch_url': clean_mirror.url_for(TALOS_ISO_PATH), 'fetch_filename': 'talos.iso',
        'fetch_dest_dir': str(tmp_path / 'other'), 'fetch_env_file': str(env_file)}),
        state_dir=str(tmp_path / 'state'))
    entry, = refused.task('Fetch and place the artefact')
    assert entry['status'] == 'failed' and entry['result']['failed_check'] == 'proxmox_env_valid'
    assert entry['result']['remediation'] == f'chmod 600 {env_file}'
    assert secret not in refused.stdout + refused.stderr
