# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The pipeline run: step planning, the run lock, re-validation checks and the run summary.

This is a private module_utils file of eminfra.pipeline; its API may change at any time.

* ``plan_steps`` turns the run controls (resume, start_at, dry run) and latest.env into the
  steps to re-validate, run and skip.
* ``RunLock`` is ``state/runs/run.lock``: created with O_CREAT|O_EXCL, naming the holder's
  RUN_ID and its ansible-playbook controller process (pid and start time, so a reused pid is
  never taken for the holder); a lock whose holder is gone, or that is empty or damaged, is
  taken over. A run's processes carry ``EMINFRA_RUN_ID`` in their environment
  (``run_processes``), so what outlives a dead controller is found and stopped
  (``stop_run_processes``) before the next run goes on.
* ``check_*`` are the read-only checks that a resume runs before it skips a completed step and
  that diagnostics runs; each raises CheckError with its check id and remediation.
* ``write_summary`` writes ``runs/<RUN_ID>/steps.json`` and ``summary.txt``.

latest.env itself is written by ``_latest_env`` only.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import signal
import socket
import time

from ansible_collections.eminfra.pipeline.plugins.module_utils import _manifest, _outputs, _proxmox_env
from ansible_collections.eminfra.pipeline.plugins.module_utils._atomic import atomic_write, read_bytes, read_json
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError
from ansible_collections.eminfra.pipeline.plugins.module_utils._state import STEPS, StateLayout

#: Steps whose result a resume re-validates before it skips them (DESIGN.md's table).
REVALIDATED_STEPS = tuple(step for step in STEPS if step.revalidated)
#: Steps that a resume always runs again: they are idempotent, and their re-validation is a re-run.
RERUN_STEPS = tuple(step for step in STEPS if not step.revalidated)

REMEDIATION_RESUME = 'ansible-playbook playbooks/site.yml -e eminfra_start_at={step}'
#: The variable that marks every process of a run (site.yml sets it for the run's local tasks).
RUN_ENV_KEY = 'EMINFRA_RUN_ID'
#: How long a new run waits for the processes of an ended run to stop.
ORPHAN_WAIT_SECONDS = 30.0


# ------------------------------------------------------------------ planning

def plan_steps(latest: dict[str, str], resume: bool = False, start_at: str | None = None,
               dry_run: bool = False) -> dict:
    """The steps to re-validate, run and skip, and why.

    * neither control: every step runs;
    * ``resume``: the completed steps of REVALIDATED_STEPS are re-validated, the run starts after
      LAST_STEP_COMPLETED (at ansible_base at the latest: those steps are re-run, not re-validated);
    * ``start_at``: the run starts at that step; the steps before it must have completed and are
      re-validated like a resume.
    A dry run plans like a real run; it never reads DRY_RUN_LAST_STEP, so an earlier dry run never
    makes a step be skipped.
    """
    if resume and start_at:
        raise CheckError('run_controls', 'eminfra_resume and eminfra_start_at exclude each other',
                         where='extra vars', remediation='pass one of them')
    last = latest.get('LAST_STEP_COMPLETED') or ''
    if last and last not in STEPS:
        raise CheckError('latest_env_valid', f'LAST_STEP_COMPLETED {last!r} is not a pipeline step',
                         where='state/runs/latest.env: LAST_STEP_COMPLETED',
                         remediation='start from scratch (omit eminfra_resume) or set a valid step')
    done = STEPS.index(last) + 1 if last else 0
    if start_at:
        if start_at not in STEPS:
            raise CheckError('run_controls', f'{start_at!r} is not a pipeline step', where='eminfra_start_at',
                             remediation=f'use one of {", ".join(STEPS)}')
        first = STEPS.index(start_at)
        if first > done:
            raise CheckError('run_controls', f'cannot start at {start_at}: the steps before it have not completed '
                             f'(LAST_STEP_COMPLETED is {last or "empty"})', where='eminfra_start_at',
                             remediation=(REMEDIATION_RESUME.format(step=STEPS[done]) if done < len(STEPS)
                                          else 'ansible-playbook playbooks/site.yml'))
        mode = 'start_at'
    elif resume:
        first = min(done, STEPS.index(RERUN_STEPS[0]))
        mode = 'resume'
    else:
        first = 0
        mode = 'full'
    revalidate = [step for step in STEPS[:first] if step in REVALIDATED_STEPS]
    return {
        'mode': mode,
        'dry_run': dry_run,
        'last_step_completed': last,
        'revalidate': revalidate,
        'run': list(STEPS[first:]),
        'skip': list(STEPS[:first]),
    }


