# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import jsonschema
import pytest

from ansible_collections.eminfra.pipeline.plugins.module_utils import _contracts
from ansible_collections.eminfra.pipeline.plugins.module_utils._contracts import (
    INTENT_SCHEMA,
    LATEST_ENV_REQUIRED,
    LATEST_ENV_SCHEMA,
    MANIFEST_SCHEMA,
    OUTPUTS_SCHEMA,
    PROXMOX_ENV_SCHEMA,
    ContractError,
    field_path,
    is_secret_key,
    schema_errors,
    validate,
)
from tests.tools import gen_schema

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))

# The seed contract's own examples.
SEED_MANIFEST = {
    'generated_at': '2026-01-30T22:00:00+13:00',
    'ubuntu': {'type': 'vm', 'source': 'url-or-repo', 'filename': 'ubuntu-22.04-template.img',
               'path': 'state/cache/templates/ubuntu-22.04-template.img', 'proxmox_template_id': 'optional'},
    'talos': {'type': 'iso', 'source': 'url-or-repo', 'filename': 'talos-latest.iso',
              'path': 'state/cache/templates/talos-latest.iso', 'proxmox_template_id': 'optional'},
}
SEED_OUTPUTS = {'nodes': [{'name': 'lab-01', 'ipv4': '192.168.1.10', 'ssh_user': 'ubuntu', 'ssh_port': 22,
                           'groups': ['base', 'docker']}]}
PROXMOX_ENV = {'PROXMOX_API_URL': 'https://127.0.0.1:8006', 'PROXMOX_NODE': 'pve',
               'PROXMOX_TOKEN_ID': 'pipeline@pve!full', 'PROXMOX_TOKEN_SECRET': 'a-secret'}


@pytest.mark.parametrize('schema', [PROXMOX_ENV_SCHEMA, MANIFEST_SCHEMA, OUTPUTS_SCHEMA, LATEST_ENV_SCHEMA,
                                    INTENT_SCHEMA])
def test_schemas_are_valid_2020_12(schema):
    assert schema['$schema'] == 'https://json-schema.org/draft/2020-12/schema'
    jsonschema.Draft202012Validator.check_schema(schema)


def test_seed_examples_are_valid():
    validate(SEED_MANIFEST, MANIFEST_SCHEMA, 'templates_present')
    validate(SEED_OUTPUTS, OUTPUTS_SCHEMA, 'terraform_outputs_valid')
    validate(PROXMOX_ENV, PROXMOX_ENV_SCHEMA, 'proxmox_env_valid')


def test_error_starts_with_check_and_names_the_field():
    outputs = {'nodes': [copy.deepcopy(SEED_OUTPUTS['nodes'][0]) for dummy in range(3)]}
    outputs['nodes'][2]['ssh_port'] = 70000
    with pytest.raises(ContractError) as err:
        validate(outputs, OUTPUTS_SCHEMA, 'terraform_outputs_valid')
    assert str(err.value) == 'terraform_outputs_valid: nodes[2].ssh_port: 70000 is greater than 65535'
    assert err.value.errors == [('nodes[2].ssh_port', '70000 is greater than 65535')]


def test_error_with_source_and_remediation():
    with pytest.raises(ContractError) as err:
        validate({'nodes': [{'name': 'a'}]}, OUTPUTS_SCHEMA, 'terraform_outputs_valid',
                 source='state/cache/terraform/outputs.json', remediation='re-run terraform_apply')
    assert str(err.value) == (
        'terraform_outputs_valid: nodes[0].ipv4: missing required key; nodes[0].ssh_user: missing required key; '
        'nodes[0].groups: missing required key (in state/cache/terraform/outputs.json). '
        'Remediation: re-run terraform_apply')
    assert err.value.result()['failed_check'] == 'terraform_outputs_valid'


def test_errors_are_ordered_by_numeric_index():
    nodes = [copy.deepcopy(SEED_OUTPUTS['nodes'][0]) for dummy in range(12)]
    nodes[10]['ipv4'] = 'x'
    nodes[2]['ipv4'] = 'y'
    paths = [path for path, dummy in schema_errors({'nodes': nodes}, OUTPUTS_SCHEMA)]
    assert paths == ['nodes[2].ipv4', 'nodes[10].ipv4']


def test_proxmox_env_errors():
    env = dict(PROXMOX_ENV, PROXMOX_TOKEN_ID='pipeline-full', PROXMOX_TLS_VERIFY='yes')
    del env['PROXMOX_TOKEN_SECRET']
    errors = dict(schema_errors(env, PROXMOX_ENV_SCHEMA))
    assert errors['PROXMOX_TOKEN_SECRET'] == 'missing required key'
    assert errors['PROXMOX_TOKEN_ID'].startswith("'pipeline-full' does not match")
    assert errors['PROXMOX_TLS_VERIFY'] == "'yes' is not one of 'true', 'false'"


