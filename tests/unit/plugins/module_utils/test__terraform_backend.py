# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The state backend settings: terraform_backend.env checks, connection strings, Terraform's errors,
and the runner's argv and environment with the pg backend (a fake run_command)."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.eminfra.pipeline.plugins.module_utils import _terraform_backend as tf_backend
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError
from tests.unit.plugins.module_utils.test__terraform import BIN, FIXTURES, SECRET, FakeTerraform, make_runner
from tests.unit.plugins.module_utils.test__terraform import project  # noqa: F401  pylint: disable=unused-import

PASSWORD = 'p4ss-w0rd-unit'
CONN = f'postgres://eminfra:{PASSWORD}@db.example.org:5433/tfstate?sslmode=verify-full'


def write_env(path, text, mode=0o600):
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def test_load_backend_env_reads_conn_str_and_schema(tmp_path):
    path = write_env(tmp_path / 'terraform_backend.env', f"PG_CONN_STR='{CONN}'\nPG_SCHEMA_NAME=team_a\n")
    backend = tf_backend.load_backend_env(path)
    assert backend.conn_str == CONN and backend.schema_name == 'team_a' and backend.source == path
    assert backend.database == 'db.example.org:5433/tfstate'
    assert backend.init_args() == ['-backend-config=schema_name=team_a']
    assert PASSWORD not in json.dumps(backend.describe()) and CONN not in json.dumps(backend.describe())
    assert backend.env()['PG_CONN_STR'] == CONN and backend.env()['PGAPPNAME'].startswith('eminfra terraform_apply ')
    assert CONN in backend.secrets and PASSWORD in backend.secrets


def test_default_schema_and_key_value_form(tmp_path):
    conn = f"host=10.0.0.5 port=5432 dbname=tf user=ops password='{PASSWORD}' sslmode=require"
    path = write_env(tmp_path / 'b.env', f'PG_CONN_STR="{conn}"\n')
    backend = tf_backend.load_backend_env(path)
    assert backend.schema_name == tf_backend.DEFAULT_SCHEMA
    assert backend.database == '10.0.0.5:5432/tf' and PASSWORD in backend.secrets


@pytest.mark.parametrize('text, mode, check, where', [
    (None, 0o600, 'terraform_backend_env_present', ''),
    (f"PG_CONN_STR='{CONN}'\n", 0o640, 'terraform_backend_env_valid', ''),
    ("PG_SCHEMA_NAME=x\n", 0o600, 'terraform_backend_env_valid', ' PG_CONN_STR'),
    (f"PG_CONN_STR='{CONN}'\nPGPASSWORD=x\n", 0o600, 'terraform_backend_env_valid', ' PGPASSWORD'),
    (f"PG_CONN_STR='{CONN}'\nPG_SCHEMA_NAME='Bad-Name'\n", 0o600, 'terraform_backend_env_valid', ' PG_SCHEMA_NAME'),
    ("PG_CONN_STR=just-a-word\n", 0o600, 'terraform_backend_env_valid', ' PG_CONN_STR'),
])
def test_backend_env_failures_name_file_and_key(tmp_path, text, mode, check, where):
    path = tmp_path / 'terraform_backend.env'
    if text is not None:
        write_env(path, text, mode)
    with pytest.raises(CheckError) as info:
        tf_backend.load_backend_env(str(path))
    assert info.value.check == check
    assert f'{path}{where}' in str(info.value)
    assert PASSWORD not in str(info.value) and info.value.remediation


def test_mode_error_says_chmod(tmp_path):
    path = write_env(tmp_path / 'terraform_backend.env', f"PG_CONN_STR='{CONN}'\n", 0o644)
    with pytest.raises(CheckError) as info:
        tf_backend.load_backend_env(path)
    assert 'mode 0644' in str(info.value) and f'chmod 600 {path}' in str(info.value)
    assert 'connection string' in str(info.value)


def test_recorded_backend(tmp_path):
    assert tf_backend.recorded_backend(str(tmp_path)) is None
    (tmp_path / 'terraform.tfstate').write_text(json.dumps({'backend': {'type': 'pg', 'config': {'conn_str': None}}}))
    assert tf_backend.recorded_backend(str(tmp_path)) == 'pg'
    (tmp_path / 'terraform.tfstate').write_text('not json')
    assert tf_backend.recorded_backend(str(tmp_path)) is None