# ------------------------------------------------------------------ the run lock

def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding='utf-8', errors='replace') as handle:
            return handle.read()
    except OSError:
        return None


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (clock ticks after boot): with the pid, it names one process."""
    text = _read_text(f'/proc/{pid}/stat')
    if not text or ')' not in text:
        return None
    fields = text[text.rindex(')') + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _parent_pid(pid: int) -> int | None:
    text = _read_text(f'/proc/{pid}/stat')
    if not text or ')' not in text:
        return None
    fields = text[text.rindex(')') + 2:].split()
    try:
        return int(fields[1])
    except (IndexError, ValueError):
        return None


def _is_playbook_command(pid: int) -> bool:
    raw = read_bytes(f'/proc/{pid}/cmdline')
    if not raw:
        return False
    argv = [arg.decode('utf-8', 'replace') for arg in raw.split(b'\0') if arg]
    return any(os.path.basename(arg) == 'ansible-playbook' for arg in argv[:2])


def find_controller(pid: int | None = None) -> int | None:
    """The ansible-playbook controller that runs this process: the topmost ancestor whose command
    line is ansible-playbook (its task workers are forks with the same command line and end with
    their task)."""
    current = pid or os.getpid()
    found = None
    seen = set()
    while current and current > 1 and current not in seen:
        seen.add(current)
        if _is_playbook_command(current):
            found = current
        current = _parent_pid(current)
    return found


def boot_id() -> str:
    return (_read_text('/proc/sys/kernel/random/boot_id') or '').strip()


def process_alive(pid: int, start_time: str | None, boot: str | None = None) -> bool:
    """Whether the process that took a lock still runs (same boot, same pid, same start time)."""
    if boot and boot != boot_id():
        return False
    current = process_start_time(pid)
    if current is None:
        return False
    return start_time is None or current == str(start_time)


class RunLock:
    """``state/runs/run.lock``: one pipeline run at a time."""

    def __init__(self, path: str) -> None:
        self.path = path

    def holder(self) -> dict | None:
        """The lock's content; None when there is no lock; ``{}`` when it cannot be parsed."""
        raw = read_bytes(self.path)
        if raw is None:
            return None
        try:
            data = json.loads(raw.decode('utf-8'))
        except (UnicodeDecodeError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def holder_alive(self, holder: dict) -> bool:
        if holder.get('host') and holder['host'] != socket.gethostname():
            return True  # another machine's process: never judged from here
        try:
            pid = int(holder.get('pid'))
        except (TypeError, ValueError):
            return False
        return process_alive(pid, holder.get('start_time'), holder.get('boot_id'))

    def _create(self, content: dict) -> bool:
        """Create the lock with its content in one step (written aside, then hard-linked into place):
        a reader never sees a lock without its holder, so an empty or unparsable lock is a damaged one."""
        aside = f'{self.path}.{os.getpid()}.{os.urandom(3).hex()}.tmp'
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, 'w', encoding='utf-8') as handle:
                handle.write(json.dumps(content, sort_keys=True) + '\n')
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(aside, self.path)
            except FileExistsError:
                return False
            return True
        finally:
            os.unlink(aside)

    def _locked_error(self, holder: dict) -> CheckError:
        run_id = holder.get('run_id') or 'unknown (the lock file is being written or is damaged)'
        return CheckError('run_lock', f'another pipeline run holds the lock: RUN_ID {run_id} '
                          f'(pid {holder.get("pid", "?")} on {holder.get("host", "?")}, since {holder.get("acquired_at", "?")})',
                          where=self.path,
                          remediation='wait for that run to end; if its process is gone and the lock stays, '
                          f'check with `ps -p {holder.get("pid", "PID")}` and remove {self.path}')

    def acquire(self, run_id: str, pid: int, now: float | None = None) -> dict:
        """Take the lock for ``run_id`` held by process ``pid``; returns ``{'taken_over': old holder or None}``.

        Raises CheckError ``run_lock`` naming the holder's RUN_ID when a live run holds it.
        """
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        content = {
            'run_id': run_id,
            'pid': pid,
            'start_time': process_start_time(pid),
            'boot_id': boot_id(),
            'host': socket.gethostname(),
            'acquired_at': datetime.datetime.fromtimestamp(now or time.time(), datetime.timezone.utc).isoformat(timespec='seconds'),
        }
        taken_over = None
        while True:
            if self._create(content):
                return {'taken_over': taken_over, 'lock': content}
            holder = self.holder()
            if holder is None:
                continue  # released between the two calls: try again
            if holder.get('run_id') == run_id and holder.get('pid') == pid:
                return {'taken_over': None, 'lock': holder}
            if not holder:
                # Empty or unparsable: locks appear with their content (``_create``), so this one is
                # damaged (a crash, a full disk, a hand edit) and names no live holder: stale. A short
                # second look covers a writer of the older two-step format.
                time.sleep(0.2)
                if self.holder() != holder:
                    continue
            elif self.holder_alive(holder):
                raise self._locked_error(holder)
            # The holder is gone. Judge and replace its lock under a guard that every taker of a
            # stale lock takes, so that one of many simultaneous takers wins and a fresh lock
            # created meanwhile is never removed.
            replaced = self._replace_stale(holder, content)
            if replaced is None:
                continue  # the lock changed while we waited for the guard: judge it again
            if replaced:
                return {'taken_over': holder, 'lock': content}
            # another run created the lock after the stale one went: judge that one

    def _replace_stale(self, stale: dict, content: dict) -> bool | None:
        """Under the guard: remove the lock if it is still ``stale`` and create ours.

        Returns True when ours is in place, False when another run's lock appeared first, None when
        the lock is no longer the stale one that was judged."""
        # the guard is an flock on the lock's directory: no extra file is left behind
        guard = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(guard, fcntl.LOCK_EX)
            if self.holder() != stale:
                return None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                return None
            return self._create(content)
        finally:
            os.close(guard)  # closing releases the flock

    def release(self, run_id: str) -> bool:
        """Remove the lock when ``run_id`` holds it; returns whether it was removed."""
        holder = self.holder()
        if not holder or holder.get('run_id') != run_id:
            return False
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return False
        return True


