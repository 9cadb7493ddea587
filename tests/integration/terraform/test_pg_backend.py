# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The opt-in pg state backend of terraform/environments/k3s-dev: real Terraform, the real bpg/proxmox
provider against pvesim, and a real PostgreSQL server (tests/postgres) on loopback.

Each test keeps its state in its own schema of the one database, as separate teams would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from ansible_collections.eminfra.pipeline.plugins.module_utils import _terraform_backend as tf_backend
from tests.integration.terraform.conftest import COLLECTIONS, MODULE, REPO, Project, files_under, run_wrapper_playbook
from tests.integration.terraform.test_k3s_dev_lifecycle import ALL_VMIDS, read_outputs, sim_project  # noqa: F401  pylint: disable=unused-import
from tests.postgres.fixtures import closed_port, postgres  # noqa: F401  pylint: disable=unused-import
from tests.pvesim.fixtures import pvesim, pvesim_fresh  # noqa: F401  pylint: disable=unused-import

pytestmark = pytest.mark.slow


def write_backend_env(project: Project, conn_str: str, schema: str, mode: int = 0o600) -> str:
    path = os.path.join(project.state, 'terraform_backend.env')
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write(f"PG_CONN_STR='{conn_str}'\nPG_SCHEMA_NAME='{schema}'\n")
    os.chmod(path, mode)
    return path


def new_schema() -> str:
    return f'eminfra_{uuid.uuid4().hex[:10]}'


def pg_states(server, schema: str) -> list[str]:
    """Workspace names with a state row in the schema (what Terraform stored in PostgreSQL)."""
    out = server.sql_in('tfstate', f"SELECT name FROM {schema}.states WHERE length(data) > 0 ORDER BY name")
    return out.split()


def pg_state(server, schema: str) -> dict:
    return json.loads(server.sql_in('tfstate', f"SELECT data FROM {schema}.states WHERE name = 'default'"))


def vm_instances(state: dict) -> int:
    return sum(len(r.get('instances') or []) for r in state.get('resources') or []
               if r.get('type') == 'proxmox_virtual_environment_vm')


def assert_secret_nowhere(project: Project, server, results, extra_texts=()) -> None:
    """The connection string and its password are in terraform_backend.env and nowhere else."""
    backend_env = os.path.join(project.state, 'terraform_backend.env')
    needles = [server.conn_str().encode(), server.password.encode()]
    checked = [p for p in files_under(project.state) if p != backend_env]
    assert any(p.endswith('.log') for p in checked) and any(p.endswith('.tfplan') for p in checked)
    for path in checked:
        with open(path, 'rb') as handle:
            data = handle.read()
        for needle in needles:
            assert needle not in data, path
    for result in results:
        text = json.dumps(result)
        assert server.password not in text and server.conn_str() not in text
    for text in extra_texts:
        assert server.password not in text


@pytest.fixture()
def pg_project(sim_project, postgres):  # noqa: F811
    schema = new_schema()
    write_backend_env(sim_project, postgres.conn_str(), schema)
    sim_project.schema = schema
    sim_project.pg = postgres
    return sim_project