def test_manifest_extensions():
    manifest = copy.deepcopy(SEED_MANIFEST)
    manifest['ubuntu'].update(sha256='0' * 64, size=10, checksum_source='published',
                              fetched_at='2026-01-30T09:00:00Z', proxmox_volid='local:import/u.img')
    validate(manifest, MANIFEST_SCHEMA, 'templates_present')
    manifest['talos']['sha256'] = 'ABC'
    manifest['talos']['fetched_at'] = '2026-01-30T09:00:00'  # no UTC offset
    errors = dict(schema_errors(manifest, MANIFEST_SCHEMA))
    assert set(errors) == {'talos.sha256', 'talos.fetched_at'}


def latest(**extra):
    values = {key: '' for key in LATEST_ENV_REQUIRED}
    values.update(RUN_ID='20260130T090000Z-a1b2c3', RUN_TIMESTAMP='2026-01-30T22:00:00+13:00', DRY_RUN='false')
    values.update(extra)
    return values


def test_latest_env_schema():
    validate(latest(LAST_STEP_COMPLETED='templates', RUN_STATUS='running'), LATEST_ENV_SCHEMA, 'latest_env_valid')
    errors = dict(schema_errors(latest(RUN_ID='today', LAST_STEP_COMPLETED='deploy', PROXMOX_TOKEN_SECRET='x'),
                                LATEST_ENV_SCHEMA))
    assert errors['RUN_ID'].startswith("'today' does not match")
    assert errors['LAST_STEP_COMPLETED'].startswith("'deploy' is not one of ''")
    assert errors[''] == "'PROXMOX_TOKEN_SECRET' is not allowed here"
    missing = latest()
    del missing['TERRAFORM_WORKDIR']
    assert schema_errors(missing, LATEST_ENV_SCHEMA) == [('TERRAFORM_WORKDIR', 'missing required key')]


def test_intent_schema_rejects_unknown_keys():
    errors = schema_errors({'nodes': [{'name': 'cp-1', 'role': 'controlplane', 'os': 'talos', 'vmid': 101,
                                       'cores': 2, 'memory': 4096, 'disk': 20, 'ipv4': '10.0.0.11',
                                       'colour': 'red'}]}, INTENT_SCHEMA)
    assert ('nodes[0]', "unknown key(s): 'colour' was unexpected") in errors


@pytest.mark.parametrize('key, secret', [
    ('PROXMOX_TOKEN_SECRET', True), ('DB_PASSWORD', True), ('SSH_PRIVATE_KEY', True), ('TOKEN_VALUE', True),
    ('registry_api_key', True), ('AWS_CREDENTIALS', True), ('PROXMOX_TOKEN_ID', False), ('RUN_ID', False),
    ('TERRAFORM_WORKDIR', False),
])
def test_is_secret_key(key, secret):
    assert is_secret_key(key) is secret


def test_field_path():
    assert field_path(['nodes', 2, 'ssh_port']) == 'nodes[2].ssh_port'
    assert field_path([]) == ''
    assert field_path([0, 'a']) == '[0].a'


def test_schema_json_is_current():
    with open(os.path.join(ROOT, 'schema.json'), encoding='utf-8') as handle:
        text = handle.read()
    assert text == gen_schema.render(), 'schema.json is stale: run python -m tests.tools.gen_schema'
    assert json.loads(text) == _contracts.intent_schema_document()


def test_jsonschema_is_imported_on_first_use():
    """Importing _contracts leaves jsonschema alone (ansible-inventory pays for it otherwise); modules still learn whether it is there."""
    code = ('import sys\n'
            'from ansible_collections.eminfra.pipeline.plugins.module_utils import _contracts\n'
            'assert "jsonschema" not in sys.modules\n'
            'from ansible_collections.eminfra.pipeline.plugins.module_utils._contracts import HAS_JSONSCHEMA, JSONSCHEMA_IMPORT_ERROR\n'
            'assert HAS_JSONSCHEMA is True and JSONSCHEMA_IMPORT_ERROR is None and "jsonschema" in sys.modules\n'
            'assert _contracts.schema_errors({"a": 1}, {"type": "object", "required": ["b"]}) == [("b", "missing required key")]\n')
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
    proc = subprocess.run([sys.executable, '-c', code], cwd=root, capture_output=True, text=True, check=False,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join((os.path.join(root, '.collections'), root))))
    assert proc.returncode == 0, proc.stderr