# ------------------------------------------------------------------ a run's processes

def run_processes(run_id: str, exclude: set[int] | None = None) -> dict[int, str]:
    """The live processes of run ``run_id`` (pid -> command line): every process whose environment
    carries ``EMINFRA_RUN_ID=<run_id>``, which site.yml sets for the run's tasks and which their
    background jobs (async downloads) and Terraform inherit, even after ansible-playbook is gone."""
    if not run_id:
        return {}
    needle = f'{RUN_ENV_KEY}={run_id}'.encode()
    skip = set(exclude or ()) | {os.getpid()}
    found = {}
    for name in os.listdir('/proc'):
        if not name.isdigit() or int(name) in skip:
            continue
        try:
            with open(f'/proc/{name}/environ', 'rb') as handle:
                environ = handle.read()
            with open(f'/proc/{name}/cmdline', 'rb') as handle:
                cmdline = handle.read()
        except OSError:
            continue  # gone, or another user's process that this one cannot read (never ours)
        if needle not in environ.split(b'\0'):
            continue
        if not cmdline:
            continue  # a zombie: nothing left to stop
        found[int(name)] = ' '.join(arg.decode('utf-8', 'replace') for arg in cmdline.split(b'\0') if arg)[:200]
    return found


def stop_run_processes(run_id: str, wait: float = ORPHAN_WAIT_SECONDS, signum: int = signal.SIGTERM,
                       sleep=time.sleep, exclude: set[int] | None = None) -> dict:
    """Stop what is left of run ``run_id``: SIGTERM (Terraform then saves its state and stops), wait
    up to ``wait`` seconds; returns ``{'stopped': {pid: cmd}, 'alive': {pid: cmd}}``."""
    found = run_processes(run_id, exclude)
    for pid in found:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + wait
    alive = found
    while alive and time.monotonic() < deadline:
        sleep(0.2)
        alive = {pid: cmd for pid, cmd in run_processes(run_id, exclude).items() if pid in found}
    return {'stopped': {pid: cmd for pid, cmd in found.items() if pid not in alive}, 'alive': alive}


def orphans_error(run_id: str, alive: dict[int, str], where: str) -> CheckError:
    listed = '; '.join(f'pid {pid}: {cmd}' for pid, cmd in sorted(alive.items()))
    return CheckError('run_lock', f'processes of run {run_id} are still running after SIGTERM: {listed}',
                      where=where, remediation=f'wait for them to end or stop them (kill {" ".join(map(str, sorted(alive)))}), '
                      'then run again')


def last_logged_step(run_dir: str) -> str:
    """The step of the last task the run's task log recorded ('' when none)."""
    raw = read_bytes(os.path.join(run_dir, 'tasks.log'))
    for line in reversed((raw or b'').decode('utf-8', 'replace').splitlines()):
        try:
            step = json.loads(line).get('step')
        except (ValueError, AttributeError):
            continue
        if step in STEPS:
            return step
    return ''