def test_pg_lifecycle_state_in_postgres_survives_the_workdir(pg_project, terraform_bin):
    project, server = pg_project, pg_project.pg
    started = time.monotonic()
    first = project.run_module(backend='pg')
    assert first.get('failed') is not True, first['_stdout']
    assert first['changed'] is True and first['applied'] is True
    assert first['counts'] == {'add': 4, 'change': 0, 'destroy': 0}
    assert first['backend'] == {'type': 'pg', 'schema_name': project.schema, 'database': f'127.0.0.1:{server.port}/tfstate',
                                'env_file': os.path.join(project.state, 'terraform_backend.env')}
    assert first['migrated'] is None
    assert project.api.vmids() == ALL_VMIDS
    # The state is in PostgreSQL, not in the workdir; the override exists only in the workdir's copy.
    assert pg_states(server, project.schema) == ['default']
    assert vm_instances(pg_state(server, project.schema)) == 4
    assert not os.path.exists(os.path.join(project.workdir, 'k3s-dev', 'terraform.tfstate'))
    override = os.path.join(project.workdir, 'k3s-dev', 'config', 'environments', 'k3s-dev', 'backend_override.tf')
    with open(override, encoding='utf-8') as handle:
        assert 'backend "pg" {}' in handle.read()
    assert not os.path.exists(os.path.join(REPO, 'terraform', 'environments', 'k3s-dev', 'backend_override.tf'))

    second = project.run_module(backend='pg')
    assert second['changed'] is False and second['initialised'] is False, second
    valid = project.run_module(backend='pg', validate_only=True)
    assert valid.get('failed') is not True and valid['outputs_valid'] is True, valid['_stdout']
    assert valid['backend']['type'] == 'pg'
    elapsed = time.monotonic() - started

    # Diagnostics and the resume's re-validation (pipeline_run) see the pg backend and read its state.
    checks = pipeline_checks(project)
    assert checks['terraform_backend']['status'] == 'ok' and checks['terraform_backend']['backend'] == 'pg'
    assert checks['terraform_backend']['detail'].startswith(f'pg: PostgreSQL {server.version} answers at 127.0.0.1:')
    assert checks['terraform_outputs_valid']['status'] == 'ok', checks
    assert checks['terraform_outputs_valid']['detail'].endswith(f'matches PostgreSQL 127.0.0.1:{server.port}/tfstate '
                                                                f'schema {project.schema}')
    env_file = os.path.join(project.state, 'terraform_backend.env')
    with open(env_file, encoding='utf-8') as handle:
        good = handle.read()
    write_backend_env(project, server.conn_str(port=closed_port()), project.schema)
    down = pipeline_checks(project)['terraform_backend']
    assert down['status'] == 'failed' and down['check'] == 'terraform_backend', down
    assert 'does not answer' in down['detail'] and env_file in down['remediation']
    write_backend_env(project, server.conn_str(password='wrong-password-x'), project.schema)
    refused = pipeline_checks(project)['terraform_backend']
    assert refused['status'] == 'failed' and 'password authentication failed' in refused['detail'], refused
    assert 'wrong-password-x' not in json.dumps(refused)
    with open(env_file, 'w', encoding='utf-8') as handle:
        handle.write(good)

    # The workdir (data dir, plans, logs, outputs.json) is deleted: the state is still there.
    outputs = read_outputs(project)
    shutil.rmtree(project.workdir)
    again = project.run_module(backend='pg')
    assert again.get('failed') is not True, again['_stdout']
    assert again['applied'] is False and again['counts'] == {'add': 0, 'change': 0, 'destroy': 0}
    assert again['initialised'] is True and again['outputs_changed'] is True
    assert read_outputs(project) == outputs
    assert project.api.vmids() == ALL_VMIDS, 'no VM was created twice'
    assert project.run_module(backend='pg')['changed'] is False

    # The default run (local backend) refuses to start from an empty local state.
    local = project.run_module()
    assert local['failed'] is True and local['failed_check'] == 'terraform_backend_changed', local
    assert 'migrate_state' in local['remediation']
    assert project.api.vmids() == ALL_VMIDS

    # Through Ansible at -vvvv: the connection string is in no output.
    output = run_playbook_vvvv(project)
    assert 'changed=1' in output, output[-6000:]
    assert project.api.vmids() == []
    assert_secret_nowhere(project, server, [first, second, valid, again, local], [output])
    assert vm_instances(pg_state(server, project.schema)) == 0
    print(f'\npg lifecycle (apply, no-change run, re-validation): {elapsed:.1f} s')


PIPELINE_RUN = os.path.join(REPO, 'plugins', 'modules', 'pipeline_run.py')


