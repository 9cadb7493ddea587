# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""eminfra.pipeline.template_fetch as Ansible runs it: check mode, diff, idempotence, failures, docs."""

from __future__ import annotations

import json
import os

from tests.ansible_run import run_doc, run_playbook
from tests.pvesim.mirror_fixtures import UBUNTU_DIR, UBUNTU_PATH

PLAYBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fetch_module.yml')


def variables(mirror, **extra):
    values = {'fetch_url': mirror.url_for(UBUNTU_PATH), 'fetch_checksum': f'sha256:{mirror.url_for(UBUNTU_DIR)}/SHA256SUMS'}
    values.update(extra)
    return ['-e', json.dumps(values)]


def test_check_diff_then_fetch_then_unchanged(clean_mirror, tmp_path):
    state = tmp_path / 'state'
    manifest = state / 'cache' / 'templates' / 'manifest.json'
    check = run_playbook(PLAYBOOK, '--check', '--diff', *variables(clean_mirror), state_dir=str(state))
    assert check.rc == 0, check.output
    result = check.result('Fetch the artefact')
    assert result['changed'] is True and result['bytes_transferred'] == 0 and 'would fetch' in result['msg']
    assert 'fetched from' in check.stdout  # the diff is shown
    assert not manifest.exists() and clean_mirror.log() == []

    first = run_playbook(PLAYBOOK, '--diff', *variables(clean_mirror), state_dir=str(state))
    assert first.rc == 0, first.output
    result = first.result('Fetch the artefact')
    assert result['changed'] is True and result['bytes_transferred'] == clean_mirror.artefacts[UBUNTU_PATH]
    assert result['path'] == str(state / 'cache' / 'templates' / 'noble-server-cloudimg-amd64.img')
    assert '"checksum_source": "published"' in first.stdout  # diff of the manifest entry
    assert json.loads(manifest.read_text())['ubuntu']['sha256'] == result['sha256']

    second = run_playbook(PLAYBOOK, *variables(clean_mirror), state_dir=str(state))
    assert second.rc == 0, second.output
    result = second.result('Fetch the artefact')
    assert result['changed'] is False and result['bytes_transferred'] == 0
    check_again = run_playbook(PLAYBOOK, '--check', *variables(clean_mirror), state_dir=str(state))
    assert check_again.result('Fetch the artefact')['changed'] is False


def test_failure_is_one_operator_line(clean_mirror, tmp_path):
    clean_mirror.fault(UBUNTU_PATH, wrong_body=True)
    run = run_playbook(PLAYBOOK, *variables(clean_mirror), state_dir=str(tmp_path / 'state'))
    assert run.rc != 0
    entry, = run.task('Fetch the artefact')
    result = entry['result']
    assert entry['status'] == 'failed' and result['failed_check'] == 'template_checksum'
    assert result['msg'].startswith('template_checksum: GET ') and 'Remediation:' in result['msg']
    assert 'Traceback' not in run.stdout + run.stderr
    assert not (tmp_path / 'state' / 'cache' / 'templates' / 'noble-server-cloudimg-amd64.img').exists()


def test_ansible_doc():
    doc = run_doc('eminfra.pipeline.template_fetch', '--json')
    assert doc.rc == 0, doc.output
    module = json.loads(doc.stdout)['eminfra.pipeline.template_fetch']
    options = module['doc']['options']
    assert {'name', 'type', 'url', 'checksum', 'filename', 'dest_dir', 'manifest', 'force', 'timeout', 'retries',
            'validate_certs', 'ca_path', 'proxmox', 'state_dir', 'verify', 'progress_file', 'needed_by',
            'intent_nodes_file'} == set(options)
    assert set(options['proxmox']['suboptions']) >= {'env_file', 'storage', 'intent_file', 'content', 'method'}
    # Without a storage the artefact goes to the intent's template_storage.
    assert not options['proxmox']['suboptions']['storage'].get('required')
    assert {'path', 'sha256', 'size', 'bytes_transferred', 'resumed', 'elapsed'} <= set(module['return'])
    assert module['doc']['attributes']['check_mode']['support'] == 'full'
