# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""proxmox_token_check against pvesim over verified HTTPS, each case through ansible-playbook -vvvv.

Every case also proves the token secret appears nowhere: not in the output, the log, the task
result, or any file under the state directory other than proxmox.env.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.proxmox_access.helpers import INTENT, run_module, write_env, write_intent


def _state(tmp_path, pvesim, token='full', **override):
    """A state dir whose proxmox.env is pvesim's env file for ``token`` with ``override``s."""
    values = dict(pvesim.env(token))
    values.update(override)
    values = {key: val for key, val in values.items() if val is not None}
    state = tmp_path / 'state'
    env_file = write_env(state / 'proxmox.env', values)
    return state, env_file, values


def _check(tmp_path, pvesim, token='full', nodes=None, cluster=None, **override):
    state, env_file, values = _state(tmp_path, pvesim, token, **override)
    args = dict(write_intent(tmp_path / 'intent', cluster=cluster, nodes=nodes), env_file=str(env_file))
    run = run_module(tmp_path, state, args)
    run.assert_secret_absent(values['PROXMOX_TOKEN_SECRET'])
    return run, values


def _by_id(result, check, step=None):
    return [c for c in result['checks'] if c['id'] == check and (step is None or c.get('step') == step)]


GPU_NODES = ('nodes:\n  - {name: cp-01, role: controlplane, os: talos, vmid: 7701, cores: 2, memory: 4096,'
             ' disk: 20, ipv4: 10.77.0.10}\n'
             '  - {name: gpu-01, role: gpu-worker, os: talos, vmid: 7703, cores: 4, memory: 8192, disk: 40,'
             ' ipv4: 10.77.0.30, pci_mapping: gpu0}\n')


def test_full_token_passes(tmp_path, pvesim):
    run, values = _check(tmp_path, pvesim, nodes=GPU_NODES)
    result = run.result
    assert run.rc == 0, result.get('msg')
    assert result['changed'] is False and not result.get('failed')
    assert [c for c in result['checks'] if c['status'] == 'fail'] == []
    assert result['proxmox_version']['version'] == '9.1.1'
    assert result['missing_privileges'] == [] and result['remediation'] == []
    for step in ('templates', 'terraform_apply', 'ansible_inventory'):
        assert [c['status'] for c in _by_id(result, 'token_privileges', step)] == ['pass']
    assert 'Mapping.Use' not in str(result['missing_privileges'])
    assert 'pass the mapped PCI device gpu0 through' in _by_id(result, 'token_privileges', 'terraform_apply')[0]['detail']
    assert [c['status'] for c in _by_id(result, 'storage_content')] == ['pass']
    assert result['proxmox_env'] == {key: values[key] for key in ('PROXMOX_API_URL', 'PROXMOX_NODE', 'PROXMOX_TOKEN_ID',
                                                                  'PROXMOX_TLS_VERIFY', 'PROXMOX_CA_BUNDLE')}
    assert 'certificate verified against ' + values['PROXMOX_CA_BUNDLE'] in _by_id(result, 'proxmox_reachable')[0]['detail']


def test_noacl_names_privilege_separated_token_without_acls(tmp_path, pvesim):
    run, dummy = _check(tmp_path, pvesim, token='noacl')
    result = run.result
    assert run.rc != 0
    assert result['failed_check'] == 'token_privileges'
    msg = result['msg']
    assert msg.startswith('token_privileges: ')
    assert 'pipeline@pve!noacl' in msg and 'is privilege-separated and has no ACLs' in msg
    for step in ('templates', 'terraform_apply', 'ansible_inventory'):
        assert [c['status'] for c in _by_id(result, 'token_privileges', step)] == ['fail']
    commands = result['remediation']
    assert commands[0].startswith("pveum role add EMInfraPipeline --privs '")
    for path in ('/vms', '/storage/local', '/storage/local-lvm', '/sdn/zones/localnetwork/vmbr0', '/nodes/pve'):
        assert f"pveum acl modify {path} --tokens 'pipeline@pve!noacl' --roles EMInfraPipeline" in commands
    assert "pveum acl modify /vms --users 'pipeline@pve' --roles EMInfraPipeline" in commands
    assert "pveum acl modify /vms --tokens 'pipeline@pve!noacl' --roles EMInfraPipeline" in msg
    assert msg.rstrip().endswith(')') or msg.rstrip().endswith('EMInfraPipeline')


