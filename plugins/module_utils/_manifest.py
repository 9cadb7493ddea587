# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The template manifest (state/cache/templates/manifest.json): read, validate, update.

This is private module_utils of eminfra.pipeline; its API may change at any time.

The contract (``_contracts.MANIFEST_SCHEMA``) describes the finished manifest, with both the
``ubuntu`` and the ``talos`` artefact. The templates step writes it one artefact at a time, so
between two fetches only one of them is present. Writers therefore validate the file's shape
and every artefact entry against the contract's artefact schema (``PARTIAL_SCHEMA``: the
contract without the two required keys), and consumers that need both (the ``templates_present``
check, ``validate_complete``) validate against the full contract. The file is always replaced
atomically and only after the artefact it records is verified.

``templates_present`` is the one ``templates_present`` check: Terraform's precondition (the
artefacts the intent's enabled nodes need, placed on Proxmox storage) and the pipeline's
re-validation (every artefact on disk, inside the state root, with its recorded size and sha256).
"""

from __future__ import annotations

import copy
import datetime
import json
import os

from ansible_collections.eminfra.pipeline.plugins.module_utils._atomic import atomic_write, file_digest, read_json
from ansible_collections.eminfra.pipeline.plugins.module_utils._contracts import (
    MANIFEST_SCHEMA, MANIFEST_SCHEMA_VERSION, NODE_OS, ContractError, artefact_for, schema_errors)
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError

PARTIAL_SCHEMA = copy.deepcopy(MANIFEST_SCHEMA)
PARTIAL_SCHEMA['required'] = ['generated_at']
PARTIAL_SCHEMA['$id'] = 'eminfra.pipeline/manifest.json#partial'
REQUIRED_ARTEFACTS = ('ubuntu', 'talos')
TOP_LEVEL_KEYS = ('generated_at', 'schema_version')
TEMPLATES_CHECK = 'templates_present'
#: What a failed templates_present check asks for: the templates step, again.
TEMPLATES_REMEDIATION = 'ansible-playbook playbooks/site.yml -e eminfra_start_at=templates'
REMEDIATION = ('run the templates step again (role eminfra.pipeline.templates); if the file was edited by '
               'hand, restore it or delete it and let the step rebuild it')


def now_iso() -> str:
    """The current time with an explicit UTC offset, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def empty() -> dict:
    return {'schema_version': MANIFEST_SCHEMA_VERSION, 'generated_at': now_iso()}


def load(path: str) -> dict | None:
    """The manifest at ``path`` (validated as a partial manifest), or None when there is none."""
    if not os.path.lexists(path):
        return None
    try:
        data = read_json(path, 'manifest_valid', REMEDIATION, expect=None)
    except CheckError as exc:
        # A contract file's errors are ContractErrors, whichever way the file is broken.
        raise ContractError('manifest_valid', [('', exc.detail)], source=path, remediation=REMEDIATION) from None
    validate_partial(data, source=path)
    return data


def validate_partial(data, source: str | None = None) -> None:
    errors = schema_errors(data, PARTIAL_SCHEMA)
    if errors:
        raise ContractError('manifest_valid', errors, source=source, remediation=REMEDIATION)


def validate_complete(data, source: str | None = None, remediation: str = REMEDIATION) -> None:
    """The whole contract: both artefacts present (what Terraform needs)."""
    errors = schema_errors(data, MANIFEST_SCHEMA)
    if errors:
        raise ContractError(TEMPLATES_CHECK, errors, source=source, remediation=remediation)


def artefacts(data: dict) -> dict[str, dict]:
    return {key: value for key, value in data.items() if key not in TOP_LEVEL_KEYS and isinstance(value, dict)}


def with_entry(data: dict | None, name: str, entry: dict) -> dict:
    """A new manifest with ``name`` set to ``entry`` and a fresh ``generated_at``."""
    new = copy.deepcopy(data) if data else empty()
    new[name] = entry
    new['schema_version'] = MANIFEST_SCHEMA_VERSION
    new['generated_at'] = now_iso()
    return new


def render(data: dict) -> str:
    ordered = {key: data[key] for key in TOP_LEVEL_KEYS if key in data}
    ordered.update({key: data[key] for key in sorted(data) if key not in TOP_LEVEL_KEYS})
    return json.dumps(ordered, indent=2, sort_keys=False) + '\n'


def write(path: str, data: dict) -> None:
    """Validate, then replace the manifest atomically."""
    validate_partial(data, source=path)
    atomic_write(path, render(data), mode=0o644)


def artefact_path(entry: dict, state_root: str, project_root: str, name: str, source: str | None = None) -> str:
    """The file an artefact entry records, which must lie inside the state root.

    ``path`` is taken from the project root when relative (the contract's
    ``state/cache/templates/<file>``); without one, the file is ``<state root>/cache/templates/<filename>``.
    After symlinks and ``..`` are resolved it must be inside ``state_root``: a manifest never
    points the pipeline at a file elsewhere, even one with the recorded digest (ContractError
    ``manifest_valid`` naming ``<name>.path``)."""
    path = entry.get('path') or os.path.join(state_root, 'cache', 'templates', str(entry.get('filename', '')))
    absolute = path if os.path.isabs(path) else os.path.join(project_root, path)
    real = os.path.realpath(absolute)
    root = os.path.realpath(state_root)
    if os.path.commonpath([real, root]) != root:
        shown = path if real == os.path.abspath(absolute) else f'{path} (resolves to {real})'
        raise ContractError('manifest_valid', [(f'{name}.path', f'{shown} is outside the state root {state_root}')],
                            source=source, remediation=REMEDIATION)
    return absolute


