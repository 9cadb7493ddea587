# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The run record ``state/runs/latest.env``: start a run, merge keys, record steps.

This is a private module_utils file of eminfra.pipeline; its API may change at any time.

Rules from the handoff contract that live here and nowhere else:

* every required latest.env key is always written (path keys default to the state layout);
* no secret ever enters the file: not PROXMOX_TOKEN_SECRET, no key that names a secret, no
  value that holds a secret the caller handed over;
* a failed step never advances LAST_STEP_COMPLETED;
* a dry run never makes a later real run skip a step: while the current run has
  DRY_RUN='true', a completed step is recorded as DRY_RUN_LAST_STEP only, and starting any
  run keeps the previous LAST_STEP_COMPLETED;
* each run keeps a copy of the file under ``runs/<RUN_ID>/latest.env``.
"""

from __future__ import annotations

import datetime
import os

from ansible_collections.eminfra.pipeline.plugins.module_utils import _proxmox_env
from ansible_collections.eminfra.pipeline.plugins.module_utils._atomic import atomic_write, read_bytes
from ansible_collections.eminfra.pipeline.plugins.module_utils._contracts import (
    LATEST_ENV_REQUIRED,
    LATEST_ENV_SCHEMA,
    PROXMOX_ENV_SECRET_KEYS,
    is_secret_key,
    validate,
)
from ansible_collections.eminfra.pipeline.plugins.module_utils._envfile import (
    KEY_RE,
    EnvFileError,
    check_value,
    parse_env,
    render_env,
)
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError
from ansible_collections.eminfra.pipeline.plugins.module_utils._state import STEPS, StateLayout

HEADER = ('# eminfra.pipeline run record (written by eminfra.pipeline.latest_env; do not edit while '
          'a run is going)\n')
RUN_STATUSES = ('running', 'succeeded', 'failed')
STEP_STATUSES = ('completed', 'failed')

#: Keys that only the run controls (start_run, step, run_status) may set, never ``values``.
RUN_KEYS = ('RUN_ID', 'RUN_TIMESTAMP', 'DRY_RUN', 'LAST_STEP_COMPLETED', 'RUN_STATUS',
            'LAST_STEP_FAILED', 'LAST_FAILED_CHECK', 'DRY_RUN_LAST_STEP')
#: Keys that belong to one run and are reset when the next run starts.
PER_RUN_KEYS = ('RUN_STATUS', 'LAST_STEP_FAILED', 'LAST_FAILED_CHECK', 'DRY_RUN_LAST_STEP')
#: The order of the keys in the file: the contract's, then the run's, then the rest sorted.
KEY_ORDER = LATEST_ENV_REQUIRED + PER_RUN_KEYS

REMEDIATION_SECRET = ('keep secrets in state/proxmox.env only; pass the non-secret keys '
                      '(PROXMOX_API_URL, PROXMOX_NODE, PROXMOX_TOKEN_ID) instead')


def new_run_id(now: datetime.datetime | None = None) -> str:
    """``YYYYMMDDTHHMMSSZ-xxxxxx`` in UTC with six random hex digits."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return f'{now.astimezone(datetime.timezone.utc):%Y%m%dT%H%M%SZ}-{os.urandom(3).hex()}'


