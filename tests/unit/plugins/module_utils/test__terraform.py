# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Terraform runner with a fake run_command: exact argv, exact environment, secret only in env."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import yaml

from ansible_collections.eminfra.pipeline.plugins.module_utils import _manifest, _proxmox_env
from ansible_collections.eminfra.pipeline.plugins.module_utils import _terraform
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))
FIXTURES = os.path.join(REPO, 'terraform', 'tests', 'fixtures')
SECRET = 'c0ffee00-1111-2222-3333-unit-test-secret'
BIN = '/opt/tf/bin/terraform'

PLAN_JSON = {
    'format_version': '1.2',
    'resource_changes': [
        {'address': 'proxmox_virtual_environment_vm.vm["cp-1"]', 'change': {'actions': ['create']}},
        {'address': 'proxmox_virtual_environment_vm.vm["util-1"]', 'change': {'actions': ['delete', 'create']}},
        {'address': 'proxmox_virtual_environment_vm.vm["worker-1"]', 'change': {'actions': ['update']}},
        {'address': 'proxmox_virtual_environment_vm.vm["old"]', 'change': {'actions': ['delete']}},
        {'address': 'proxmox_virtual_environment_vm.vm["same"]', 'change': {'actions': ['no-op']}},
    ],
    'resource_drift': [{'address': 'proxmox_virtual_environment_vm.vm["cp-1"]', 'change': {'actions': ['delete']}}],
    'output_changes': {'nodes': {'actions': ['update']}, 'cluster_name': {'actions': ['no-op']}},
}

OUTPUT_JSON = {
    'nodes': {'sensitive': False, 'type': [], 'value': [
        {'name': 'util-1', 'ipv4': '10.20.0.41', 'ssh_user': 'ops', 'ssh_port': 2222, 'groups': ['base'], 'vmid': 231,
         'role': 'utility'}]},
    'talos_nodes': {'sensitive': False, 'type': [], 'value': [
        {'name': 'cp-1', 'ipv4': '10.20.0.11', 'role': 'controlplane', 'vmid': 201}]},
    'admin_key': {'sensitive': True, 'type': 'string', 'value': 'do-not-write-me'},
}


class FakeTerraform:
    """Records every call; answers like Terraform would for the sub-command."""

    def __init__(self, plan_rc=2, apply_rc=0, outputs=None):
        self.calls = []
        self.plan_rc = plan_rc
        self.apply_rc = apply_rc
        self.outputs = OUTPUT_JSON if outputs is None else outputs

    def __call__(self, argv, env, cwd, timeout):
        self.calls.append({'argv': list(argv), 'env': dict(env), 'cwd': cwd, 'timeout': timeout})
        sub = argv[2]
        if sub == 'init':
            os.makedirs(os.path.join(env['TF_DATA_DIR'], 'terraform'), exist_ok=True)
            return 0, 'Terraform has been successfully initialized!\n', ''
        if sub == 'plan':
            return self.plan_rc, 'plan text that must not matter\n', 'Error: boom\n' if self.plan_rc == 1 else ''
        if sub == 'show':
            return 0, json.dumps(PLAN_JSON), ''
        if sub == 'apply':
            return self.apply_rc, 'Apply complete!\n', '' if self.apply_rc == 0 else 'Error: apply failed\n'
        if sub == 'output':
            return 0, json.dumps(self.outputs), ''
        raise AssertionError(f'unexpected command {argv}')

    def subcommands(self):
        return [call['argv'][2] for call in self.calls]


@pytest.fixture()
def project(tmp_path):
    """A copy of terraform/ (so tests never touch the repository's) and a state layout."""
    tf_root = tmp_path / 'repo' / 'terraform'
    shutil.copytree(os.path.join(REPO, 'terraform'), tf_root,
                    ignore=shutil.ignore_patterns('.terraform', '*.tfstate*', '.terraform.lock.hcl'))
    state = tmp_path / 'state'
    (state / 'cache' / 'templates').mkdir(parents=True)
    shutil.copy(os.path.join(FIXTURES, 'manifest.json'), state / 'cache' / 'templates' / 'manifest.json')
    env_file = state / 'proxmox.env'
    ca_file = tmp_path / 'ca.pem'
    ca_file.write_text('-----BEGIN CERTIFICATE-----\n')
    env_file.write_text('PROXMOX_API_URL=https://127.0.0.1:8006/api2/json\nPROXMOX_NODE=pve\n'
                        'PROXMOX_TOKEN_ID=pipeline@pve!full\n'
                        f'PROXMOX_TOKEN_SECRET={SECRET}\nPROXMOX_TLS_VERIFY=true\nPROXMOX_CA_BUNDLE={ca_file}\n')
    env_file.chmod(0o600)
    return {'env_dir': str(tf_root / 'environments' / 'k3s-dev'), 'state': state, 'env_file': str(env_file), 'ca': str(ca_file)}