LOCAL_LOCK = '''
Error: Error acquiring the state lock

Error message: resource temporarily unavailable
Lock Info:
  ID:        3b3c1c6a-1111-2222-3333-444455556666
  Path:      /srv/state/cache/terraform/k3s-dev/terraform.tfstate
  Operation: OperationTypeApply
  Who:       alice@laptop
  Version:   1.11.4
  Created:   2026-12-04 01:26:00 +0000 UTC
  Info:

Terraform acquires a state lock to protect the state
'''


def test_classify_local_lock_names_the_holder():
    check, detail, remediation = tf_backend.classify_failure(LOCAL_LOCK, None)
    assert check == 'terraform_state_locked'
    assert 'Who=alice@laptop' in detail and 'Operation=OperationTypeApply' in detail
    assert 'lock_timeout' in remediation


def test_classify_pg_auth_and_unreachable(tmp_path):
    backend = tf_backend.PgBackend(CONN, source='/srv/state/terraform_backend.env')
    auth = tf_backend.classify_failure('Error: pq: password authentication failed for user "eminfra"\n', backend)
    assert auth[0] == 'terraform_backend_auth' and '/srv/state/terraform_backend.env' in auth[2]
    down = tf_backend.classify_failure('Error: dial tcp 10.0.0.9:5433: connect: connection refused\n', backend)
    assert down[0] == 'terraform_backend_unreachable' and 'pg_isready -h db.example.org -p 5433' in down[2]
    assert tf_backend.classify_failure('Error: Unsupported argument\n', backend) is None
    assert tf_backend.classify_failure('Error: dial tcp 10.0.0.9:8006: connection refused\n', None) is None


def test_runner_with_pg_backend_exact_argv_and_env(project):  # noqa: F811
    fake = FakeTerraform()
    runner = make_runner(project, fake, base_env={'PATH': '/usr/bin', 'PGPASSWORD': 'inherited', 'PG_CONN_STR': 'x'})
    runner.use_backend('pg', pg=tf_backend.PgBackend(CONN, 'team_a', source='/s/terraform_backend.env'))
    result = runner.execute(intent_nodes_file=os.path.join(FIXTURES, 'nodes.yaml'))
    work = str(project['state'] / 'cache' / 'terraform')
    chdir = f'{work}/k3s-dev/config/environments/k3s-dev'
    assert fake.calls[0]['argv'] == [BIN, f'-chdir={chdir}', 'init', '-input=false', '-no-color',
                                     '-backend-config=schema_name=team_a', '-reconfigure']
    for call in fake.calls:
        assert CONN not in ' '.join(call['argv']) and PASSWORD not in ' '.join(call['argv'])
        assert call['env']['PG_CONN_STR'] == CONN and 'PGPASSWORD' not in call['env']
    with open(os.path.join(chdir, 'backend_override.tf'), encoding='utf-8') as handle:
        assert handle.read() == tf_backend.PG_OVERRIDE_TEXT
    assert result['backend'] == {'type': 'pg', 'schema_name': 'team_a', 'database': 'db.example.org:5433/tfstate',
                                 'env_file': '/s/terraform_backend.env'}
    # The override goes away with the local backend; the local default's init is what it always was.
    local = make_runner(project, FakeTerraform())
    local.prepare()
    assert not os.path.exists(os.path.join(chdir, 'backend_override.tf'))


def test_local_default_is_unchanged_and_inherited_pg_env_dropped(project):  # noqa: F811
    fake = FakeTerraform()
    runner = make_runner(project, fake, base_env={'PATH': '/usr/bin', 'PG_CONN_STR': CONN})
    result = runner.execute(intent_nodes_file=os.path.join(FIXTURES, 'nodes.yaml'))
    work = str(project['state'] / 'cache' / 'terraform')
    assert fake.calls[0]['argv'][2:] == ['init', '-input=false', '-no-color',
                                         f'-backend-config=path={work}/k3s-dev/terraform.tfstate', '-reconfigure']
    assert all('PG_CONN_STR' not in call['env'] for call in fake.calls)
    assert result['backend'] == {'type': 'local', 'state_path': f'{work}/k3s-dev/terraform.tfstate'}
    assert result['migrated'] is None