def run_timestamp(now: datetime.datetime | None = None) -> str:
    """ISO 8601 local time with its UTC offset, e.g. ``2026-01-30T22:00:00+13:00``."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.astimezone().isoformat(timespec='seconds')


def _as_text(key: str, value) -> str:
    if value is None:
        return ''
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (str, int, float)):
        return str(value)
    raise CheckError('latest_env_value', f'{type(value).__name__} is not a text value',
                     where=f'values.{key}', remediation='pass strings, numbers or booleans')


class LatestEnv:
    """Plans and writes one change to latest.env; nothing is written when a check fails."""

    def __init__(self, layout: StateLayout, path: str | None = None) -> None:
        self.layout = layout
        self.path = os.path.abspath(path) if path else layout.latest_env

    def read(self) -> tuple[str | None, dict[str, str]]:
        """The file's text (None when absent) and its keys."""
        data = read_bytes(self.path)
        if data is None:
            return None, {}
        try:
            text = data.decode('utf-8')
        except UnicodeDecodeError as exc:
            line = data[:exc.start].count(b'\n') + 1
            raise EnvFileError(self.path, line, f'not UTF-8 text (byte 0x{data[exc.start]:02x})',
                               check='latest_env_valid') from None
        try:
            return text, parse_env(text, source=self.path, allow_empty=True)
        except EnvFileError as exc:
            exc.check = 'latest_env_valid'
            raise

    def run_dir(self, run_id: str) -> str:
        """``runs/<RUN_ID>/`` beside latest.env."""
        return os.path.join(os.path.dirname(self.path), run_id)

    def plan(self, current: dict[str, str], values: dict | None = None, start_run: bool = False,
             dry_run: bool | None = None, step: str | None = None, step_status: str = 'completed',
             failed_check: str | None = None, run_status: str | None = None,
             secrets: list[str] | None = None, now: datetime.datetime | None = None) -> dict[str, str]:
        """The file's new content; raises CheckError for anything the contract refuses."""
        values = values or {}
        self._check_options(start_run, dry_run, step, step_status, failed_check)
        merged = dict(current)
        if start_run:
            for key in PER_RUN_KEYS:
                merged.pop(key, None)
            merged['RUN_ID'] = new_run_id(now)
            merged['RUN_TIMESTAMP'] = run_timestamp(now)
            merged['DRY_RUN'] = 'true' if dry_run else 'false'
            merged['RUN_STATUS'] = 'running'
            # LAST_STEP_COMPLETED stays: a resume needs it, and a dry run must not reset it.
        elif (values or step or run_status) and not merged.get('RUN_ID'):
            raise CheckError('latest_env_run', 'no run is recorded yet', where=self.path,
                             remediation='start a run first (start_run: true)')

        for key, value in values.items():
            key = str(key)
            if not KEY_RE.match(key):
                raise CheckError('latest_env_value', f'{key[:60]!r} is not an env key', where='values',
                                 remediation='use letters, digits and underscores, not starting with a digit')
            if key in PROXMOX_ENV_SECRET_KEYS or is_secret_key(key):
                raise CheckError('latest_env_secret', f'{key} names a secret, and latest.env never holds '
                                 'secrets', where=f'values.{key}', remediation=REMEDIATION_SECRET)
            if key in RUN_KEYS:
                raise CheckError('latest_env_value', f'{key} is set by the run controls, not by values',
                                 where=f'values.{key}',
                                 remediation='use start_run, dry_run, step, step_status and run_status')
            merged[key] = _as_text(key, value)

        if step:
            if step_status == 'completed':
                if merged.get('DRY_RUN') == 'true':
                    merged['DRY_RUN_LAST_STEP'] = step
                else:
                    merged['LAST_STEP_COMPLETED'] = step
                if merged.get('LAST_STEP_FAILED') == step:
                    merged['LAST_STEP_FAILED'] = ''
                    merged['LAST_FAILED_CHECK'] = ''
            else:
                merged['LAST_STEP_FAILED'] = step
                merged['LAST_FAILED_CHECK'] = failed_check or ''
                merged['RUN_STATUS'] = 'failed'
        if run_status:
            merged['RUN_STATUS'] = run_status

        self._fill_defaults(merged)
        self._check_secrets(merged, list(secrets or []) + self.proxmox_env_secrets())
        for key, value in merged.items():
            try:
                check_value(key, value)
            except ValueError as exc:
                raise CheckError('latest_env_value', str(exc), where=self.path,
                                 remediation='pass single-line text values') from None
        validate(merged, LATEST_ENV_SCHEMA, 'latest_env_valid', source=self.path,
                 remediation='fix the key named above (by hand or with the latest_env module)')
        return self._ordered(merged)

    @staticmethod
    def _check_options(start_run, dry_run, step, step_status, failed_check) -> None:
        if dry_run is not None and not start_run:
            raise CheckError('latest_env_options', 'dry_run applies only when a run starts',
                             where='dry_run', remediation='set start_run: true together with dry_run')
        if step is not None and step not in STEPS:
            raise CheckError('latest_env_options', f'{step!r} is not a pipeline step', where='step',
                             remediation=f'use one of {", ".join(STEPS)}')
        if step_status not in STEP_STATUSES:
            raise CheckError('latest_env_options', f'{step_status!r} is not a step status',
                             where='step_status', remediation='use completed or failed')
        if failed_check and (not step or step_status != 'failed'):
            raise CheckError('latest_env_options', 'failed_check names the check of a failed step',
                             where='failed_check', remediation='set step and step_status: failed with it')

    def _fill_defaults(self, merged: dict[str, str]) -> None:
        defaults = {
            'TERRAFORM_WORKDIR': self.layout.terraform_workdir,
            'TERRAFORM_OUTPUT_JSON': self.layout.outputs_json,
            'ANSIBLE_INVENTORY_PATH': self.layout.inventory_source,
        }
        for key in LATEST_ENV_REQUIRED:
            if not merged.get(key):
                merged[key] = defaults.get(key, '')

    def proxmox_env_secrets(self) -> list[str]:
        """The secret values of the state's proxmox.env, so they are refused even when nobody hands them over.

        A missing or unreadable proxmox.env yields none: the proxmox_access step reports its problems.
        """
        return _proxmox_env.secret_values(self.layout.proxmox_env)

    def _check_secrets(self, merged: dict[str, str], secrets: list[str]) -> None:
        for key in merged:
            if key in PROXMOX_ENV_SECRET_KEYS or is_secret_key(key):
                raise CheckError('latest_env_secret', f'{key} names a secret, and latest.env never '
                                 'holds secrets', where=self.path,
                                 remediation=f'remove the {key} line from the file; {REMEDIATION_SECRET}')
        for secret in secrets:
            if not secret:
                continue
            for key, value in merged.items():
                if secret in value:
                    # Neither the value nor the secret may appear in the message.
                    raise CheckError('latest_env_secret', f'{key}: the value holds a secret (handed over in '
                                     'secrets, or a secret of proxmox.env)', where=self.path,
                                     remediation=REMEDIATION_SECRET)

    @staticmethod
    def _ordered(merged: dict[str, str]) -> dict[str, str]:
        ordered = {key: merged[key] for key in KEY_ORDER if key in merged}
        for key in sorted(merged):
            ordered.setdefault(key, merged[key])
        return ordered

    @staticmethod
    def render(content: dict[str, str]) -> str:
        return HEADER + render_env(content)

    def write(self, content: dict[str, str], before_text: str | None, check_mode: bool = False) -> dict:
        """Write latest.env and the run's copy when they differ; return the task result."""
        after_text = self.render(content)
        run_dir = self.run_dir(content['RUN_ID'])
        run_copy = os.path.join(run_dir, 'latest.env')
        mode = 0o644
        if before_text is not None:
            mode = os.stat(self.path).st_mode & 0o644 or 0o644
        changed = before_text != after_text
        copy_changed = read_bytes(run_copy) != after_text.encode('utf-8')
        if not check_mode:
            if changed:
                atomic_write(self.path, after_text, mode=mode)
            if copy_changed:
                atomic_write(run_copy, after_text, mode=mode)
        return {
            'changed': changed or copy_changed,
            'path': self.path,
            'run_id': content['RUN_ID'],
            'run_dir': run_dir,
            'values': content,
            'dry_run': content.get('DRY_RUN') == 'true',
            'diff': {'before': before_text or '', 'after': after_text,
                     'before_header': self.path, 'after_header': self.path},
        }

    def run(self, check_mode: bool = False, **options) -> dict:
        """Read, plan, validate and write; a read-only call only returns the file."""
        before_text, current = self.read()
        wants_change = (options.get('start_run') or options.get('values') or options.get('step')
                        or options.get('run_status'))
        if not wants_change:
            self._check_options(options.get('start_run', False), options.get('dry_run'),
                                options.get('step'), options.get('step_status', 'completed'),
                                options.get('failed_check'))
            run_id = current.get('RUN_ID', '')
            return {
                'changed': False,
                'path': self.path,
                'run_id': run_id,
                'run_dir': self.run_dir(run_id) if run_id else '',
                'values': current,
                'dry_run': current.get('DRY_RUN') == 'true',
                'exists': before_text is not None,
                'diff': {'before': before_text or '', 'after': before_text or '',
                         'before_header': self.path, 'after_header': self.path},
            }
        content = self.plan(current, **options)
        result = self.write(content, before_text, check_mode=check_mode)
        result['exists'] = True
        return result