def test_nodownload_fails_only_templates(tmp_path, pvesim):
    run, dummy = _check(tmp_path, pvesim, token='nodownload')
    result = run.result
    assert result['failed_check'] == 'token_privileges'
    assert [c['status'] for c in _by_id(result, 'token_privileges', 'templates')] == ['fail']
    assert [c['status'] for c in _by_id(result, 'token_privileges', 'terraform_apply')] == ['pass']
    assert [c['status'] for c in _by_id(result, 'token_privileges', 'ansible_inventory')] == ['pass']
    assert {m['step'] for m in result['missing_privileges']} == {'templates'}
    assert result['missing_privileges'] == [{'step': 'templates', 'path': '/nodes/pve', 'privilege': 'Sys.AccessNetwork'}]
    assert "pveum role add EMInfraPipeline --privs 'Sys.AccessNetwork'" in result['remediation']
    assert "pveum acl modify /nodes/pve --tokens 'pipeline@pve!nodownload' --roles EMInfraPipeline" in result['remediation']
    msg = result['msg']
    assert 'Sys.AccessNetwork on /nodes/pve or Sys.Audit+Sys.Modify on /' in msg
    assert 'uploaded' in msg  # the upload fallback is named
    assert 'Remediation: run on the Proxmox host: pveum role add EMInfraPipeline' in msg


@pytest.mark.parametrize('case', ['wrong_secret', 'unknown_token', 'expired_token', 'disabled_user'])
def test_rejected_token_says_why(case, tmp_path, pvesim):
    if case == 'wrong_secret':
        override = {'PROXMOX_TOKEN_SECRET': '00000000-dead-beef-0000-000000000000'}
        token_id = 'pipeline@pve!full'
    elif case == 'unknown_token':
        override = {'PROXMOX_TOKEN_ID': 'pipeline@pve!nosuchtoken'}
        token_id = 'pipeline@pve!nosuchtoken'
    elif case == 'disabled_user':
        token_id = 'offboarded@pve!ci'
        pvesim.control('user', userid='offboarded@pve', enable=0)
        made = pvesim.control('token', tokenid=token_id, privsep=0)
        override = {'PROXMOX_TOKEN_ID': token_id, 'PROXMOX_TOKEN_SECRET': made['secret']}
    else:
        token_id = 'pipeline@pve!expired'
        made = pvesim.control('token', tokenid=token_id, privsep=0, expire=int(time.time()) - 3600)
        override = {'PROXMOX_TOKEN_ID': token_id, 'PROXMOX_TOKEN_SECRET': made['secret']}
    run, dummy = _check(tmp_path, pvesim, **override)
    result = run.result
    assert result['failed_check'] == 'token_valid'
    msg = result['msg']
    assert msg.startswith('token_valid: GET ' + pvesim.url + '/api2/json/version: Proxmox answered 401 '
                          'Authentication failed! for token ' + token_id)
    for cause in ('secret is wrong', 'has expired', 'user is disabled'):
        assert cause in msg
    user, name = token_id.split('!')
    assert f'pveum user token list {user}' in msg and f'pveum user token add {user} {name}' in msg
    assert [c['status'] for c in _by_id(result, 'proxmox_reachable')] == ['pass']


def test_untrusted_certificate_then_ca_bundle(tmp_path, pvesim):
    run, dummy = _check(tmp_path / 'untrusted', pvesim, PROXMOX_CA_BUNDLE=None)
    result = run.result
    assert result['failed_check'] == 'proxmox_tls'
    msg = result['msg']
    assert msg.startswith(f'proxmox_tls: GET {pvesim.url}/api2/json/version: TLS verification of ')
    assert 'failed (unable to get local issuer certificate)' in msg
    assert 'not trusted by the system CA store' in msg
    assert 'Remediation: set PROXMOX_CA_BUNDLE' in msg and 'PROXMOX_TLS_VERIFY' in msg
    run, dummy = _check(tmp_path / 'trusted', pvesim)
    assert run.rc == 0, run.result.get('msg')


