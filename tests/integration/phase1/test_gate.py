# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The gate: real Terraform runs, evidence rows land in the tracker's table, nowhere else."""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.tools import gate, phase1, terraform_cli

TRACKER = os.path.join(phase1.ROOT, 'docs', 'EM-Infra-Phase1-Implementation-Tracker.md')
ROW = re.compile(r'^\| (\d{4}-\d{2}-\d{2} \d{2}:\d{2}Z) \| Validation gate \| (.*?) \| `(.*?)` \| (PASS|FAIL|SKIPPED) \| (.*) \|$')


def _evidence_table(text: str) -> list[str]:
    lines = text.split('\n')
    start = lines.index('## Evidence Log')
    table = []
    for line in lines[start + 1:]:
        if line.startswith('|'):
            table.append(line)
        elif table:
            break
    return table


def test_terraform_checks_run_real_terraform():
    if not gate.terraform_binary():
        pytest.fail('no terraform on PATH: make setup installs one into the virtualenv')
    results: list[gate.Result] = []
    gate.check_terraform(results)
    by_command = {r.command: r for r in results}
    init = by_command['terraform -chdir=terraform/environments/k3s-dev init']
    validate = by_command['terraform -chdir=terraform/environments/k3s-dev validate']
    if terraform_cli.mirror_ready():
        # make setup built the provider into the local mirror: no skip, whatever the network
        assert (init.status, validate.status) == ('PASS', 'PASS'), (init, validate)
        assert f'installed bpg/proxmox v{terraform_cli.PROVIDER_PIN["version"]}' in init.notes
        assert 'filesystem mirror .cache/terraform/providers' in init.notes
    elif init.status == 'SKIPPED':
        _assert_offline_skip(init, validate)
    else:
        assert (init.status, validate.status) == ('PASS', 'PASS'), (init, validate)
    fmt = by_command['terraform fmt -check -recursive terraform']
    assert fmt.status == 'PASS', fmt.notes
    assert [r for r in results if r.status == 'FAIL'] == []
    # the data dir never lands in the repository, nor a lock file
    assert not os.path.exists(os.path.join(phase1.ROOT, 'terraform', 'environments', 'k3s-dev', '.terraform'))
    assert not os.path.exists(os.path.join(phase1.ROOT, 'terraform', 'environments', 'k3s-dev', '.terraform.lock.hcl'))


def _assert_offline_skip(init, validate):
    """The reason is stated (without the registry's host name), and validate is skipped for it."""
    assert init.status == 'SKIPPED', init
    assert 'bpg/proxmox' in init.notes and 'cannot download' in init.notes and 'registry.' not in init.notes
    assert 'make setup' in init.notes
    assert validate.status == 'SKIPPED'


def test_without_mirror_or_registry_k3s_dev_is_skipped_with_the_reason(tmp_path, monkeypatch):
    """A machine without the local mirror: init goes to the registry; unreachable, that is a skip."""
    terraform = gate.terraform_binary()
    if not terraform:
        pytest.fail('no terraform on PATH: make setup installs one into the virtualenv')
    empty = tmp_path / 'terraformrc'
    empty.write_text('')
    monkeypatch.setenv('TF_CLI_CONFIG_FILE', str(empty))
    results: list[gate.Result] = []
    gate._init_validate(terraform, gate.K3S_DEV, 'k3s-dev', results)  # pylint: disable=protected-access
    init, validate = results[:2]
    if init.status == 'SKIPPED':
        _assert_offline_skip(init, validate)
    else:  # a machine that reaches the registry
        assert (init.status, validate.status) == ('PASS', 'PASS'), (init, validate)
    assert not os.path.exists(os.path.join(phase1.ROOT, gate.K3S_DEV, '.terraform.lock.hcl'))


def test_the_cli_config_terraform_runs_with(tmp_path, monkeypatch):
    """TF_CLI_CONFIG_FILE when it names a file, else the one make setup wrote, else none."""
    own = tmp_path / 'own.tfrc'
    own.write_text('')
    monkeypatch.setenv('TF_CLI_CONFIG_FILE', str(own))
    assert gate._tf_env(str(tmp_path))['TF_CLI_CONFIG_FILE'] == str(own)  # pylint: disable=protected-access
    monkeypatch.setenv('TF_CLI_CONFIG_FILE', str(tmp_path / 'missing.tfrc'))
    assert terraform_cli.effective_cli_config(root=str(tmp_path)) is None
    setup_config = tmp_path / '.cache' / 'terraform' / 'terraformrc'
    setup_config.parent.mkdir(parents=True)
    setup_config.write_text('')
    assert terraform_cli.effective_cli_config(root=str(tmp_path)) == str(setup_config)
    if os.path.isfile(terraform_cli.cli_config_path()):
        env = gate._tf_env(str(tmp_path))  # pylint: disable=protected-access
        assert env['TF_CLI_CONFIG_FILE'] == terraform_cli.cli_config_path()


