# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Phase 1 validation gate: ``make gate`` (``python -m tests.tools.gate``).

Runs every Phase 1 exit check and appends one dated row per command to the evidence log of
docs/EM-Infra-Phase1-Implementation-Tracker.md:

- ``terraform -chdir=terraform/environments/k3s-dev init`` and ``validate``. The data dir is a
  temporary directory (never the repository, never the pipeline's state/cache/terraform/), and
  a lock file that init creates is removed again. The CLI config is ``TF_CLI_CONFIG_FILE`` when
  it names an existing file, else the one ``make setup`` writes (.cache/terraform/terraformrc:
  the bpg/proxmox provider from the local mirror that setup builds from its Go module). Where
  the provider is in no mirror and cannot be downloaded (no route to the provider registry),
  both are reported as SKIPPED with that reason, and the offline checks still run:
  ``terraform fmt -check -recursive terraform`` and, for every other Terraform configuration
  in terraform/ that needs no registry provider, init + validate, and ``terraform test``
  where it has tests.
- the inventory intent (``python -m tests.tools.validate_intent``) and schema.json freshness;
- every relative link of every Markdown file of the repository;
- the provider pins of terraform/providers.tf and terraform/environments/k3s-dev/providers.tf,
  and the version ``make setup`` builds into the local mirror (tests/setup/terraform-provider.env)
  against them;
- the docs for wording that gives Terraform a node's OS.

Exit 0 when nothing failed (skips are printed and logged with their reason; ``--strict``
makes a skip fail the gate), 1 otherwise. ``--no-log`` leaves the tracker alone. Single
checks: ``python -m tests.tools.gate [--no-log] terraform|intent|links|pins|wording``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, '.collections')
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# pylint: disable=wrong-import-position
from ansible_collections.eminfra.pipeline.plugins.module_utils import _intent
from ansible_collections.eminfra.pipeline.plugins.module_utils._atomic import atomic_write
from ansible_collections.eminfra.pipeline.plugins.module_utils._contracts import intent_schema_document
from tests.tools import phase1, terraform_cli

TRACKER = os.path.join('docs', 'EM-Infra-Phase1-Implementation-Tracker.md')
K3S_DEV = 'terraform/environments/k3s-dev'
TASK = 'Validation gate'
_ANSI = re.compile(r'\x1b\[[0-9;]*m')


@dataclass
class Result:
    command: str
    summary: str
    status: str  # PASS | FAIL | SKIPPED
    notes: str


# ---------------------------------------------------------------- Terraform
def terraform_binary() -> str | None:
    """``terraform`` on PATH (make puts the virtualenv's first), else ``tofu``."""
    return shutil.which('terraform') or shutil.which('tofu')