def test_switch_without_migration_is_refused_before_anything_runs(project):  # noqa: F811
    fake = FakeTerraform()
    runner = make_runner(project, fake)
    data_dir = runner.data_dir
    os.makedirs(data_dir)
    with open(os.path.join(data_dir, 'terraform.tfstate'), 'w', encoding='utf-8') as handle:
        json.dump({'backend': {'type': 'local'}}, handle)
    runner.use_backend('pg', pg=tf_backend.PgBackend(CONN, source='/s/terraform_backend.env'))
    with pytest.raises(CheckError) as info:
        runner.execute(intent_nodes_file=os.path.join(FIXTURES, 'nodes.yaml'))
    assert info.value.check == 'terraform_backend_changed' and 'migrate_state=true' in info.value.remediation
    assert fake.calls == []
    runner.use_backend('pg', pg=tf_backend.PgBackend(CONN, source='/s/terraform_backend.env'), migrate_state=True)
    with pytest.raises(CheckError) as info:
        runner.execute(check_mode=True, intent_nodes_file=os.path.join(FIXTURES, 'nodes.yaml'))
    assert info.value.check == 'terraform_backend_migration' and fake.calls == []


def test_scrub_masks_conn_str_and_password(project):  # noqa: F811
    runner = make_runner(project, FakeTerraform())
    runner.use_backend('pg', pg=tf_backend.PgBackend(CONN))
    assert runner.scrub(f'x {CONN} y {PASSWORD} z {SECRET}') == 'x ******** y ******** z ********'


class FailingInit(FakeTerraform):
    """init fails once (a database that is down), after writing part of the data dir."""

    def __init__(self):
        super().__init__()
        self.fail_next_init = True

    def __call__(self, argv, env, cwd, timeout):
        if argv[2] == 'init' and self.fail_next_init:
            self.calls.append({'argv': list(argv), 'env': dict(env), 'cwd': cwd, 'timeout': timeout})
            self.fail_next_init = False
            os.makedirs(os.path.join(env['TF_DATA_DIR'], 'partial'), exist_ok=True)
            return 1, '', 'Error: dial tcp 10.0.0.9:5433: connect: connection refused\n'
        return super().__call__(argv, env, cwd, timeout)


def test_a_failed_init_is_run_again_next_time(project):  # noqa: F811
    fake = FakeTerraform()
    pg = tf_backend.PgBackend(CONN, source='/s/terraform_backend.env')
    runner = make_runner(project, fake)
    runner.use_backend('pg', pg=pg)
    runner.execute(intent_nodes_file=os.path.join(FIXTURES, 'nodes.yaml'))
    failing = FailingInit()
    again = make_runner(project, failing)
    again.use_backend('pg', pg=pg)
    # The stamp of the earlier init matches, but the data dir must be made again (it was deleted).
    failing.fail_next_init = True
    for name in os.listdir(again.data_dir):
        os.rmdir(os.path.join(again.data_dir, name))
    with pytest.raises(CheckError) as info:
        again.execute(intent_nodes_file=os.path.join(FIXTURES, 'nodes.yaml'))
    assert info.value.check == 'terraform_backend_unreachable'
    third = make_runner(project, FakeTerraform())
    third.use_backend('pg', pg=pg)
    result = third.execute(intent_nodes_file=os.path.join(FIXTURES, 'nodes.yaml'))
    assert result['initialised'] is True


@pytest.mark.parametrize('line', [
    f'PG_CONN_STR=host=db password={PASSWORD}\n',
    f'{PASSWORD} and more\n',
])
def test_syntax_errors_do_not_quote_the_secret(tmp_path, line):
    path = write_env(tmp_path / 'terraform_backend.env', line)
    with pytest.raises(CheckError) as info:
        tf_backend.load_backend_env(path)
    assert info.value.check == 'terraform_backend_env_valid' and f'{path} line 1' in str(info.value)
    assert PASSWORD not in str(info.value)
