# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab behind make demo and the molecule scenarios (tests/demo/lab.py, tests/demo/demo.py):
an operator's state root is never touched, proxmox.env is written as the pipeline wants it, and
every server stops again, also when the demo is interrupted. Without test hosts (those are
covered by the molecule scenarios), so these run anywhere."""

from __future__ import annotations

import json
import os
import signal
import ssl
import stat
import subprocess
import sys
import time
import urllib.request

import jinja2
import yaml

from ansible_collections.eminfra.pipeline.plugins.module_utils._envfile import read_env_file
from tests.pvesim.state import image_virtual_size

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
LAB = os.path.join(REPO, 'tests', 'demo', 'lab.py')
DEMO = os.path.join(REPO, 'tests', 'demo', 'demo.py')
# What the lab may set for the pipeline: locations only (where the artefacts come from, the key
# the test hosts accept). Everything else is the roles' defaults: the demo and molecule prove
# what an operator gets. A new entry here needs a reason that it is a location.
ALLOWED_LAB_VARS = {'templates_ubuntu_base_url', 'templates_talos_factory_url', 'templates_ubuntu_lxc_index_url',
                    'terraform_apply_ssh_public_key'}


def templates_defaults_with(overrides: dict) -> dict:
    """The templates role's defaults with ``overrides``, every Jinja expression resolved."""
    with open(os.path.join(REPO, 'roles', 'templates', 'defaults', 'main.yml'), encoding='utf-8') as handle:
        values = {**yaml.safe_load(handle), **overrides}
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    for dummy in range(5):
        values = {k: env.from_string(v).render(values) if isinstance(v, str) else v for k, v in values.items()}
    return values


def lab(tmp_path, *args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, LAB, '--lab-dir', str(tmp_path / 'lab'), '--state-dir', str(tmp_path / 'state'),
            '--prefix', 'emtl', *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


def processes_naming(text: str) -> list[int]:
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f'/proc/{entry}/cmdline', 'rb') as handle:
                    cmdline = handle.read().replace(b'\0', b' ').decode(errors='replace')
                with open(f'/proc/{entry}/stat', encoding='utf-8') as handle:
                    zombie = handle.read().rsplit(')', 1)[-1].split()[0] == 'Z'
            except OSError:
                continue
            if text in cmdline and not zombie:
                found.append(int(entry))
    return found


def test_up_refuses_a_state_root_with_an_operators_proxmox_env(tmp_path):
    state = tmp_path / 'state'
    state.mkdir()
    operator = state / 'proxmox.env'
    operator.write_text("PROXMOX_TOKEN_SECRET='the-operators-own'\n")
    proc = lab(tmp_path, 'up', '--hosts', 'no', '--fresh')
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith('lab_state_root:'), proc.stderr
    assert str(operator) in proc.stderr and 'Remediation' in proc.stderr
    assert operator.read_text() == "PROXMOX_TOKEN_SECRET='the-operators-own'\n"
    assert sorted(os.listdir(state)) == ['proxmox.env']
    assert not (tmp_path / 'lab' / 'lab.json').exists()
    assert processes_naming(str(tmp_path / 'lab')) == []


def test_up_writes_proxmox_env_and_vars_and_down_stops_every_server(tmp_path):
    proc = lab(tmp_path, 'up', '--hosts', 'no', '--artefact-mib', '1', '--token', 'noacl')
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    env_path = tmp_path / 'state' / 'proxmox.env'
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600
    assert read_env_file(str(env_path)) == read_env_file(info['pvesim']['env_files']['noacl'])
    assert info['skipped_hosts'] == 'not asked for (--hosts no)' and info['hosts'] is None
    variables = yaml.safe_load((tmp_path / 'state' / 'lab-vars.yml').read_text())
    # The guard: the lab overrides locations only, never a default (a type, an image, a storage,
    # a timeout, an interval, a Terraform environment).
    assert set(variables) == ALLOWED_LAB_VARS, sorted(set(variables) - ALLOWED_LAB_VARS)
    assert variables['templates_ubuntu_base_url'].startswith(info['mirror']['url'] + '/ubuntu/')
    assert variables['templates_talos_factory_url'].startswith(info['mirror']['url'] + '/')
    # With only the base URLs, the role's default URLs are what the mirror serves.
    defaults = templates_defaults_with(variables)
    # The simulator answers over HTTPS with its own CA, the mirror serves the artefact.
    context = ssl.create_default_context(cafile=info['pvesim']['ca'])
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    request = urllib.request.Request(f'{info["pvesim"]["url"]}/api2/json/version')
    try:
        opener.open(request, timeout=30)
    except urllib.error.HTTPError as err:
        assert err.code == 401  # no token sent: the real server's answer
    for name in ('ubuntu', 'talos'):
        with opener.open(defaults[f'templates_{name}_url'], timeout=30) as response:
            image = response.read()
        assert len(image) == 1 << 20 and image[:4] == b'QFI\xfb', name  # a qcow2 disk image
        (tmp_path / f'{name}.qcow2').write_bytes(image)
        assert 1 << 20 <= image_virtual_size(str(tmp_path / f'{name}.qcow2')) <= 20 << 30, name
    assert defaults['templates_talos_url'].endswith('/v1.11.5/nocloud-amd64.qcow2')
    checksum_url = defaults['templates_ubuntu_checksum'].split(':', 1)[1]
    with opener.open(checksum_url, timeout=30) as response:
        assert ' *noble-server-cloudimg-amd64.img\n' in response.read().decode()
    # Everything the lab holds that carries a token stays outside the state root.
    assert sorted(os.listdir(tmp_path / 'state')) == ['.eminfra-lab', 'lab-vars.yml', 'proxmox.env']
    pids = [info['pvesim']['pid'], info['mirror']['pid']]
    assert set(pids) <= set(processes_naming(str(tmp_path / 'lab')))

    down = lab(tmp_path, 'down')
    assert down.returncode == 0, down.stderr
    assert sorted(json.loads(down.stdout)['stopped']) == ['mirror', 'pvesim']
    assert processes_naming(str(tmp_path / 'lab')) == []
    assert not (tmp_path / 'lab' / 'lab.json').exists()
    assert list((tmp_path / 'lab' / 'pvesim').glob('*.env')) == []  # the simulator's tokens went with it
    assert env_path.exists()
    again = lab(tmp_path, 'down')
    assert again.returncode == 0 and json.loads(again.stdout)['stopped'] == []