def pipeline_checks(project: Project) -> dict:
    """pipeline_run's read-only checks (what diagnostics and a resume run), by check name."""
    path = os.path.join(project.root, 'pipeline-run-args.json')
    with open(path, 'w', encoding='utf-8') as handle:
        json.dump({'ANSIBLE_MODULE_ARGS': {'action': 'check', 'fail_on_error': False, 'state_dir': project.state,
                                           'checks': ['terraform_backend', 'terraform_outputs_valid']}}, handle)
    env = dict(os.environ, PYTHONPATH=COLLECTIONS, EMINFRA_PROJECT_ROOT=project.root)
    proc = subprocess.run([sys.executable, PIPELINE_RUN, path], cwd=project.root, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    os.unlink(path)
    result = json.loads(proc.stdout)
    assert project.pg.password not in proc.stdout + proc.stderr
    return {entry['check']: entry for entry in result['checks']}


def run_playbook_vvvv(project: Project) -> str:
    key = project.args()['variables']['ssh_public_key']
    return run_wrapper_playbook(project, 'terraform_apply on the pg backend through Ansible', [
        ('Plan in check mode', {'backend': 'pg', 'variables': f'{{ssh_public_key: "{key}"}}'}, True),
        ('Remove the VMs', {'backend': 'pg', 'state': 'absent'}, False)])


def start_module(project: Project, **kw) -> tuple[subprocess.Popen, str]:
    """The module in the background (as run_module runs it); returns the process and its args file."""
    args = dict(project.args(**kw), _ansible_check_mode=False)
    path = os.path.join(project.root, f'module-args-{uuid.uuid4().hex[:6]}.json')
    with open(path, 'w', encoding='utf-8') as handle:
        json.dump({'ANSIBLE_MODULE_ARGS': args}, handle)
    env = dict(os.environ, PYTHONPATH=COLLECTIONS, EMINFRA_PROJECT_ROOT=project.root)
    env.pop('EMINFRA_STATE_DIR', None)
    proc = subprocess.Popen([sys.executable, MODULE, path], cwd=project.root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return proc, path


def finish_module(proc: subprocess.Popen, path: str) -> dict:
    out, err = proc.communicate(timeout=900)
    os.unlink(path)
    try:
        result = json.loads(out)
    except ValueError:
        raise AssertionError(f'module printed no JSON: rc={proc.returncode}\n{out}\n{err}') from None
    result['_stdout'] = out + err
    return result


def applying(project: Project, pid: int) -> bool:
    """Whether the run with module pid ``pid`` has started ``terraform apply`` (its log says so)."""
    logs = os.path.join(project.workdir, 'k3s-dev', 'logs')
    for name in os.listdir(logs) if os.path.isdir(logs) else []:
        if name.endswith(f'-{pid}.log'):
            with open(os.path.join(logs, name), encoding='utf-8') as handle:
                return ' apply -input=false' in handle.read()
    return False


def wait_for_lock_holder(project: Project, pid: int, proc: subprocess.Popen) -> None:
    """Until the run with module pid ``pid`` applies and holds the state lock (its session names it);
    plan and apply each take the lock, so the apply is the phase to catch."""
    backend = tf_backend.PgBackend(project.pg.conn_str(), project.schema)
    for dummy in range(2400):
        if applying(project, pid) and any(f'pid {pid}"' in holder for holder in tf_backend.lock_holders(backend)):
            return
        assert proc.poll() is None, 'the first run ended before it was seen holding the lock'
        time.sleep(0.05)
    raise AssertionError('the first run never held the lock')


def second_operator(project: Project, root: str) -> Project:
    """Another operator's checkout: own state root and workdir, same Proxmox and database."""
    shutil.copytree(project.root, root, ignore=shutil.ignore_patterns('state'))
    other = Project(root)
    os.makedirs(os.path.dirname(other.manifest))
    shutil.copy(project.manifest, other.manifest)
    for name in ('proxmox.env', 'terraform_backend.env'):
        shutil.copy(os.path.join(project.state, name), os.path.join(other.state, name))
        os.chmod(os.path.join(other.state, name), 0o600)
    return other


def test_two_operators_one_lock(pg_project, terraform_bin, tmp_path):
    project, server = pg_project, pg_project.pg
    other = second_operator(project, str(tmp_path / 'operator-2'))
    # Slow API answers keep the first apply (and its lock) going while the second one starts.
    project.sim.control('settings', latency=0.15)
    try:
        proc, path = start_module(project, backend='pg')
        wait_for_lock_holder(project, proc.pid, proc)
        contender = other.run_module(backend='pg')
    finally:
        project.sim.control('settings', latency=0.0)
    first = finish_module(proc, path)
    assert first.get('failed') is not True, first['_stdout']
    assert first['applied'] is True and first['counts']['add'] == 4
    # Exactly one ran: the second failed fast, naming the holder (its database session), and changed nothing.
    assert contender['failed'] is True and contender['failed_check'] == 'terraform_state_locked', contender
    assert f'pid {proc.pid}"' in contender['msg'] and 'eminfra terraform_apply' in contender['msg']
    assert f'PostgreSQL 127.0.0.1:{server.port}/tfstate schema {project.schema}' in contender['msg']
    assert 'locked' in contender['msg'].split('Terraform says: ')[1], contender['msg']
    assert 'lock_timeout' in contender['remediation']
    assert 'counts' not in contender
    assert project.api.vmids() == ALL_VMIDS

    # With a lock timeout the second operator waits for the holder instead: the first destroys, the
    # second (check mode) then plans against the state the first one left: everything to add.
    project.sim.control('settings', latency=0.15)
    try:
        proc, path = start_module(project, backend='pg', state='absent')
        wait_for_lock_holder(project, proc.pid, proc)
        waiter = other.run_module(backend='pg', check_mode=True, lock_timeout='10m')
    finally:
        project.sim.control('settings', latency=0.0)
    gone = finish_module(proc, path)
    assert gone.get('failed') is not True and gone['counts']['destroy'] == 4, gone['_stdout']
    assert waiter.get('failed') is not True, waiter['_stdout']
    assert waiter['counts'] == {'add': 4, 'change': 0, 'destroy': 0}
    assert project.api.vmids() == []
    assert_secret_nowhere(project, server, [first, contender, gone, waiter])
    assert_secret_nowhere(other, server, [])


def test_migration_local_to_pg_and_back(pg_project, terraform_bin):
    project, server = pg_project, pg_project.pg
    local_state = os.path.join(project.workdir, 'k3s-dev', 'terraform.tfstate')
    first = project.run_module()
    assert first.get('failed') is not True and first['backend']['type'] == 'local', first['_stdout']

    refused = project.run_module(backend='pg')
    assert refused['failed'] is True and refused['failed_check'] == 'terraform_backend_changed'
    assert local_state in refused['msg']
    checked = project.run_module(backend='pg', migrate_state=True, check_mode=True)
    assert checked['failed'] is True and checked['failed_check'] == 'terraform_backend_migration'

    to_pg = project.run_module(backend='pg', migrate_state=True)
    assert to_pg.get('failed') is not True, to_pg['_stdout']
    assert to_pg['migrated'] == {'from': 'local', 'to': 'pg'} and to_pg['changed'] is True
    assert to_pg['applied'] is False and to_pg['counts'] == {'add': 0, 'change': 0, 'destroy': 0}
    assert not os.path.exists(local_state) and os.path.exists(f'{local_state}.migrated-to-pg')
    assert vm_instances(pg_state(server, project.schema)) == 4
    settled = project.run_module(backend='pg', migrate_state=True)
    assert settled['migrated'] is None and settled['changed'] is False, settled

    to_local = project.run_module(migrate_state=True)
    assert to_local.get('failed') is not True, to_local['_stdout']
    assert to_local['migrated'] == {'from': 'pg', 'to': 'local'} and to_local['counts']['add'] == 0
    with open(local_state, encoding='utf-8') as handle:
        assert vm_instances(json.load(handle)) == 4
    assert project.run_module()['changed'] is False
    assert project.run_module(validate_only=True)['outputs_valid'] is True
    assert project.api.vmids() == ALL_VMIDS
    assert_secret_nowhere(project, server, [first, refused, to_pg, settled, to_local])


# ------------------------------------------------------------------ failures before any plan
@pytest.fixture()
def pg_offline(project, postgres):  # noqa: F811
    """The project without a simulator: the backend fails at init, before any API call."""
    project.pg = postgres
    project.schema = new_schema()
    return project


def test_wrong_password_is_its_own_error(pg_offline, terraform_bin):
    project, server = pg_offline, pg_offline.pg
    env_file = write_backend_env(project, server.conn_str(password='not-the-password'), project.schema)
    result = project.run_module(backend='pg')
    assert result['failed'] is True and result['failed_check'] == 'terraform_backend_auth', result
    assert env_file in result['msg'] and 'PG_CONN_STR' in result['msg']
    assert 'refused the credentials' in result['msg'] and 'password' in result['remediation']
    assert 'not-the-password' not in result['_stdout']
    with open(result['log_path'], encoding='utf-8') as handle:
        log = handle.read()
    assert 'password authentication failed' in log and 'not-the-password' not in log


def test_unreachable_database_is_its_own_error(pg_offline, terraform_bin):
    project, server = pg_offline, pg_offline.pg
    port = closed_port()
    env_file = write_backend_env(project, server.conn_str(port=port), project.schema)
    result = project.run_module(backend='pg')
    assert result['failed'] is True and result['failed_check'] == 'terraform_backend_unreachable', result
    assert env_file in result['msg'] and f'127.0.0.1:{port}/tfstate' in result['msg']
    assert f'pg_isready -h 127.0.0.1 -p {port}' in result['remediation']
    assert server.password not in result['_stdout']


def test_backend_env_file_is_checked_like_proxmox_env(pg_offline, terraform_bin):
    project, server = pg_offline, pg_offline.pg
    missing = project.run_module(backend='pg')
    assert missing['failed'] is True and missing['failed_check'] == 'terraform_backend_env_present'
    assert os.path.join(project.state, 'terraform_backend.env') in missing['msg']
    env_file = write_backend_env(project, server.conn_str(), project.schema, mode=0o644)
    loose = project.run_module(backend='pg')
    assert loose['failed'] is True and loose['failed_check'] == 'terraform_backend_env_valid'
    assert f'chmod 600 {env_file}' in loose['msg'] and server.password not in loose['_stdout']
    with open(env_file, 'w', encoding='utf-8') as handle:
        handle.write("PG_CONNSTR='x'\n")
    os.chmod(env_file, 0o600)
    typo = project.run_module(backend='pg')
    assert typo['failed_check'] == 'terraform_backend_env_valid' and f'{env_file} PG_CONNSTR' in typo['msg']
    # The default (local) run never reads the file.
    assert project.run_module(check_mode=True).get('failed_check') != 'terraform_backend_env_valid'


# ------------------------------------------------------------------ the role
def test_role_on_pg_records_the_step_and_keeps_the_secret_out(pg_project, terraform_bin, tmp_path):
    from tests.integration.terraform.test_role import play  # pylint: disable=import-outside-toplevel
    from ansible_collections.eminfra.pipeline.plugins.module_utils._envfile import read_env_file  # pylint: disable=import-outside-toplevel

    project, server = pg_project, pg_project.pg
    run = play(project, tmp_path, '-vvvv', '-e', 'terraform_apply_backend=pg')
    assert run.rc == 0, run.output
    assert 'state pg;' in run.stdout
    latest_path = os.path.join(project.state, 'runs', 'latest.env')
    latest = read_env_file(latest_path)
    assert latest['LAST_STEP_COMPLETED'] == 'terraform_apply' and latest['TERRAFORM_WORKDIR'] == project.workdir
    assert vm_instances(pg_state(server, project.schema)) == 4
    # A second operator's database is down: the step fails with its own check id, recorded in latest.env.
    env_file = os.path.join(project.state, 'terraform_backend.env')
    with open(env_file, encoding='utf-8') as handle:
        good = handle.read()
    write_backend_env(project, server.conn_str(port=closed_port()), project.schema)
    shutil.rmtree(os.path.join(project.workdir, 'k3s-dev', 'data'))
    down = play(project, tmp_path, '-vvvv', '-e', 'terraform_apply_backend=pg')
    assert down.rc != 0
    assert read_env_file(latest_path)['LAST_FAILED_CHECK'] == 'terraform_backend_unreachable'
    with open(env_file, 'w', encoding='utf-8') as handle:
        handle.write(good)
    gone = play(project, tmp_path, '-vvvv', '-e', 'terraform_apply_backend=pg', '-e', 'wanted_state=absent')
    assert gone.rc == 0, gone.output
    assert project.api.vmids() == []
    outputs = [run.stdout + run.stderr, down.stdout + down.stderr, gone.stdout + gone.stderr]
    assert_secret_nowhere(project, server, [], outputs)