def _tf_env(data_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    env['TF_DATA_DIR'] = data_dir
    env['TF_IN_AUTOMATION'] = '1'
    env['TF_INPUT'] = '0'
    # An operator's own config (a provider mirror, a plugin cache) first, then the one make setup
    # writes; without any, Terraform warns on every run about the missing ~/.terraformrc.
    config = terraform_cli.effective_cli_config(env)
    if config:
        env['TF_CLI_CONFIG_FILE'] = config
    elif os.path.exists(os.path.expanduser('~/.terraformrc')):
        env.pop('TF_CLI_CONFIG_FILE', None)
    else:
        env['TF_CLI_CONFIG_FILE'] = os.devnull
    return env


def _run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    return proc.returncode, _ANSI.sub('', proc.stdout + proc.stderr)


def _json_in(output: str) -> dict:
    """The first JSON object in ``output`` (Terraform may print warnings around it)."""
    return json.JSONDecoder().raw_decode(output[output.index('{'):])[0]


def _first_error(output: str) -> str:
    lines = [line.strip(' │╷╵') for line in output.splitlines()]
    for index, line in enumerate(lines):
        if line.startswith('Error:'):
            detail = next((l for l in lines[index + 1:] if l.strip()), '')
            return f'{line} {detail}'.strip()
    return next((l for l in reversed(lines) if l.strip()), 'no output')


def _offline_reason(config: str, output: str) -> str:
    named = sorted(set(re.findall(r'versions for provider ([\w.-]+/[\w.-]+)', output)))
    providers = ', '.join(named) or 'a registry provider'
    causes = ('no such host', 'i/o timeout', 'connection refused', 'network is unreachable', 'dial tcp')
    cause = next((c for c in causes if c in output.lower()), 'could not connect')
    return (f'{config} needs {providers}, which is in no local provider mirror and which this machine '
            f'cannot download: init could not reach the Terraform provider registry ({cause}). Run '
            '`make setup` where Go is installed (it builds the provider into .cache/terraform/providers), '
            'or `make gate` on a machine with registry access')


def _shown(path: str) -> str:
    return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def _init_notes(output: str, env: dict[str, str]) -> str:
    """What init installed, and with which CLI config and filesystem mirror it did."""
    installed = re.findall(r'- Installed (\S+) (v\S+)(?: \(([^)]*)\))?', output)
    notes = 'initialized'
    if installed:
        notes += '; installed ' + ', '.join(f'{name} {version}' + (f' ({how})' if how else '')
                                            for name, version, how in installed)
    config = env.get('TF_CLI_CONFIG_FILE', '')
    if installed and config and config != os.devnull:
        with open(config, encoding='utf-8') as handle:
            mirrors = re.findall(r'filesystem_mirror\s*\{[^}]*?path\s*=\s*"([^"]*)"', handle.read())
        notes += f'; CLI config {_shown(config)}' + ''.join(f', filesystem mirror {_shown(m)}' for m in mirrors)
    return notes


def _init_validate(terraform: str, config: str, label: str, results: list[Result], init_args=()) -> bool:
    """init + validate of one configuration; True when validate passed."""
    data_dir = tempfile.mkdtemp(prefix='eminfra-gate-tf-')
    # init writes the provider selections next to the configuration; the gate leaves no trace there
    # (a lock file with a locally built provider's checksum would make a later init fail).
    lock_file = os.path.join(ROOT, config, '.terraform.lock.hcl')
    had_lock_file = os.path.exists(lock_file)
    try:
        env = _tf_env(data_dir)
        init_cmd = f'terraform -chdir={config} init'
        code, out = _run([terraform, f'-chdir={config}', 'init', '-input=false', '-no-color', *init_args], env)
        if code != 0 and terraform_cli.registry_unreachable(out):
            reason = _offline_reason(config, out)
            results.append(Result(init_cmd, f'{label}: init', 'SKIPPED', reason))
            results.append(Result(f'terraform -chdir={config} validate', f'{label}: validate', 'SKIPPED',
                                  'needs the provider that init could not install (see the init row)'))
            return False
        results.append(Result(init_cmd, f'{label}: init (TF_DATA_DIR in a temporary directory)',
                              'PASS' if code == 0 else 'FAIL',
                              _init_notes(out, env) if code == 0 else _first_error(out)))
        if code != 0:
            return False
        code, out = _run([terraform, f'-chdir={config}', 'validate', '-no-color', '-json'], env)
        try:
            report = _json_in(out)
            valid = bool(report.get('valid')) and code == 0
            notes = (f'valid; {report.get("warning_count", 0)} warning(s)' if valid else
                     '; '.join(_diagnostic(d) for d in report.get('diagnostics', []) if d.get('severity') == 'error'))
        except (ValueError, KeyError):
            valid, notes = code == 0, _first_error(out)
        results.append(Result(f'terraform -chdir={config} validate', f'{label}: validate',
                              'PASS' if valid else 'FAIL', notes or _first_error(out)))
        if valid and _has_tests(config):
            code, out = _run([terraform, f'-chdir={config}', 'test', '-no-color'], env)
            summary = next((l.strip() for l in reversed(out.splitlines()) if 'passed' in l or 'failed' in l), '')
            results.append(Result(f'terraform -chdir={config} test', f'{label}: terraform test',
                                  'PASS' if code == 0 else 'FAIL', summary or _first_error(out)))
        return valid
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
        if not had_lock_file and os.path.exists(lock_file):
            os.unlink(lock_file)


def _diagnostic(diag: dict) -> str:
    where = diag.get('range')
    location = f' ({where["filename"]}:{where["start"]["line"]})' if where else ''
    return f'{diag.get("summary", "")}{location}'


def _has_tests(config: str) -> bool:
    for sub in ('', 'tests'):
        directory = os.path.join(ROOT, config, sub)
        if os.path.isdir(directory) and any(n.endswith('.tftest.hcl') for n in os.listdir(directory)):
            return True
    return False


def _other_configurations() -> list[str]:
    """Every other directory of terraform/ with .tf files: the cluster module and its submodules."""
    found = []
    for name in phase1.repo_files(ROOT):
        if name.startswith('terraform/') and name.endswith('.tf'):
            directory = os.path.dirname(name)
            if directory != K3S_DEV and directory not in found:
                found.append(directory)
    return sorted(found)


def check_terraform(results: list[Result]) -> None:
    terraform = terraform_binary()
    if not terraform:
        results.append(Result(f'terraform -chdir={K3S_DEV} init', 'find a terraform command', 'FAIL',
                              'no terraform (or tofu) on PATH; run make setup (it installs one into the '
                              'virtualenv where none exists) or install Terraform >= 1.6, < 2.0'))
        return
    dummy, version_out = _run([terraform, 'version', '-json'], _tf_env(tempfile.gettempdir()))
    try:
        version = _json_in(version_out)['terraform_version']
    except (ValueError, KeyError):
        version = version_out.strip().splitlines()[0] if version_out.strip() else 'unknown'
    print(f'gate: using {terraform} (Terraform {version})')
    _init_validate(terraform, K3S_DEV, 'k3s-dev', results)
    code, out = _run([terraform, 'fmt', '-check', '-recursive', '-no-color', 'terraform'], _tf_env(tempfile.gettempdir()))
    unformatted = [line.strip() for line in out.splitlines() if line.strip().endswith('.tf') or line.strip().endswith('.tfvars')]
    results.append(Result('terraform fmt -check -recursive terraform', 'formatting of every .tf file',
                          'PASS' if code == 0 else 'FAIL',
                          f'Terraform {version}: all files formatted' if code == 0 else
                          f'not formatted: {", ".join(unformatted) or _first_error(out)}; run terraform fmt -recursive terraform'))
    for config in _other_configurations():
        label = 'cluster module' if config == 'terraform' else os.path.relpath(config, 'terraform')
        _init_validate(terraform, config, label, results)


# ---------------------------------------------------------------- the other checks
def check_intent(results: list[Result]) -> None:
    command = 'python -m tests.tools.validate_intent'
    try:
        intent = _intent.load_intent(_intent.DEFAULT_CLUSTER_PATH, _intent.DEFAULT_NODES_PATH, root=ROOT)
        status = 'PASS'
        notes = (f'{len(intent["nodes"])} enabled node(s) ({", ".join(n["name"] for n in intent["nodes"])}), '
                 f'disabled: {", ".join(intent["disabled_nodes"]) or "none"}')
    except _intent.IntentError as exc:
        status, notes = 'FAIL', '; '.join(_intent.render_problem(e) for e in exc.errors)
    results.append(Result(command, 'inventory/dev intent: schema and cross-field rules', status, notes))
    expected = json.dumps(intent_schema_document(), indent=2, sort_keys=True) + '\n'
    try:
        with open(os.path.join(ROOT, 'schema.json'), encoding='utf-8') as handle:
            current = handle.read() == expected
    except OSError:
        current = False
    results.append(Result('python -m tests.tools.gate intent', 'schema.json generated from INTENT_SCHEMA',
                          'PASS' if current else 'FAIL',
                          'schema.json matches _contracts.intent_schema_document()' if current else
                          'schema.json is missing or stale; regenerate it from plugins/module_utils/_contracts.py'))


def check_links(results: list[Result]) -> None:
    files = phase1.markdown_files(ROOT)
    problems, checked = phase1.broken_links(ROOT, files)
    results.append(Result('python -m tests.tools.gate links', 'relative links in every Markdown file',
                          'FAIL' if problems else 'PASS',
                          '; '.join(problems) if problems else
                          f'{checked} relative link(s) in {len(files)} Markdown file(s) resolve'))


def check_pins(results: list[Result]) -> None:
    problems, found = phase1.pin_problems(ROOT)
    baseline = phase1.PROVIDER_BASELINE
    pin = terraform_cli.PROVIDER_PIN
    results.append(Result('python -m tests.tools.gate pins', 'provider pins of the module and k3s-dev',
                          'FAIL' if problems else 'PASS',
                          '; '.join(problems) if problems else
                          f'both files: Terraform {baseline["required_version"]}, '
                          + ', '.join(f'{p["source"]} {p["version"]}' for p in baseline['providers'].values())
                          + f' ({len(found)} files); the local mirror\'s pin {pin["source"].split("/", 1)[1]} '
                          f'{pin["version"]} satisfies both'))


def check_wording(results: list[Result]) -> None:
    files = phase1.markdown_files(ROOT)
    problems, excused = phase1.ownership_problems(ROOT, files)
    results.append(Result('python -m tests.tools.gate wording', 'docs: no wording that gives Terraform a node OS',
                          'FAIL' if problems else 'PASS',
                          '; '.join(problems) if problems else
                          f'{len(files)} Markdown file(s), {len(phase1.OWNERSHIP_PATTERNS)} patterns: no claim; '
                          f'{len(excused)} negated or quoted mention(s) not counted'
                          + (f' ({", ".join(e.split(": [")[0] for e in excused)})' if excused else '')))


CHECKS = {'terraform': check_terraform, 'intent': check_intent, 'links': check_links, 'pins': check_pins,
          'wording': check_wording}


# ---------------------------------------------------------------- the evidence log
def _cell(text: str) -> str:
    return ' '.join(text.replace('|', '\\|').split())


def evidence_rows(results: list[Result], when: datetime.datetime) -> list[str]:
    stamp = when.strftime('%Y-%m-%d %H:%MZ')
    return [f'| {stamp} | {TASK} | {_cell(r.summary)} | `{_cell(r.command)}` | {r.status} | {_cell(r.notes)} |'
            for r in results]


def append_evidence(tracker_path: str, rows: list[str]) -> None:
    """Insert ``rows`` after the last row of the table under "## Evidence Log" (atomically)."""
    with open(tracker_path, encoding='utf-8') as handle:
        lines = handle.read().split('\n')
    try:
        section = next(i for i, line in enumerate(lines) if line.strip().lower() == '## evidence log')
    except StopIteration:
        raise SystemExit(f'gate: {tracker_path} has no "## Evidence Log" section') from None
    start = next((i for i in range(section + 1, len(lines)) if lines[i].startswith('|')), None)
    if start is None:
        raise SystemExit(f'gate: {tracker_path}: no table under "## Evidence Log"')
    end = start
    while end < len(lines) and lines[end].startswith('|'):
        end += 1
    lines[end:end] = rows
    atomic_write(tracker_path, '\n'.join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m tests.tools.gate', description=__doc__.splitlines()[0])
    parser.add_argument('checks', nargs='*', metavar='CHECK',
                        help=f'run only these ({", ".join(CHECKS)}); default: all')
    parser.add_argument('--no-log', action='store_true', help='do not append rows to the tracker')
    parser.add_argument('--strict', action='store_true', help='a skipped check fails the gate')
    parser.add_argument('--tracker', default=os.path.join(ROOT, TRACKER), help='tracker file (default: %(default)s)')
    args = parser.parse_args(argv)
    unknown = [c for c in args.checks if c not in CHECKS]
    if unknown:
        parser.error(f'unknown check(s): {", ".join(unknown)}; choose from {", ".join(CHECKS)}')
    results: list[Result] = []
    for name in args.checks or list(CHECKS):
        CHECKS[name](results)
    width = max(len(r.command) for r in results)
    for result in results:
        print(f'{result.status:<8} {result.command:<{width}}  {result.notes}')
    failed = [r for r in results if r.status == 'FAIL' or (args.strict and r.status == 'SKIPPED')]
    skipped = [r for r in results if r.status == 'SKIPPED']
    if not args.no_log:
        append_evidence(args.tracker, evidence_rows(results, datetime.datetime.now(datetime.timezone.utc)))
        print(f'gate: {len(results)} row(s) appended to {os.path.relpath(args.tracker, ROOT)}')
    verdict = 'FAILED' if failed else 'passed'
    print(f'gate: {verdict}: {len(results) - len(failed) - len(skipped)} passed, {len(failed)} failed, '
          f'{len(skipped)} skipped' + (' (see the reasons above)' if skipped else ''))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
