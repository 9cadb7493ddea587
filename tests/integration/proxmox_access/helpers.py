# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers for the proxmox_access tests: ansible-playbook at -vvvv, a connection recorder."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import threading

REPO = pathlib.Path(__file__).resolve().parents[3]
BIN = pathlib.Path(sys.executable).parent
INTENT = {
    'cluster.yaml': ('cluster:\n  name: em-test\n  talos_version: v1.11.5\n  kubernetes_version: v1.34.1\n'
                     '  controlplane_endpoint: https://10.77.0.10:6443\n'
                     '  network: {cidr: 10.77.0.0/24, gateway: 10.77.0.1, dns: [10.77.0.1]}\n'
                     '  proxmox: {vm_storage: local-lvm, template_storage: local, bridge: vmbr0}\n'),
    'nodes.yaml': ('nodes:\n  - {name: cp-01, role: controlplane, os: talos, vmid: 7701, cores: 2, memory: 4096,'
                   ' disk: 20, ipv4: 10.77.0.10}\n'),
}


class PlaybookRun:
    """One ansible-playbook run: rc, output, the registered result and every file it left."""

    def __init__(self, proc: subprocess.CompletedProcess, result_file: pathlib.Path, log_file: pathlib.Path,
                 state_dir: pathlib.Path) -> None:
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        self.log = log_file.read_text(encoding='utf-8') if log_file.exists() else ''
        self.result = json.loads(result_file.read_text(encoding='utf-8')) if result_file.exists() else None
        self.state_dir = state_dir

    def assert_secret_absent(self, secret: str) -> None:
        """Nowhere in the output, the log, the task result, or any state file but proxmox.env."""
        assert secret, 'the secret under test is empty'
        assert secret not in self.output
        assert secret not in self.log
        assert secret not in json.dumps(self.result)
        for path in self.state_dir.rglob('*'):
            if path.is_file() and path != self.state_dir / 'proxmox.env':
                assert secret not in path.read_text(encoding='utf-8', errors='replace'), path


def write_intent(directory: pathlib.Path, cluster: str | None = None, nodes: str | None = None) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / 'cluster.yaml').write_text(cluster or INTENT['cluster.yaml'], encoding='utf-8')
    (directory / 'nodes.yaml').write_text(nodes or INTENT['nodes.yaml'], encoding='utf-8')
    return {'cluster_file': str(directory / 'cluster.yaml'), 'nodes_file': str(directory / 'nodes.yaml')}


def run_module(tmp_path: pathlib.Path, state_dir: pathlib.Path, args: dict, role: bool = False,
               extra_vars: dict | None = None, check_mode: bool = False, start_run: bool = True,
               close_run: bool = False) -> PlaybookRun:
    """Run proxmox_token_check (or the proxmox_access role, recorded by pipeline_run the way site.yml records
    it) at -vvvv; keep the task result."""
    work = tmp_path / 'run'
    work.mkdir(parents=True, exist_ok=True)
    result_file = work / 'result.json'
    log_file = work / 'ansible.log'
    if role:
        tasks = [
            {'name': 'Start a run', 'when': start_run,
             'eminfra.pipeline.latest_env': {'start_run': True, 'state_dir': '{{ eminfra_state_dir }}'}},
            {'name': 'Run the proxmox_access role', 'block': [
                {'name': 'Include the role', 'ansible.builtin.include_role': {'name': 'eminfra.pipeline.proxmox_access'}},
                {'name': 'Record the step', 'eminfra.pipeline.pipeline_run': {
                    'action': 'step', 'step': 'proxmox_access', 'result': '{{ proxmox_access_result }}'}},
            ], 'rescue': [
                {'name': 'Keep the failure', 'ansible.builtin.copy': {
                    'content': '{{ ansible_failed_result | to_json }}', 'dest': str(result_file), 'mode': '0600'}},
                {'name': 'Record the failed step', 'eminfra.pipeline.pipeline_run': {
                    'action': 'step', 'step': 'proxmox_access', 'event': 'failed', 'result': '{{ ansible_failed_result }}'}},
                {'name': 'Fail again', 'ansible.builtin.fail': {'msg': '{{ ansible_failed_result.msg }}'}},
            ]},
            {'name': 'Close the run', 'when': close_run,
             'eminfra.pipeline.latest_env': {'run_status': 'succeeded'}},
            {'name': 'Keep the result', 'ansible.builtin.copy': {
                'content': '{{ proxmox_access_result | to_json }}', 'dest': str(result_file), 'mode': '0600'}},
        ]
    else:
        tasks = [
            {'name': 'Check the token', 'eminfra.pipeline.proxmox_token_check': args,
             'register': 'check', 'ignore_errors': True, 'check_mode': check_mode},
            {'name': 'Keep the result', 'ansible.builtin.copy': {
                'content': '{{ check | to_json }}', 'dest': str(result_file), 'mode': '0600'}},
            {'name': 'Fail when the check failed', 'ansible.builtin.fail': {'msg': 'check failed'},
             'when': 'check is failed'},
        ]
    play = [{'name': 'proxmox_access test', 'hosts': 'localhost', 'gather_facts': False, 'tasks': tasks}]
    playbook = work / 'play.yml'
    playbook.write_text(json.dumps(play), encoding='utf-8')
    env = dict(os.environ)
    env.update({
        'ANSIBLE_CONFIG': str(REPO / 'ansible.cfg'),
        'ANSIBLE_COLLECTIONS_PATH': str(REPO / '.collections'),
        'ANSIBLE_LOG_PATH': str(log_file),
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_LOCALHOST_WARNING': 'false',
        'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'false',
        'EMINFRA_STATE_DIR': str(state_dir),
        'EMINFRA_PROJECT_ROOT': str(REPO),
        'PATH': f'{BIN}:{env.get("PATH", "")}',
    })
    variables = {'ansible_python_interpreter': sys.executable, 'eminfra_state_dir': str(state_dir)}
    variables.update(extra_vars or {})
    cmd = [str(BIN / 'ansible-playbook'), '-vvvv', '-i', 'localhost,', '-c', 'local',
           '-e', json.dumps(variables), str(playbook)]
    proc = subprocess.run(cmd, cwd=str(REPO), env=env, capture_output=True, text=True, timeout=300, check=False)
    return PlaybookRun(proc, result_file, log_file, state_dir)


class ConnectionRecorder:
    """A listening TCP socket on loopback that counts every connection made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, dummy = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def write_env(path: pathlib.Path, values: dict, mode: int = 0o600) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(''.join(f"{key}='{val}'\n" for key, val in values.items()), encoding='utf-8')
    os.chmod(path, mode)
    return path