def interrupted_step(values: dict[str, str], run_dir: str) -> str:
    """The step a run was in when it ended without closing: its last logged step, else the one after
    LAST_STEP_COMPLETED."""
    step = last_logged_step(run_dir)
    if step:
        return step
    last = values.get('LAST_STEP_COMPLETED') or ''
    index = STEPS.index(last) + 1 if last in STEPS else 0
    return STEPS[min(index, len(STEPS) - 1)]


# ------------------------------------------------------------------ checks (read-only)

def check_proxmox_env_present(layout: StateLayout) -> None:
    """proxmox_env_present: the run cannot start without the credentials file (``_proxmox_env``)."""
    _proxmox_env.check_present(layout.proxmox_env)


def check_templates(layout: StateLayout, verify_checksums: bool = True) -> dict:
    """templates_present (``_manifest.templates_present``): the manifest is valid and every artefact is on
    disk, inside the state root, with its recorded sha256."""
    return _manifest.templates_present(layout.manifest, state_root=layout.root, project_root=layout.project_root,
                                       verify_checksums=verify_checksums,
                                       remediation=REMEDIATION_RESUME.format(step='templates'))


def check_terraform_outputs(layout: StateLayout) -> dict:
    """terraform_outputs_valid: outputs.json is valid and equals the outputs of the current Terraform state."""
    remediation = REMEDIATION_RESUME.format(step='terraform_apply')
    path = layout.outputs_json
    outputs = _outputs.read(path, remediation=remediation)
    state_path, tfstate = read_terraform_state(layout, remediation)
    _outputs.compare(outputs, _outputs.normalise(tfstate.get('outputs') or {}), f'{path} (state {state_path})',
                     remediation=remediation)
    return {'outputs': path, 'state': state_path, 'nodes': [node['name'] for node in outputs.get('nodes', [])]}


def read_terraform_state(layout: StateLayout, remediation: str, check: str = 'terraform_outputs_valid') -> tuple[str, dict]:
    """(where, state): the local state file, or the pg backend's state when init last recorded pg."""
    from ansible_collections.eminfra.pipeline.plugins.module_utils import _terraform_backend as tf_backend

    if tf_backend.recorded_backend(layout.terraform_data_dir) == 'pg':
        backend = tf_backend.load_backend_env(layout.terraform_backend_env)
        where = f'PostgreSQL {backend.database} schema {backend.schema_name}'
        try:
            tfstate = tf_backend.read_state(backend)
        except tf_backend.PgError as exc:
            raise CheckError(check, f'the Terraform state cannot be read ({exc})', where=where,
                             remediation='make the database answer (see the terraform_backend check), then ' + remediation) from None
        if tfstate is None:
            raise CheckError(check, 'there is no Terraform state',
                             where=where, remediation=remediation)
        return where, tfstate
    state_path = layout.terraform_state
    if not os.path.isfile(state_path):
        raise CheckError(check, 'there is no Terraform state',
                         where=state_path, remediation=remediation)
    return state_path, read_json(state_path, check, remediation, what='the Terraform state')


def check_terraform_backend(layout: StateLayout) -> dict:
    """terraform_backend: which backend holds the state and, for pg, whether the database answers."""
    from ansible_collections.eminfra.pipeline.plugins.module_utils import _terraform_backend as tf_backend

    recorded = tf_backend.recorded_backend(layout.terraform_data_dir)
    if recorded != 'pg':
        detail = f'local state {layout.terraform_state}' if recorded == 'local' else \
            'local (the default); Terraform has not been initialised yet'
        if os.path.lexists(layout.terraform_backend_env):
            detail += f' ({layout.terraform_backend_env} exists but is not in use: terraform_apply_backend=pg uses it)'
        return {'backend': recorded or 'local', 'detail': detail}
    backend = tf_backend.load_backend_env(layout.terraform_backend_env)
    answer = tf_backend.probe(backend)
    where = f'PostgreSQL {backend.database} schema {backend.schema_name}'
    if not answer['answers']:
        check = 'terraform_backend_auth' if 'authentication' in answer['detail'] else 'terraform_backend_unreachable'
        raise CheckError(check, f'pg backend: the database does not answer ({answer["detail"]})', where=where,
                         remediation=f'start the database or fix PG_CONN_STR in {layout.terraform_backend_env}')
    return {'backend': 'pg', 'detail': f'pg: {answer["detail"]}, schema {backend.schema_name}'}