def test_lab_vars_are_locations_only():
    """The same guard without starting a lab: what lab_vars() writes, for any mirror and key."""
    from tests.demo import lab as lab_module  # pylint: disable=import-outside-toplevel

    written = lab_module.lab_vars({'url': 'http://127.0.0.1:1'}, 'ssh-ed25519 AAAA test')
    assert set(written) == ALLOWED_LAB_VARS == set(lab_module.LAB_VARS)
    assert written['terraform_apply_ssh_public_key'] == 'ssh-ed25519 AAAA test'
    # Another intent (one with a container): its file locations for every step, nothing else.
    other = lab_module.lab_vars({'url': 'http://127.0.0.1:1'}, 'ssh-ed25519 AAAA test', '/elsewhere/intent')
    assert set(other) - ALLOWED_LAB_VARS == set(lab_module.INTENT_LAB_VARS)
    assert other['terraform_apply_intent_nodes_file'] == '/elsewhere/intent/nodes.yaml'
    assert other['proxmox_access_cluster_file'] == '/elsewhere/intent/cluster.yaml'


def test_demo_stops_the_lab_when_interrupted(tmp_path):
    env = dict(os.environ, DEMO_HOSTS='no', DEMO_ARTEFACT_MIB='1')
    argv = [sys.executable, DEMO, '--state-dir', str(tmp_path / 'state'), '--lab-dir', str(tmp_path / 'lab')]
    # Started with SIGINT ignored, as a non-interactive shell starts a background job (and as CI may):
    # the demo must still stop on Ctrl-C.
    demo = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # pylint: disable=subprocess-popen-preexec-fn
    # The run holds its lock from its first task to its last: interrupt while it is held
    # (the playbook's output file is block-buffered, so it is no sign of progress).
    lock = tmp_path / 'state' / 'runs' / 'run.lock'
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not lock.exists():
        assert demo.poll() is None, demo.stdout.read()
        time.sleep(0.05)
    assert lock.exists(), 'the demo never started the pipeline run'
    record = json.loads((tmp_path / 'lab' / 'lab.json').read_text())
    assert processes_naming(str(tmp_path / 'lab'))
    demo.send_signal(signal.SIGINT)
    output, dummy = demo.communicate(timeout=120)
    assert demo.returncode == 130, output
    assert 'interrupted; stopping the lab' in output and 'lab stopped (mirror, pvesim' in output
    assert processes_naming(str(tmp_path / 'lab')) == [], output
    # The playbook run named the state root in its command line (-e @<state>/lab-vars.yml): it is gone too.
    assert processes_naming(str(tmp_path)) == [], output
    assert not (tmp_path / 'lab' / 'lab.json').exists()
    assert record['pvesim']['pid'] not in processes_naming('tests.pvesim')


def test_pipeline_runs_resolve_the_checkout_even_under_an_inherited_collections_path(tmp_path, monkeypatch):
    """molecule exports ANSIBLE_COLLECTIONS_PATH naming an installed copy; the lab's runs still use the checkout."""
    from tests.demo import lab as lab_module  # pylint: disable=import-outside-toplevel

    stale = tmp_path / 'stale'
    modules = stale / 'ansible_collections' / 'eminfra' / 'pipeline' / 'plugins' / 'modules'
    modules.mkdir(parents=True)
    stale_doc = 'DOCUMENTATION = "module: latest_env\\nshort_description: stale"\n'
    (modules / 'latest_env.py').write_text(stale_doc, encoding='utf-8')
    monkeypatch.setenv('ANSIBLE_COLLECTIONS_PATH', str(stale))
    env = lab_module.ansible_env({'state_dir': str(tmp_path / 'state')})
    assert 'ANSIBLE_COLLECTIONS_PATH' not in env
    doc = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-doc'), '--json',
                          'eminfra.pipeline.latest_env'], env=env, cwd=str(tmp_path), capture_output=True, text=True,
                         timeout=120, check=True)
    filename = json.loads(doc.stdout)['eminfra.pipeline.latest_env']['doc']['filename']
    assert os.path.realpath(filename) == os.path.join(REPO, 'plugins', 'modules', 'latest_env.py')