def make_runner(project, fake, **kw):
    params = dict(
        run_command=fake, binary=BIN, project_path=project['env_dir'],
        workdir=str(project['state'] / 'cache' / 'terraform'),
        manifest=str(project['state'] / 'cache' / 'templates' / 'manifest.json'),
        variables={'intent_cluster_file': os.path.join(FIXTURES, 'cluster.yaml'),
                   'intent_nodes_file': os.path.join(FIXTURES, 'nodes.yaml'), 'vm_tags': ['a', 'b']},
        proxmox=_proxmox_env.load(project['env_file']),
        base_env={'PATH': '/usr/bin', 'HOME': '/root', 'TF_CLI_ARGS_plan': '-var=x=1', 'TF_VAR_injected': 'x',
                  'TF_LOG': 'TRACE', 'PROXMOX_VE_API_TOKEN': 'stale=value', 'LANG': 'C.UTF-8'},
    )
    allow_replace = params.pop('allow_replace', True)
    params.update(kw)
    allow_replace = params.pop('allow_replace', allow_replace)
    runner = _terraform.TerraformRunner(**params)
    # PLAN_JSON replaces and deletes VMs: unless a test says otherwise, the operator allowed it.
    runner.allow_replace = allow_replace
    # The fake Terraform has no Proxmox node beside it: an empty node (recovery tests set their own).
    runner.proxmox_vms = dict
    return runner


def test_apply_runs_init_plan_show_apply_output_with_exact_argv(project):
    fake = FakeTerraform()
    runner = make_runner(project, fake)
    result = runner.execute(intent_nodes_file=os.path.join(FIXTURES, 'nodes.yaml'))
    work = str(project['state'] / 'cache' / 'terraform')
    chdir = f'{work}/k3s-dev/config/environments/k3s-dev'
    plan = f'{work}/k3s-dev/plans/last.tfplan'
    argvs = [c['argv'] for c in fake.calls]
    assert argvs[:2] == [
        [BIN, f'-chdir={chdir}', 'init', '-input=false', '-no-color', f'-backend-config=path={work}/k3s-dev/terraform.tfstate',
         '-reconfigure'],
        [BIN, f'-chdir={chdir}', 'plan', '-input=false', '-no-color', '-detailed-exitcode', '-lock-timeout=0s',
         '-parallelism=10', f'-out={plan}'],
    ]
    # show -json of the saved plan runs alongside the apply of that same plan.
    assert sorted(argvs[2:4]) == sorted([
        [BIN, f'-chdir={chdir}', 'show', '-json', '-no-color', plan],
        [BIN, f'-chdir={chdir}', 'apply', '-input=false', '-no-color', '-lock-timeout=0s', '-parallelism=10', plan],
    ])
    assert argvs[4:] == [[BIN, f'-chdir={chdir}', 'output', '-json', '-no-color']]
    assert all(c['cwd'] == chdir for c in fake.calls)
    assert result['changed'] is True and result['applied'] is True
    assert result['counts'] == {'add': 2, 'change': 1, 'destroy': 2}
    assert result['replaced'] == ['proxmox_virtual_environment_vm.vm["util-1"]']
    assert result['drift'] == [{'address': 'proxmox_virtual_environment_vm.vm["cp-1"]', 'actions': ['delete']}]
    assert result['output_changes'] == ['nodes']


def test_environment_is_exact_and_secret_only_in_plan_and_apply_env(project):
    fake = FakeTerraform()
    runner = make_runner(project, fake)
    runner.execute(intent_nodes_file=os.path.join(FIXTURES, 'nodes.yaml'))
    work = str(project['state'] / 'cache' / 'terraform')
    base = {
        'PATH': '/usr/bin', 'HOME': '/root', 'LANG': 'C.UTF-8',
        'TF_IN_AUTOMATION': '1', 'TF_INPUT': '0', 'CHECKPOINT_DISABLE': '1',
        'TF_DATA_DIR': f'{work}/k3s-dev/data', 'TF_CLI_CONFIG_FILE': f'{work}/terraformrc',
        'TF_VAR_proxmox_node': 'pve',
        'TF_VAR_intent_cluster_file': os.path.join(FIXTURES, 'cluster.yaml'),
        'TF_VAR_intent_nodes_file': os.path.join(FIXTURES, 'nodes.yaml'),
        'TF_VAR_vm_tags': '["a", "b"]',
        'TF_VAR_manifest_file': str(project['state'] / 'cache' / 'templates' / 'manifest.json'),
    }
    provider = {
        'PROXMOX_VE_ENDPOINT': 'https://127.0.0.1:8006/',
        'PROXMOX_VE_API_TOKEN': f'pipeline@pve!full={SECRET}',
        'SSL_CERT_FILE': project['ca'],
    }
    # Terraform's own TMPDIR, one per run, named for the module's process (removed when it ends).
    base['TMPDIR'] = runner.tmp_dir
    assert os.path.basename(runner.tmp_dir).startswith(f'eminfra-terraform-{os.getpid()}-')
    assert os.path.isdir(runner.tmp_dir)
    for call in fake.calls:
        expected = dict(base, **provider) if call['argv'][2] in ('plan', 'apply') else base
        assert call['env'] == expected, call['argv'][2]
        assert not any(SECRET in arg for arg in call['argv'])
        assert not any('-var' in arg for arg in call['argv'])
    runner.cleanup()
    assert runner.tmp_dir is None and not os.path.exists(base['TMPDIR'])
    # The secret is in no file the runner wrote (log, CLI config, stamp), except proxmox.env.
    for directory, dummy, files in os.walk(project['state']):
        for name in files:
            path = os.path.join(directory, name)
            if path != project['env_file']:
                with open(path, 'rb') as handle:
                    assert SECRET.encode() not in handle.read(), path