def check_terraform_vms(layout: StateLayout, client=None) -> dict:
    """terraform_vms_present: what the Terraform state holds is really on the Proxmox node - every VM of the
    state exists there, and none is tainted (a create that failed). Read-only; ``client`` for tests."""
    # Imported here: planning and the local checks must not need the API client.
    from ansible_collections.eminfra.pipeline.plugins.module_utils._terraform import state_vm_instances  # pylint: disable=import-outside-toplevel

    remediation = REMEDIATION_RESUME.format(step='terraform_apply')
    state_path, tfstate = read_terraform_state(layout, remediation, check='terraform_vms_present')
    instances = state_vm_instances(tfstate)
    vms = {name: entry['vmid'] for name, entry in instances.items()}
    tainted = [name for name, entry in instances.items() if entry['status'] == 'tainted']
    if tainted:
        raise CheckError('terraform_vms_present', f'VM {", ".join(sorted(tainted))} is tainted in the Terraform state '
                         '(its create failed)', where=state_path, remediation=remediation)
    settings = _proxmox_env.load(layout.proxmox_env)
    client = client or settings.client()
    node = settings.node
    present = {int(vm['vmid']) for vm in client.get(f'nodes/{node}/qemu') or [] if str(vm.get('vmid', '')).isdigit()}
    missing = sorted(f'{name} (vmid {vmid})' for name, vmid in vms.items() if vmid not in present)
    if missing:
        raise CheckError('terraform_vms_present', f'in the Terraform state but not on node {node}: {", ".join(missing)}',
                         where=f'/nodes/{node}/qemu (state {state_path})', remediation=remediation)
    return {'state': state_path, 'node': node, 'vms': sorted(vms)}


def check_proxmox_env_mode(layout: StateLayout) -> None:
    """proxmox_env_valid (the part that needs no network): a regular file, mode 0600 or stricter."""
    _proxmox_env.check_file(layout.proxmox_env)


# ------------------------------------------------------------------ the summary

def _duration(seconds) -> str:
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        return '-'
    return f'{seconds:.1f}s' if seconds < 60 else f'{int(seconds // 60)}m{seconds % 60:04.1f}s'


def render_summary(run_id: str, status: str, dry_run: bool, steps: list[dict], latest: dict[str, str]) -> str:
    """The table an operator reads at a glance: step, status, duration, artefacts."""
    rows = [('STEP', 'STATUS', 'DURATION', 'ARTEFACTS / CHECK')]
    for entry in steps:
        detail = entry.get('failed_check') or ', '.join(entry.get('artefacts') or [])
        rows.append((entry['step'], entry.get('status', ''), _duration(entry.get('duration')) if 'duration' in entry else '-',
                     detail))
    widths = [max(len(str(row[i])) for row in rows) for i in range(3)]
    lines = [f'run {run_id}{" (dry run)" if dry_run else ""}: {status}; '
             f'LAST_STEP_COMPLETED={latest.get("LAST_STEP_COMPLETED", "")}'
             + (f', LAST_STEP_FAILED={latest["LAST_STEP_FAILED"]} ({latest.get("LAST_FAILED_CHECK", "")})'
                if latest.get('LAST_STEP_FAILED') else '')]
    for row in rows:
        lines.append('  '.join(str(cell).ljust(widths[i]) for i, cell in enumerate(row[:3])) + '  ' + str(row[3]))
    return '\n'.join(line.rstrip() for line in lines) + '\n'


def normalise_steps(plan: dict, records: list[dict]) -> list[dict]:
    """One entry per pipeline step, from the plan and what the playbook recorded."""
    by_step = {}
    for record in records or []:
        if isinstance(record, dict) and record.get('step') in STEPS:
            by_step.setdefault(record['step'], {}).update(record)
    out = []
    for step in STEPS:
        entry = {'step': step}
        if step in by_step:
            entry.update(by_step[step])
        elif step in (plan or {}).get('skip', []):
            entry['status'] = 'revalidated' if step in plan.get('revalidate', []) else 'skipped'
        else:
            entry['status'] = 'not run'
        out.append(entry)
    return out


def write_summary(run_dir: str, summary: dict, text: str) -> list[str]:
    """``steps.json`` and ``summary.txt`` in the run's directory; returns the paths."""
    steps_json = os.path.join(run_dir, 'steps.json')
    summary_txt = os.path.join(run_dir, 'summary.txt')
    atomic_write(steps_json, json.dumps(summary, indent=2, sort_keys=True) + '\n', mode=0o644)
    atomic_write(summary_txt, text, mode=0o644)
    return [steps_json, summary_txt]