def test_gate_appends_one_row_per_command_to_the_evidence_table(tmp_path):
    tracker = tmp_path / 'tracker.md'
    shutil.copy(TRACKER, tracker)
    before = tracker.read_text(encoding='utf-8')
    proc = subprocess.run([sys.executable, '-m', 'tests.tools.gate', '--tracker', str(tracker), 'links', 'pins', 'intent'],
                          cwd=phase1.ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'gate: 4 row(s) appended' in proc.stdout
    after = tracker.read_text(encoding='utf-8')
    old_table, new_table = _evidence_table(before), _evidence_table(after)
    added = new_table[len(old_table):]
    assert new_table[:len(old_table)] == old_table
    assert [ROW.match(row).group(3, 4) for row in added] == [
        ('python -m tests.tools.gate links', 'PASS'),
        ('python -m tests.tools.gate pins', 'PASS'),
        ('python -m tests.tools.validate_intent', 'PASS'),
        ('python -m tests.tools.gate intent', 'PASS'),
    ]
    # nothing else in the file moved
    assert after.replace('\n'.join(added) + '\n', '', 1) == before


def test_no_log_leaves_the_tracker_alone(tmp_path):
    tracker = tmp_path / 'tracker.md'
    shutil.copy(TRACKER, tracker)
    before = tracker.read_text(encoding='utf-8')
    proc = subprocess.run([sys.executable, '-m', 'tests.tools.gate', '--no-log', '--tracker', str(tracker), 'pins'],
                          cwd=phase1.ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0
    assert tracker.read_text(encoding='utf-8') == before


def test_a_failing_check_fails_the_gate_and_is_logged(tmp_path):
    tracker = tmp_path / 'tracker.md'
    tracker.write_text('# T\n\n## Evidence Log\n\n| Date | Task | Change Summary | Validation Command | Result | Notes |\n'
                       '|---|---|---|---|---|---|\n\n## After\n', encoding='utf-8')
    results = [gate.Result('cmd | with pipe', 'summary', 'FAIL', 'a | b\nc')]
    rows = gate.evidence_rows(results, datetime.datetime(2026, 11, 22, 1, 2, tzinfo=datetime.timezone.utc))
    assert rows == ['| 2026-11-22 01:02Z | Validation gate | summary | `cmd \\| with pipe` | FAIL | a \\| b c |']
    gate.append_evidence(str(tracker), rows)
    assert tracker.read_text(encoding='utf-8').endswith(f'|---|---|---|---|---|---|\n{rows[0]}\n\n## After\n')


def test_unknown_check_is_refused():
    proc = subprocess.run([sys.executable, '-m', 'tests.tools.gate', '--no-log', 'everything'],
                          cwd=phase1.ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert 'unknown check(s): everything' in proc.stderr


def test_the_tracker_holds_rows_written_by_make_gate():
    rows = [ROW.match(row) for row in _evidence_table(open(TRACKER, encoding='utf-8').read())]
    commands = {match.group(3) for match in rows if match}
    assert {'terraform -chdir=terraform/environments/k3s-dev init',
            'terraform -chdir=terraform/environments/k3s-dev validate',
            'terraform fmt -check -recursive terraform',
            'python -m tests.tools.validate_intent',
            'python -m tests.tools.gate links',
            'python -m tests.tools.gate pins',
            'python -m tests.tools.gate wording'} <= commands


def test_ticked_gate_items_rest_on_pass_rows():
    """A ticked item that says k3s-dev init/validate passed, or the gate passed, has PASS rows behind it."""
    text = open(TRACKER, encoding='utf-8').read()
    rows = [match for match in (ROW.match(row) for row in _evidence_table(text)) if match]
    latest = {match.group(3): match.group(4) for match in rows}  # the later row of a command wins
    ticked = [line for line in text.split('\n') if line.startswith('- [x]')]
    if any(re.search(r'\b(?:init|validate)\b', line) and re.search(r'\b(?:succeeds|passes|PASS)\b', line)
           for line in ticked):
        for command in ('init', 'validate'):
            assert latest[f'terraform -chdir=terraform/environments/k3s-dev {command}'] == 'PASS'
    if any(line.startswith('- [x] Validation gate passed') for line in ticked):
        last_run = [match for match in rows if match.group(1) == rows[-1].group(1)]
        assert {match.group(4) for match in last_run} == {'PASS'}


def test_init_validate_and_test_of_an_offline_configuration(tmp_path):
    terraform = gate.terraform_binary()
    if not terraform:
        pytest.fail('no terraform on PATH: make setup installs one into the virtualenv')
    good = tmp_path / 'good'
    (good / 'tests').mkdir(parents=True)
    (good / 'main.tf').write_text('variable "n" {\n  type = number\n}\n\noutput "double" {\n  value = var.n * 2\n}\n')
    (good / 'tests' / 'double.tftest.hcl').write_text(
        'variables {\n  n = 21\n}\n\nrun "doubles" {\n  command = plan\n\n  assert {\n'
        '    condition     = output.double == 42\n    error_message = "not doubled"\n  }\n}\n')
    results: list[gate.Result] = []
    assert gate._init_validate(terraform, str(good), 'good', results)  # pylint: disable=protected-access
    assert [(r.summary, r.status) for r in results] == [
        ('good: init (TF_DATA_DIR in a temporary directory)', 'PASS'),
        ('good: validate', 'PASS'),
        ('good: terraform test', 'PASS'),
    ]
    assert '1 passed, 0 failed' in results[2].notes

    bad = tmp_path / 'bad'
    bad.mkdir()
    (bad / 'main.tf').write_text('output "x" {\n  value = var.missing\n}\n')
    results = []
    assert not gate._init_validate(terraform, str(bad), 'bad', results)  # pylint: disable=protected-access
    assert (results[1].summary, results[1].status) == ('bad: validate', 'FAIL')
    assert results[1].notes == 'Reference to undeclared input variable (main.tf:2)'
    assert not (bad / '.terraform').exists() and not (good / '.terraform').exists()