def test_no_changes_means_no_apply_and_changed_false(project):
    fake = FakeTerraform(plan_rc=0)
    runner = make_runner(project, fake)
    first = runner.execute()
    assert first['changed'] is True  # outputs.json written the first time
    second = make_runner(project, fake).execute()
    assert 'apply' not in fake.subcommands()
    assert second['changed'] is False and second['applied'] is False and second['outputs_changed'] is False
    assert fake.subcommands().count('init') == 1  # initialised once, then only when something changed


def test_check_mode_plans_only(project):
    fake = FakeTerraform(plan_rc=2)
    result = make_runner(project, fake).execute(check_mode=True)
    assert fake.subcommands() == ['init', 'plan', 'show']
    assert result['changed'] is True and result['counts']['add'] == 2
    assert not os.path.exists(project['state'] / 'cache' / 'terraform' / 'outputs.json')


def test_state_absent_plans_a_destroy(project):
    fake = FakeTerraform(plan_rc=2)
    make_runner(project, fake).execute(state='absent')
    plan_call = [c for c in fake.calls if c['argv'][2] == 'plan'][0]
    assert plan_call['argv'][-1] == '-destroy'
    assert 'apply' in fake.subcommands()


def test_outputs_json_is_the_contract_without_sensitive_values(project):
    make_runner(project, FakeTerraform()).execute()
    path = project['state'] / 'cache' / 'terraform' / 'outputs.json'
    data = json.loads(path.read_text())
    assert data == {
        'schema_version': 1,
        'nodes': [{'name': 'util-1', 'ipv4': '10.20.0.41', 'ssh_user': 'ops', 'ssh_port': 2222, 'groups': ['base'],
                   'vmid': 231, 'role': 'utility'}],
        'talos_nodes': [{'name': 'cp-1', 'ipv4': '10.20.0.11', 'role': 'controlplane', 'vmid': 201}],
    }
    assert 'do-not-write-me' not in path.read_text()


def test_outputs_holding_the_secret_are_refused_and_not_written(project):
    outputs = json.loads(json.dumps(OUTPUT_JSON))
    outputs['nodes']['value'][0]['ssh_user'] = SECRET
    with pytest.raises(CheckError) as err:
        make_runner(project, FakeTerraform(outputs=outputs)).execute()
    assert err.value.check == 'terraform_outputs_valid'
    assert SECRET not in str(err.value)
    assert not os.path.exists(project['state'] / 'cache' / 'terraform' / 'outputs.json')


def test_invalid_outputs_are_refused(project):
    outputs = json.loads(json.dumps(OUTPUT_JSON))
    outputs['talos_nodes']['value'][0]['ipv4'] = 'not-an-address'
    with pytest.raises(CheckError) as err:
        make_runner(project, FakeTerraform(outputs=outputs)).execute()
    assert err.value.check == 'terraform_outputs_valid'
    assert 'talos_nodes[0].ipv4' in str(err.value)


def test_plan_error_names_the_log(project):
    runner = make_runner(project, FakeTerraform(plan_rc=1))
    with pytest.raises(_terraform.TerraformError) as err:
        runner.execute()
    assert err.value.check == 'terraform_apply'
    assert runner.log_path in str(err.value) and err.value.result()['log_path'] == runner.log_path
    with open(runner.log_path, encoding='utf-8') as handle:
        assert 'Error: boom' in handle.read()
    assert os.stat(runner.log_path).st_mode & 0o777 == 0o600


def test_missing_manifest_refused_before_anything_runs(project):
    os.unlink(project['state'] / 'cache' / 'templates' / 'manifest.json')
    fake = FakeTerraform()
    with pytest.raises(CheckError) as err:
        make_runner(project, fake).execute()
    assert err.value.check == 'templates_present'
    assert 'eminfra_start_at=templates' in str(err.value)
    assert fake.calls == []