def test_server_error_that_clears_after_two_tries_passes(tmp_path, pvesim):
    pvesim.control('clear_faults')
    pvesim.control('fault', kind='error', method='GET', path='/version', status=500, count=2,
                   message='simulated pveproxy restart')
    try:
        run, dummy = _check(tmp_path, pvesim)
        assert run.rc == 0, run.result.get('msg')
        assert pvesim.control('faults') == []  # both faults were answered, then the third try passed
    finally:
        pvesim.control('clear_faults')


def test_server_error_that_persists_fails_with_proxmox_api(tmp_path, pvesim):
    pvesim.control('clear_faults')
    pvesim.control('fault', kind='error', method='GET', path='/nodes', status=500, count=10,
                   message='simulated persistent failure')
    try:
        run, dummy = _check(tmp_path, pvesim)
        assert run.result['failed_check'] == 'proxmox_api'
        assert '500 simulated persistent failure' in run.result['msg']
        remaining = pvesim.control('faults')
        assert remaining and remaining[0]['count'] == 6  # one try and three retries, then it stops
    finally:
        pvesim.control('clear_faults')


def test_storage_list_that_keeps_failing_fails_storage_content(tmp_path, pvesim):
    """The storage check cannot run when /nodes/{node}/storage keeps answering 503: it fails with
    its id and the API path, it is never a silent skip of a step reported completed."""
    pvesim.control('clear_faults')
    pvesim.control('fault', kind='error', method='GET', path='/nodes/pve/storage', status=503, count=50,
                   message='simulated storage daemon down')
    try:
        run, dummy = _check(tmp_path, pvesim)
    finally:
        pvesim.control('clear_faults')
    result = run.result
    assert run.rc != 0 and result['failed'] is True
    assert result['failed_check'] == 'storage_content'
    assert result['msg'].startswith(f'storage_content: {pvesim.url}/api2/json/nodes/pve/storage: cannot list the '
                                    'storages of node pve: ')
    assert '503' in result['msg'] and 'Remediation: ' in result['msg']
    assert [c['status'] for c in _by_id(result, 'storage_content')] == ['fail']
    assert not [c for c in result['checks'] if c['status'] == 'skip' and c['id'] == 'storage_content']


def test_unknown_node_fails_with_node_present(tmp_path, pvesim):
    run, dummy = _check(tmp_path, pvesim, PROXMOX_NODE='pve-nosuch')
    result = run.result
    assert result['failed_check'] == 'node_present'
    assert result['msg'].startswith(f"node_present: {pvesim.url}/api2/json/nodes: node 'pve-nosuch' is not in the cluster")
    assert result['msg'].endswith('Remediation: set PROXMOX_NODE in proxmox.env to one of: pve')


def test_missing_storage_fails_storage_content(tmp_path, pvesim):
    cluster = INTENT['cluster.yaml'].replace('vm_storage: local-lvm', 'vm_storage: fast-ssd')
    assert 'fast-ssd' in cluster
    run, dummy = _check(tmp_path, pvesim, cluster=cluster)
    assert run.result['failed_check'] == 'storage_content'
    assert 'fast-ssd does not exist on node pve' in run.result['msg']


def test_template_storage_without_import_content_fails_storage_content(tmp_path, pvesim):
    """The templates step places the disk images as import content: a storage without it fails now,
    not after the downloads."""
    cluster = INTENT['cluster.yaml'].replace('template_storage: local', 'template_storage: local-lvm')
    assert 'template_storage: local-lvm' in cluster
    run, dummy = _check(tmp_path, pvesim, cluster=cluster)
    assert run.result['failed_check'] == 'storage_content'
    # (pvesim's local-lvm holds images and rootdir, as a host's default local-lvm does)
    assert 'template_storage local-lvm holds images,rootdir, needs import' in run.result['msg']
    assert 'pvesm set local --content iso,vztmpl,import' in run.result['msg']