def same_artefact(old: dict | None, new: dict, ignore=('fetched_at',)) -> bool:
    """Whether two entries record the same artefact (timestamps aside)."""
    if not old:
        return False
    return ({k: v for k, v in old.items() if k not in ignore}
            == {k: v for k, v in new.items() if k not in ignore})


def file_matches(entry: dict, path: str, verify: bool, hasher) -> tuple[bool, str]:
    """Whether the file at ``path`` is the artefact ``entry`` records, and how that was decided.

    Size and modification time recorded at fetch time are trusted (a re-hash of a GiB image
    costs seconds on every run); when either differs, or ``verify`` is set, the file is hashed.
    """
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return False, 'missing'
    if stat.st_size != entry.get('size'):
        return False, f'size {stat.st_size} differs from the recorded {entry.get("size")}'
    if not verify and entry.get('mtime_ns') == stat.st_mtime_ns:
        return True, 'size and mtime match the manifest'
    digest, dummy = hasher(path)
    if digest == entry.get('sha256'):
        return True, 'sha256 re-checked'
    return False, f'sha256 {digest} differs from the recorded {entry.get("sha256")}'


# ------------------------------------------------------------------ the templates_present check
def needed_artefacts(intent_nodes_file: str | None) -> list[str]:
    """The artefacts (by OS; ``ubuntu_lxc`` for a container) the enabled nodes of the nodes intent
    need; both OS artefacts when no intent is given."""
    if not intent_nodes_file:
        return list(NODE_OS)
    # Imported here: the intent needs PyYAML, which a check without an intent never does.
    from ansible_collections.eminfra.pipeline.plugins.module_utils._intent import enabled_nodes  # pylint: disable=import-outside-toplevel
    return sorted({artefact_for(node) for node in enabled_nodes(intent_nodes_file) if node.get('os') in NODE_OS})


def templates_present(manifest_path: str, intent_nodes_file: str | None = None, placed: bool = False,
                      state_root: str | None = None, project_root: str | None = None,
                      verify_checksums: bool = True, remediation: str = TEMPLATES_REMEDIATION) -> dict[str, str]:
    """The templates_present check; returns each checked artefact's name and local path.

    Always: the manifest exists, is JSON and meets the whole contract, and has an entry for every
    artefact the enabled nodes of ``intent_nodes_file`` need (``needed_artefacts``). With ``placed``
    (Terraform's precondition) those entries name their volume on Proxmox storage
    (``proxmox_volid``). With ``state_root`` (re-validation) every artefact is on disk inside the
    state root with its recorded size and, unless ``verify_checksums`` is off, its sha256.
    """
    manifest = read_json(manifest_path, TEMPLATES_CHECK, remediation, expect=None, what='the template manifest')
    validate_complete(manifest, source=manifest_path, remediation=remediation)
    needed = needed_artefacts(intent_nodes_file)
    missing = [name for name in needed if not isinstance(manifest.get(name), dict) or not manifest[name].get('filename')]
    if missing:
        raise CheckError(TEMPLATES_CHECK, f'no artefact for {", ".join(missing)} (needed by enabled nodes '
                         f'of {intent_nodes_file})', where=manifest_path, remediation=remediation)
    if placed:
        unplaced = [name for name in needed if not manifest[name].get('proxmox_volid')]
        if unplaced:
            raise CheckError(TEMPLATES_CHECK, f'{", ".join(unplaced)}: no proxmox_volid, the artefact is not on Proxmox '
                             'storage and a VM disk would have nothing to import', where=manifest_path,
                             remediation=remediation)
    found = {}
    for name, entry in sorted(artefacts(manifest).items()):
        if state_root is None:
            found[name] = entry.get('path') or entry.get('filename')
            continue
        found[name] = _artefact_on_disk(manifest_path, name, entry, state_root, project_root or os.getcwd(),
                                        verify_checksums, remediation)
    return found


def _artefact_on_disk(manifest_path: str, name: str, entry: dict, state_root: str, project_root: str,
                      verify_checksums: bool, remediation: str) -> str:
    try:
        path = artefact_path(entry, state_root, project_root, name, source=manifest_path)
    except ContractError as exc:
        raise CheckError(TEMPLATES_CHECK, '; '.join(message for dummy, message in exc.errors),
                         where=f'{manifest_path}: {name}.path', remediation=remediation) from None
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise CheckError(TEMPLATES_CHECK, f'artefact {name} is missing', where=f'{manifest_path}: {name}.path ({path})',
                         remediation=remediation) from None
    if entry.get('size') is not None and info.st_size != entry['size']:
        raise CheckError(TEMPLATES_CHECK, f'artefact {name} has {info.st_size} bytes, the manifest records {entry["size"]}',
                         where=f'{manifest_path}: {name}.size ({path})', remediation=remediation)
    if verify_checksums and entry.get('sha256'):
        digest = file_digest(path)[0]
        if digest != entry['sha256']:
            raise CheckError(TEMPLATES_CHECK, f'artefact {name} has sha256 {digest}, the manifest records {entry["sha256"]}',
                             where=f'{manifest_path}: {name}.sha256 ({path})', remediation=remediation)
    return path