def test_manifest_without_a_needed_artefact_refused(project):
    manifest = project['state'] / 'cache' / 'templates' / 'manifest.json'
    data = json.loads(manifest.read_text())
    del data['talos']['filename']
    manifest.write_text(json.dumps(data))
    fake = FakeTerraform()
    with pytest.raises(CheckError) as err:
        make_runner(project, fake).execute(intent_nodes_file=os.path.join(FIXTURES, 'nodes.yaml'))
    assert err.value.check == 'templates_present' and 'talos.filename' in str(err.value)
    assert fake.calls == []


def test_artefact_not_on_proxmox_storage_refused(project):
    """Fetched but not placed: a VM disk would have nothing to import, so nothing runs."""
    manifest = project['state'] / 'cache' / 'templates' / 'manifest.json'
    data = json.loads(manifest.read_text())
    del data['ubuntu']['proxmox_volid']
    manifest.write_text(json.dumps(data))
    fake = FakeTerraform()
    with pytest.raises(CheckError) as err:
        make_runner(project, fake).execute(intent_nodes_file=os.path.join(FIXTURES, 'nodes.yaml'))
    assert err.value.check == 'templates_present' and 'ubuntu: no proxmox_volid' in str(err.value)
    assert err.value.remediation == _manifest.TEMPLATES_REMEDIATION
    assert fake.calls == []
    # A Talos-only intent does not need the Ubuntu artefact on storage.
    make_runner(project, fake).execute(intent_nodes_file=os.path.join(FIXTURES, 'nodes-talos-only.yaml'))
    assert 'apply' in fake.subcommands()


def test_needed_artefacts_follow_enabled_nodes():
    assert _manifest.needed_artefacts(os.path.join(FIXTURES, 'nodes.yaml')) == ['talos', 'ubuntu']
    assert _manifest.needed_artefacts(os.path.join(FIXTURES, 'nodes-talos-only.yaml')) == ['talos']
    assert _manifest.needed_artefacts(None) == ['talos', 'ubuntu']


def test_a_container_needs_the_container_template(project):
    """An Ubuntu container is built from the manifest's ubuntu_lxc entry: without it (or without
    its volume on Proxmox storage) nothing runs, with the templates_present check."""
    nodes = os.path.join(FIXTURES, 'nodes-lxc.yaml')
    assert _manifest.needed_artefacts(nodes) == ['talos', 'ubuntu', 'ubuntu_lxc']
    fake = FakeTerraform()
    with pytest.raises(CheckError) as err:
        make_runner(project, fake).execute(intent_nodes_file=nodes)
    assert err.value.check == 'templates_present' and 'no artefact for ubuntu_lxc' in str(err.value)
    assert fake.calls == []
    manifest = project['state'] / 'cache' / 'templates' / 'manifest.json'
    with open(os.path.join(FIXTURES, 'manifest-lxc.json'), encoding='utf-8') as handle:
        data = json.load(handle)
    del data['ubuntu_lxc']['proxmox_volid']
    manifest.write_text(json.dumps(data))
    with pytest.raises(CheckError) as err:
        make_runner(project, fake).execute(intent_nodes_file=nodes)
    assert err.value.check == 'templates_present' and 'ubuntu_lxc: no proxmox_volid' in str(err.value)
    assert fake.calls == []


def test_variable_holding_the_secret_refused(project):
    fake = FakeTerraform()
    with pytest.raises(CheckError) as err:
        make_runner(project, fake, variables={'note': f'x{SECRET}'}).execute()
    assert SECRET not in str(err.value)
    assert fake.calls == []


def test_repository_config_stays_clean_and_copy_is_exact(project):
    before = sorted(os.path.relpath(os.path.join(d, f), project['env_dir'])
                    for d, dummy, fs in os.walk(os.path.dirname(os.path.dirname(project['env_dir']))) for f in fs)
    runner = make_runner(project, FakeTerraform())
    runner.execute()
    after = sorted(os.path.relpath(os.path.join(d, f), project['env_dir'])
                   for d, dummy, fs in os.walk(os.path.dirname(os.path.dirname(project['env_dir']))) for f in fs)
    assert before == after
    copied = sorted(os.path.relpath(os.path.join(d, f), runner.config_root)
                    for d, dummy, fs in os.walk(runner.config_root) for f in fs)
    assert 'environments/k3s-dev/main.tf' in copied and 'modules/plan/main.tf' in copied
    assert not any(p.startswith('tests/') or '/tests/' in p or p.endswith('.md') for p in copied)


def test_proxmox_env_group_readable_refused(project):
    os.chmod(project['env_file'], 0o640)
    with pytest.raises(CheckError) as err:
        _proxmox_env.load(project['env_file'])
    assert err.value.check == 'proxmox_env_valid' and 'chmod 600' in str(err.value)


def test_timeout_stops_the_command(tmp_path):
    rc, dummy, err = _terraform.default_run_command(['sleep', '5'], {'PATH': os.environ['PATH']}, str(tmp_path), 0.2)
    assert rc == 124 and 'timeout' in err