def test_values_as_options_without_verification_warn(tmp_path, pvesim):
    """The options form: token_secret is no_log, validate_certs=false passes with a proxmox_tls warning."""
    values = pvesim.env('full')
    state = tmp_path / 'state'
    state.mkdir()
    args = {'api_url': values['PROXMOX_API_URL'] + '/api2/json', 'node': values['PROXMOX_NODE'],
            'token_id': values['PROXMOX_TOKEN_ID'], 'token_secret': values['PROXMOX_TOKEN_SECRET'],
            'validate_certs': False, 'vm_storage': 'local-lvm', 'template_storage': 'local', 'bridge': 'vmbr0',
            'steps': ['templates']}
    run = run_module(tmp_path, state, args)
    run.assert_secret_absent(values['PROXMOX_TOKEN_SECRET'])
    result = run.result
    assert run.rc == 0, result.get('msg')
    assert [c['status'] for c in _by_id(result, 'proxmox_tls')] == ['warn']
    assert any(w.startswith('proxmox_tls: certificate verification is off') for w in result['warnings'])
    assert [c['status'] for c in _by_id(result, 'token_privileges', 'terraform_apply')] == ['skip']
    assert 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER' in run.output  # the -vvvv invocation shows the masked option


def test_check_mode_reads_the_same_and_changes_nothing(tmp_path, pvesim):
    state, env_file, values = _state(tmp_path, pvesim)
    before = sorted(str(p) for p in state.rglob('*'))
    args = dict(write_intent(tmp_path / 'intent'), env_file=str(env_file))
    run = run_module(tmp_path, state, args, check_mode=True)
    run.assert_secret_absent(values['PROXMOX_TOKEN_SECRET'])
    assert run.rc == 0, run.result.get('msg')
    assert run.result['changed'] is False
    assert [c['status'] for c in _by_id(run.result, 'token_privileges', 'templates')] == ['pass']
    assert sorted(str(p) for p in state.rglob('*')) == before


@pytest.fixture()
def pve_version(pvesim):
    """Set the simulated Proxmox VE version for one test, then restore it."""
    original = pvesim.control('settings')['version']

    def setter(version):
        pvesim.control('settings', version=version)
    yield setter
    pvesim.control('settings', version=original)


def test_pve8_needs_vm_monitor_and_warns_about_import(tmp_path, pvesim, pve_version):
    pve_version('8.3.2')
    run, dummy = _check(tmp_path, pvesim)
    result = run.result
    assert result['failed_check'] == 'token_privileges'
    assert result['missing_privileges'] == [{'step': 'ansible_inventory', 'path': '/vms', 'privilege': 'VM.Monitor'}]
    assert [c['status'] for c in _by_id(result, 'token_privileges', 'templates')] == ['pass']
    assert 'import content needs Proxmox VE 8.4' in ' '.join(c['detail'] for c in _by_id(result, 'proxmox_version'))


def test_pve7_is_refused(tmp_path, pvesim, pve_version):
    pve_version('7.4.3')
    run, dummy = _check(tmp_path, pvesim)
    assert run.result['failed_check'] == 'proxmox_version'
    assert run.result['msg'].startswith('proxmox_version: ')
    assert 'older than 8.0' in run.result['msg'] and 'upgrade' in run.result['msg']


def test_no_answer_in_time_is_a_timeout(tmp_path, pvesim):
    pvesim.control('clear_faults')
    pvesim.control('fault', kind='latency', method='GET', path='/version', seconds=3, count=2)
    try:
        state, env_file, values = _state(tmp_path, pvesim)
        args = dict(write_intent(tmp_path / 'intent'), env_file=str(env_file), timeout=1, retries=1)
        run = run_module(tmp_path, state, args)
        run.assert_secret_absent(values['PROXMOX_TOKEN_SECRET'])
        assert run.result['failed_check'] == 'proxmox_reachable'
        assert 'no answer from 127.0.0.1' in run.result['msg'] and 'within 1 s' in run.result['msg']
    finally:
        pvesim.control('clear_faults')