def test_tls_and_endpoint_reach_the_provider_as_the_api_client_reads_them(tmp_path):
    """One parser: no port means 8006 for Terraform too; INSECURE only when verification is off."""
    from ansible_collections.eminfra.pipeline.plugins.module_utils._envfile import read_env_file
    from ansible_collections.eminfra.pipeline.plugins.module_utils._proxmox import ProxmoxClient, parse_api_url
    env_file = tmp_path / 'proxmox.env'
    env_file.write_text('PROXMOX_API_URL=https://pve.example/\nPROXMOX_NODE=pve\nPROXMOX_TOKEN_ID=pipeline@pve!full\n'
                        f'PROXMOX_TOKEN_SECRET={SECRET}\n')
    env_file.chmod(0o600)
    settings = _proxmox_env.load(str(env_file))
    assert _terraform.provider_env(settings) == {'PROXMOX_VE_ENDPOINT': 'https://pve.example:8006/',
                                                 'PROXMOX_VE_API_TOKEN': f'pipeline@pve!full={SECRET}'}
    assert _terraform.provider_env(settings)['PROXMOX_VE_ENDPOINT'] == parse_api_url('https://pve.example/')[3] + '/'
    # The same file, read by the API client the token check and the templates step use.
    client = ProxmoxClient.from_env(read_env_file(str(env_file)))
    assert f'{client.base_url}/' == _terraform.provider_env(settings)['PROXMOX_VE_ENDPOINT']
    insecure = _proxmox_env.ProxmoxSettings('https://10.0.0.5:8006/api2/json', 'pve', 'a@pve!t', SECRET,
                                            tls_verify=False, ca_bundle='/ignored/ca.pem')
    assert _terraform.provider_env(insecure) == {'PROXMOX_VE_ENDPOINT': 'https://10.0.0.5:8006/',
                                                 'PROXMOX_VE_API_TOKEN': f'a@pve!t={SECRET}', 'PROXMOX_VE_INSECURE': 'true'}
    proxied = _proxmox_env.ProxmoxSettings('https://[fd00::5]/pve/api2/json', 'pve', 'a@pve!t', SECRET)
    assert _terraform.provider_env(proxied)['PROXMOX_VE_ENDPOINT'] == 'https://[fd00::5]:8006/pve/'
    with pytest.raises(CheckError) as err:
        _proxmox_env.ProxmoxSettings('http://pve.example:8006', 'pve', 'a@pve!t', SECRET)
    assert err.value.check == 'proxmox_env_valid' and SECRET not in str(err.value)


def test_cli_config_inherited_then_the_projects_then_an_empty_one(project, tmp_path):
    """The provider is found as the operator's Terraform finds it (make setup's mirror, or the registry)."""
    work = str(project['state'] / 'cache' / 'terraform')
    repo = str(tmp_path / 'repo')
    # Neither an inherited file nor the project's: an empty CLI config in the workdir (registry installs).
    missing = make_runner(project, FakeTerraform(), base_env={'TF_CLI_CONFIG_FILE': '/nonexistent/terraformrc'})
    assert missing.cli_config == f'{work}/terraformrc'
    missing.execute()
    with open(missing.cli_config, encoding='utf-8') as handle:
        assert handle.read() == ''
    # The project's, written by make setup beside its provider mirror.
    os.makedirs(os.path.join(repo, '.cache', 'terraform'))
    project_rc = os.path.join(repo, '.cache', 'terraform', 'terraformrc')
    with open(project_rc, 'w', encoding='utf-8') as handle:
        handle.write('provider_installation {\n  direct {}\n}\n')
    fake = FakeTerraform()
    found = make_runner(project, fake, base_env={})
    assert found.cli_config == project_rc
    found.execute()
    assert {call['env']['TF_CLI_CONFIG_FILE'] for call in fake.calls} == {project_rc}
    assert 'init' in fake.subcommands(), 'a new CLI config means a new init'
    # An inherited one that exists wins.
    own = tmp_path / 'operator.tfrc'
    own.write_text('')
    assert make_runner(project, FakeTerraform(), base_env={'TF_CLI_CONFIG_FILE': str(own)}).cli_config == str(own)


def test_apply_failure_is_reported_not_masked_and_no_outputs_written(project):
    runner = make_runner(project, FakeTerraform(plan_rc=2, apply_rc=1))
    with pytest.raises(_terraform.TerraformError) as err:
        runner.execute()
    assert 'terraform apply failed with exit code 1' in str(err.value)
    assert not os.path.exists(project['state'] / 'cache' / 'terraform' / 'outputs.json')


def test_validate_only_compares_outputs_json_with_the_state(project):
    make_runner(project, FakeTerraform()).execute()
    runner = make_runner(project, FakeTerraform())
    state_path = runner.state_path
    with open(state_path, 'w', encoding='utf-8') as handle:
        handle.write('{}')  # the fake never writes one; validate_only needs a state to compare with
    fake = FakeTerraform()
    result = make_runner(project, fake).validate_outputs()
    assert result['outputs_valid'] is True and result['changed'] is False
    assert fake.subcommands() == ['output']  # no plan, no apply, and no provider environment
    assert 'PROXMOX_VE_API_TOKEN' not in fake.calls[0]['env']
    changed = json.loads(json.dumps(OUTPUT_JSON))
    changed['talos_nodes']['value'][0]['ipv4'] = '10.20.0.99'
    with pytest.raises(CheckError) as err:
        make_runner(project, FakeTerraform(outputs=changed)).validate_outputs()
    assert err.value.check == 'terraform_outputs_valid' and 'talos_nodes' in str(err.value)
    os.unlink(project['state'] / 'cache' / 'terraform' / 'outputs.json')
    with pytest.raises(CheckError) as err:
        make_runner(project, FakeTerraform()).validate_outputs()
    assert 'does not exist' in str(err.value)


# ---------------------------------------------------------------- plans that destroy or replace a VM
REAL_PLAN_JSON = {
    'format_version': '1.2',
    'resource_changes': [
        {'address': 'proxmox_virtual_environment_vm.vm["util-1"]', 'type': 'proxmox_virtual_environment_vm',
         'index': 'util-1', 'action_reason': 'replace_because_cannot_update',
         'change': {'actions': ['delete', 'create'], 'before': {'name': 'util-1', 'vm_id': 7704},
                    'after': {'name': 'util-1', 'vm_id': 7705}}},
        {'address': 'proxmox_virtual_environment_vm.vm["old"]', 'type': 'proxmox_virtual_environment_vm',
         'index': 'old', 'change': {'actions': ['delete'], 'before': {'name': 'old', 'vm_id': 240}, 'after': None}},
        {'address': 'proxmox_virtual_environment_vm.vm["cp-1"]', 'type': 'proxmox_virtual_environment_vm',
         'index': 'cp-1', 'change': {'actions': ['create'], 'before': None, 'after': {'name': 'cp-1', 'vm_id': 201}}},
        {'address': 'terraform_data.marker', 'type': 'terraform_data',
         'change': {'actions': ['delete', 'create'], 'before': {}, 'after': {}}},
    ],
}


class DestroyingTerraform(FakeTerraform):
    def __call__(self, argv, env, cwd, timeout):
        if argv[2] == 'show':
            self.calls.append({'argv': list(argv), 'env': dict(env), 'cwd': cwd, 'timeout': timeout})
            return 0, json.dumps(REAL_PLAN_JSON), ''
        return super().__call__(argv, env, cwd, timeout)


def test_destroyed_vms_reads_replace_and_delete_of_vms_only():
    found = _terraform.destroyed_vms(REAL_PLAN_JSON)
    assert [(vm['name'], vm['vmid'], vm['replace'], vm['new_vmid']) for vm in found] == [
        ('util-1', 7704, True, 7705), ('old', 240, False, None)]
    # The address alone tells the type too (module paths included).
    assert _terraform.destroyed_vms({'resource_changes': [
        {'address': 'module.x.proxmox_virtual_environment_vm.vm["a"]', 'change': {'actions': ['delete']}}]})[0]['name'] is None
    assert _terraform.destroyed_vms({'resource_changes': [
        {'address': 'data.proxmox_virtual_environment_vm.a', 'change': {'actions': ['delete']}}]}) == []


@pytest.mark.parametrize('check_mode', [False, True])
def test_plan_destroying_a_vm_is_refused_before_apply(project, check_mode):
    fake = DestroyingTerraform()
    runner = make_runner(project, fake, allow_replace=False)
    with pytest.raises(CheckError) as err:
        runner.execute(check_mode=check_mode, intent_nodes_file=os.path.join(FIXTURES, 'nodes.yaml'))
    assert err.value.check == 'plan_destroys_vm'
    message = str(err.value)
    assert message.startswith(f'plan_destroys_vm: {runner.plan_path}: the plan would replace util-1 (vmid 7704): '
                              'destroy it and create it again as vmid 7705; destroy old (vmid 240); nothing was applied')
    assert '-e eminfra_allow_replace=true' in err.value.remediation
    assert 'apply' not in fake.subcommands() and 'output' not in fake.subcommands()
    assert not os.path.exists(runner.outputs_path)


def test_plan_destroying_a_vm_applies_when_allowed_and_is_shown_once(project):
    fake = DestroyingTerraform()
    runner = make_runner(project, fake, allow_replace=True)
    result = runner.execute(intent_nodes_file=os.path.join(FIXTURES, 'nodes.yaml'))
    assert result['applied'] is True and result['counts'] == {'add': 3, 'change': 0, 'destroy': 3}
    assert fake.subcommands().count('show') == 1