def test_noaccess_below_a_granted_path_is_seen(tmp_path, pvesim):
    """A NoAccess ACL leaves its path out of GET /access/permissions; the check asks for that path itself."""
    token_id = 'masked@pve!ci'
    pvesim.control('user', userid='masked@pve')
    made = pvesim.control('token', tokenid=token_id, privsep=0)
    pvesim.control('acl', path='/', role='PipelineFull', user='masked@pve')
    pvesim.control('acl', path='/mapping/pci/gpu0', role='NoAccess', user='masked@pve')
    run, dummy = _check(tmp_path, pvesim, nodes=GPU_NODES, PROXMOX_TOKEN_ID=token_id,
                        PROXMOX_TOKEN_SECRET=made['secret'])
    result = run.result
    assert result['failed_check'] == 'token_privileges'
    assert result['missing_privileges'] == [{'step': 'terraform_apply', 'path': '/mapping/pci/gpu0',
                                             'privilege': 'Mapping.Use'}]
    assert "pveum acl modify /mapping/pci/gpu0 --tokens 'masked@pve!ci' --roles EMInfraPipeline" in result['remediation']


def test_connection_refused_is_its_own_failure(tmp_path, pvesim):
    # A port on loopback that nothing listens on: the operator is told the connection was refused
    # (not a TLS, authentication or timeout problem), after the bounded retries.
    import socket  # pylint: disable=import-outside-toplevel
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    state, env_file, values = _state(tmp_path, pvesim, PROXMOX_API_URL=f'https://127.0.0.1:{port}/api2/json')
    args = dict(write_intent(tmp_path / 'intent'), env_file=str(env_file), timeout=2, retries=1)
    run = run_module(tmp_path, state, args)
    run.assert_secret_absent(values['PROXMOX_TOKEN_SECRET'])
    assert run.result['failed_check'] == 'proxmox_reachable'
    assert run.result['msg'].startswith('proxmox_reachable: ')
    assert f'connection to 127.0.0.1:{port} refused' in run.result['msg']
    assert any('PROXMOX_API_URL' in line for line in run.result['remediation'])
    # Nothing but the connection failed: no authentication or privilege verdict is given.
    assert not [c for c in run.result['checks'] if c['id'] in ('token_valid', 'token_privileges') and c['status'] == 'fail']


CONTAINER_NODES = INTENT['nodes.yaml'] + ('  - {name: ct-01, role: utility, os: ubuntu, guest: lxc, vmid: 7705, cores: 1,'
                                          ' memory: 1024, disk: 8, ipv4: 10.77.0.41, groups: [base, docker]}\n')


def test_an_intent_with_a_container_checks_the_container_privileges_and_content(tmp_path, pvesim):
    """With a container in the intent, terraform_apply also needs the container privileges, and
    the storages the rootdir (root file systems) and vztmpl (the template) content types."""
    run, dummy = _check(tmp_path, pvesim, nodes=CONTAINER_NODES)
    result = run.result
    assert run.rc == 0, result.get('msg')
    detail = _by_id(result, 'token_privileges', 'terraform_apply')[0]['detail']
    assert 'create, configure, start and read the containers (from the container template on local' in detail
    assert [c['status'] for c in _by_id(result, 'storage_content')] == ['pass']
    # The same token without a container: no container rule.
    plain, dummy = _check(tmp_path / 'plain', pvesim)
    assert 'containers' not in _by_id(plain.result, 'token_privileges', 'terraform_apply')[0]['detail']


def test_a_container_needs_rootdir_and_vztmpl_content(tmp_path):
    """A host whose VM storage holds no rootdir content (and template storage no vztmpl) passes
    for VMs only, and fails storage_content with the pvesm remediation once the intent has a
    container."""
    from tests.pvesim.fixtures import start, stop
    scenario = tmp_path / 'storages.yml'
    scenario.write_text(
        'storages:\n'
        '  - {id: local, type: dir, content: [iso, import], total: 107374182400}\n'
        '  - {id: local-lvm, type: lvmthin, content: [images], total: 429496729600}\n')
    sim = start(str(tmp_path / 'sim'), scenario=str(scenario))
    try:
        plain, dummy = _check(tmp_path / 'vms', sim)
        assert plain.rc == 0, plain.result.get('msg')
        run, dummy = _check(tmp_path / 'containers', sim, nodes=CONTAINER_NODES)
        assert run.rc != 0
        assert run.result['failed_check'] == 'storage_content'
        msg = run.result['msg']
        assert 'vm_storage local-lvm holds images, needs rootdir' in msg
        assert 'template_storage local holds import,iso, needs vztmpl' in msg
        assert 'pvesm set <storage> --content <types>' in msg
    finally:
        stop(sim)