def test_guarded_plan_is_shown_once(project):
    """Without deletes the guard's show -json is the one the counts come from: no second show."""
    fake = FakeTerraform()
    runner = make_runner(project, fake, allow_replace=False)
    original = PLAN_JSON['resource_changes']
    try:
        PLAN_JSON['resource_changes'] = [c for c in original if 'delete' not in c['change']['actions']]
        result = runner.execute(intent_nodes_file=os.path.join(FIXTURES, 'nodes.yaml'))
    finally:
        PLAN_JSON['resource_changes'] = original
    assert result['applied'] is True and fake.subcommands() == ['init', 'plan', 'show', 'apply', 'output']


def test_state_absent_is_its_own_request_to_destroy(project):
    fake = DestroyingTerraform()
    result = make_runner(project, fake, allow_replace=False).execute(state='absent')
    assert result['applied'] is True and 'apply' in fake.subcommands()


# ---------------------------------------------------------------- the intent Terraform reads
def test_validated_intent_is_written_as_json(tmp_path):
    paths = _terraform.write_validated_intent(os.path.join(FIXTURES, 'cluster.yaml'),
                                              os.path.join(FIXTURES, 'nodes.yaml'), str(tmp_path))
    assert paths == {'intent_cluster_file': str(tmp_path / 'intent' / 'cluster.json'),
                     'intent_nodes_file': str(tmp_path / 'intent' / 'nodes.json')}
    with open(os.path.join(FIXTURES, 'nodes.yaml'), encoding='utf-8') as handle:
        assert json.loads((tmp_path / 'intent' / 'nodes.json').read_text()) == yaml.safe_load(handle)
    assert os.stat(paths['intent_nodes_file']).st_mode & 0o777 == 0o600


def test_intent_read_two_ways_never_reaches_terraform(tmp_path):
    nodes = tmp_path / 'nodes.yaml'
    with open(os.path.join(FIXTURES, 'nodes.yaml'), encoding='utf-8') as handle:
        nodes.write_text(handle.read().replace('vmid: 232', 'vmid: 7_704'))
    with pytest.raises(CheckError) as err:
        _terraform.write_validated_intent(os.path.join(FIXTURES, 'cluster.yaml'), str(nodes), str(tmp_path / 'work'))
    assert err.value.check == 'intent_valid'
    assert "nodes[4].vmid (line " in str(err.value) and "'7_704'" in str(err.value)
    assert not os.path.exists(tmp_path / 'work' / 'intent')


# ------------------------------------------------------------------ recovery after a crash
def _vm_state(names_vmids, tainted=()):
    return json.dumps({'version': 4, 'resources': [{
        'mode': 'managed', 'type': 'proxmox_virtual_environment_vm', 'name': 'vm', 'instances': [
            {'index_key': name, 'status': 'tainted' if name in tainted else None, 'attributes': {'vm_id': vmid}}
            for name, vmid in names_vmids.items()]}]})


class RecordingTerraform(FakeTerraform):
    """Also answers import and untaint."""

    def __call__(self, argv, env, cwd, timeout):
        if argv[2] in ('import', 'untaint'):
            self.calls.append({'argv': list(argv), 'env': dict(env), 'cwd': cwd, 'timeout': timeout})
            return 0, '', ''
        return super().__call__(argv, env, cwd, timeout)


def _intent_vms():
    return _terraform.intent_vms(os.path.join(FIXTURES, 'nodes.yaml'))


@pytest.mark.parametrize('damage', [b'', b'{"version": 4, "resour'], ids=['empty', 'torn'])
def test_a_damaged_state_is_restored_from_the_snapshot_before_the_apply(project, damage):
    runner = make_runner(project, FakeTerraform())
    runner.prepare()
    good = _vm_state({'cp-1': 201}).encode()
    with open(runner.state_path, 'wb') as handle:
        handle.write(good)
    runner.snapshot_state()
    with open(runner.state_path, 'wb') as handle:
        handle.write(damage)  # what kill -9 during the apply left
    restored = runner.restore_state()
    assert restored['from'] == runner.pre_apply_path
    assert open(runner.state_path, 'rb').read() == good
    assert open(runner.state_path + '.damaged', 'rb').read() == damage


def test_a_damaged_first_state_means_no_state_and_a_state_without_a_good_copy_is_refused(project):
    runner = make_runner(project, FakeTerraform())
    runner.prepare()
    runner.snapshot_state()  # no state yet: the snapshot says so
    with open(runner.state_path, 'wb'):
        pass
    assert runner.restore_state()['detail'] == 'there was no state before the apply that crashed'
    assert not os.path.exists(runner.state_path)
    os.unlink(runner.pre_apply_path)
    with open(runner.state_path, 'wb'):
        pass
    with pytest.raises(CheckError) as err:
        runner.restore_state()
    assert err.value.check == 'terraform_state_valid' and 'no good copy' in str(err.value)
    assert 'Remediation' in str(err.value)


def test_the_snapshot_stays_until_an_apply_succeeds(project, monkeypatch):
    failing = make_runner(project, FakeTerraform(apply_rc=1))
    with pytest.raises(CheckError):
        failing.execute(intent_nodes_file=os.path.join(FIXTURES, 'nodes.yaml'))
    assert os.path.exists(failing.pre_apply_path)  # the next run checks the node for VMs the state lost
    runner = make_runner(project, FakeTerraform())
    monkeypatch.setattr(runner, 'proxmox_vms', lambda: {})
    runner.execute(intent_nodes_file=os.path.join(FIXTURES, 'nodes.yaml'))
    assert not os.path.exists(runner.pre_apply_path)


def test_after_a_killed_apply_the_pipelines_vms_are_adopted_and_others_refused(project, monkeypatch):
    intent = _intent_vms()
    first, second = sorted(intent)[:2]
    fake = RecordingTerraform()
    runner = make_runner(project, fake)
    runner.prepare()
    with open(runner.state_path, 'w', encoding='utf-8') as handle:
        handle.write(_vm_state({}))
    runner.snapshot_state()  # the apply was killed: its snapshot is still there
    managed = 'Managed by eminfra.pipeline (Terraform); talos controlplane.'
    node = {intent[first]: {'name': first, 'description': managed}}
    monkeypatch.setattr(runner, 'proxmox_vms', lambda: node)
    out = runner.recover(os.path.join(FIXTURES, 'nodes.yaml'))
    assert out['adopted'] == [{'name': first, 'vmid': intent[first], 'address': f'proxmox_virtual_environment_vm.vm["{first}"]'}]
    imported = [c['argv'] for c in fake.calls if c['argv'][2] == 'import']
    assert imported == [[BIN, f'-chdir={runner.chdir}', 'import', '-input=false', '-no-color', '-lock-timeout=0s',
                         f'proxmox_virtual_environment_vm.vm["{first}"]', f'pve/{intent[first]}']]
    assert fake.calls[-1]['env']['PROXMOX_VE_API_TOKEN'].endswith(SECRET)  # the provider's env, never argv
    # a VM with the intent's vmid that the pipeline did not create is never adopted
    node[intent[second]] = {'name': 'someone-elses', 'description': ''}
    with pytest.raises(CheckError) as err:
        runner.recover(os.path.join(FIXTURES, 'nodes.yaml'))
    assert err.value.check == 'terraform_vm_adopt' and f'VM {intent[second]}' in str(err.value)


def test_a_tainted_vm_that_exists_is_untainted(project, monkeypatch):
    intent = _intent_vms()
    name = sorted(intent)[0]
    fake = RecordingTerraform()
    runner = make_runner(project, fake)
    runner.prepare()
    with open(runner.state_path, 'w', encoding='utf-8') as handle:
        handle.write(_vm_state({name: intent[name]}, tainted=(name,)))
    monkeypatch.setattr(runner, 'proxmox_vms', lambda: {intent[name]: {'name': name, 'description': ''}})
    out = runner.recover(os.path.join(FIXTURES, 'nodes.yaml'))
    assert out == {'adopted': [], 'untainted': [{'name': name, 'vmid': intent[name],
                                                 'address': f'proxmox_virtual_environment_vm.vm["{name}"]'}]}
    address = f'proxmox_virtual_environment_vm.vm["{name}"]'
    assert [c['argv'][2:] for c in fake.calls] == [['untaint', '-no-color', '-lock-timeout=0s', address]]


def test_on_a_first_run_a_vm_holding_an_intent_vmid_is_refused_unless_it_is_the_pipelines(project, monkeypatch):
    """The provider reads Proxmox's "already exists" on create as done: without this check a first run
    would silently take over whatever VM holds a vmid of the intent."""
    intent = _intent_vms()
    first, second = sorted(intent)[:2]
    fake = RecordingTerraform()
    runner = make_runner(project, fake)
    runner.prepare()
    assert not os.path.exists(runner.pre_apply_path) and not os.path.exists(runner.state_path)
    node = {intent[first]: {'name': 'someone-elses', 'description': 'a database'}}
    monkeypatch.setattr(runner, 'proxmox_vms', lambda: node)
    with pytest.raises(CheckError) as err:
        runner.recover(os.path.join(FIXTURES, 'nodes.yaml'))
    assert err.value.check == 'terraform_vm_adopt' and f'VM {intent[first]}' in str(err.value)
    assert 'Remediation' in str(err.value)
    assert not fake.calls  # nothing imported, nothing touched
    # the pipeline's own VM whose state was lost (no crash recorded) is adopted and reported
    node = {intent[second]: {'name': second, 'description': 'Managed by eminfra.pipeline (Terraform); ubuntu.'}}
    monkeypatch.setattr(runner, 'proxmox_vms', lambda: node)
    out = runner.recover(os.path.join(FIXTURES, 'nodes.yaml'))
    assert out['adopted'] == [{'name': second, 'vmid': intent[second],
                               'address': f'proxmox_virtual_environment_vm.vm["{second}"]'}]
    assert [c['argv'][2] for c in fake.calls] == ['import']
