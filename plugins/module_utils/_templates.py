# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The templates step: one artefact made present, verified, recorded and placed on Proxmox storage.

This is a private module_utils file of eminfra.pipeline; its API may change at any time.

``run()`` is the template_fetch module: it decides from the manifest whether the artefact is
current, fetches it with ``_download`` (verified against a pinned, published or first-fetch
digest), records it in the manifest (``_manifest``) and, with ``proxmox``, places it on Proxmox
storage with ``place()`` (``download-url`` or upload) and records the volume. The credentials
come from ``_proxmox_env``, loaded before any transfer; their secret is handed to the module's
``no_log_values``.
"""

from __future__ import annotations

import io
import os
import re
import time

from ansible_collections.eminfra.pipeline.plugins.module_utils import _manifest, _proxmox_env
from ansible_collections.eminfra.pipeline.plugins.module_utils._atomic import file_digest
from ansible_collections.eminfra.pipeline.plugins.module_utils._download import (
    DownloadError, Progress, check_filename, check_url, checksum_algorithm, discard, fetch, fetch_text,
    filename_from_url, finish, parse_checksum, part_paths, published_digest, writer_lock)
from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError
from ansible_collections.eminfra.pipeline.plugins.module_utils._state import StateLayout, find_project_root

ARTEFACT_TYPES = ('lxc', 'vm', 'iso', 'img', 'qcow2', 'raw')
CONTENT_FOR_TYPE = {'iso': 'iso', 'lxc': 'vztmpl', 'vm': 'import', 'img': 'import', 'qcow2': 'import',
                    'raw': 'import'}
_CONTENT_EXT = {
    'iso': re.compile(r'.+\.(iso|img)$', re.IGNORECASE),
    'vztmpl': re.compile(r'.+\.(tar|tar\.(gz|xz|zst|bz2))$', re.IGNORECASE),
    'import': re.compile(r'.+\.(qcow2|raw|vmdk|ova)$', re.IGNORECASE),
}


def _local_entry(params: dict, dest: str, sha256: str, size: int, source: str, fetched_at: str,
                 checksum_url: str | None) -> dict:
    entry = {'type': params['type'], 'source': params['url'], 'filename': os.path.basename(dest), 'path': dest,
             'sha256': sha256, 'size': size, 'fetched_at': fetched_at, 'checksum_source': source,
             'mtime_ns': os.stat(dest).st_mtime_ns}
    if checksum_url:
        entry['checksum_url'] = checksum_url
    return entry


def run(params: dict, check_mode: bool = False, client_factory=None, sleep=time.sleep,
        no_log_values: set | None = None) -> dict:
    """The template_fetch module: make one artefact present, verified, recorded; return the result.

    With placement, the secret of proxmox.env is added to ``no_log_values`` (the module's) as soon
    as the file is read."""
    url = check_url(params['url'])
    filename = check_filename(params.get('filename') or filename_from_url(url),
                              where='filename' if params.get('filename') else f'filename (taken from {url})')
    if params['type'] not in ARTEFACT_TYPES:
        raise DownloadError('template_type', f'{params["type"]!r} is not one of {", ".join(ARTEFACT_TYPES)}',
                            where='type', remediation='set type to the kind of artefact')
    if params.get('needed_by') == 'containers' and not intent_has_containers(params.get('intent_nodes_file')):
        return {'changed': False, 'action': 'not_needed', 'artefact': None, 'path': None,
                'reason': 'no enabled node of the nodes intent is a container (guest: lxc)'}
    dest_dir = os.path.abspath(params.get('dest_dir') or StateLayout.resolve(params.get('state_dir')).templates_dir)
    manifest_path = os.path.abspath(params.get('manifest') or os.path.join(dest_dir, 'manifest.json'))
    dest = os.path.join(dest_dir, filename)
    checksum = parse_checksum(params.get('checksum'))
    name = params['name']
    # Settled before any transfer: a broken intent or credentials file fails the step before a GiB
    # download, not after.
    placement = placement_spec(params)
    settings = None
    if placement is not None:
        placement['env_file'] = placement.get('env_file') or StateLayout.resolve(params.get('state_dir')).proxmox_env
        settings = _proxmox_env.load(placement['env_file'])
        if no_log_values is not None:
            no_log_values.update(settings.no_log_values())
    manifest = _manifest.load(manifest_path)
    old = (manifest or {}).get(name)
    old = old if isinstance(old, dict) else None

    result = {'changed': False, 'path': dest, 'manifest': manifest_path, 'sha256': None, 'size': None,
              'bytes_transferred': 0, 'resumed': False, 'elapsed': 0.0, 'checksum_source': None,
              'action': 'none', 'reason': ''}
    same_source = bool(old and old.get('source') == url and old.get('path') == dest
                       and old.get('type') == params['type'])
    current, reason = False, ''
    if params.get('force'):
        reason = 'force is set'
    elif not same_source:
        reason = 'not in the manifest' if not old else 'the manifest records another source, path or type'
    elif checksum and checksum[0] == 'pinned' and old.get(checksum_algorithm(params.get('checksum'))) != checksum[1]:
        reason = 'the pinned checksum differs from the recorded one'
    elif checksum and checksum[0] == 'published' and old.get('checksum_url') != checksum[1]:
        reason = 'the checksum URL differs from the recorded one'
    else:
        current, reason = _manifest.file_matches(old, dest, bool(params.get('verify')), file_digest)
    entry = dict(old) if current else None
    if current:
        result.update(sha256=old['sha256'], size=old['size'], checksum_source=old.get('checksum_source'),
                      reason=reason)

    if not current:
        result['changed'] = True
        result['action'] = 'fetch'
        result['reason'] = reason
        if check_mode:
            result['msg'] = f'would fetch {url} to {dest} ({reason})'
            result['diff'] = {'before': _manifest.render({name: old}) if old else '',
                              'after': f'{name}: fetched from {url}\n'}
            return _with_placement_plan(result, placement)
        entry, fetch_info = _fetch_verified(params, url, dest, checksum, old if same_source else None, sleep)
        result.update(fetch_info)

    # The verified local artefact is recorded before the placement, so that a placement failure
    # never costs the download (a first-fetch digest in particular); the volume is recorded only
    # once Proxmox has it.
    manifest = _record(manifest_path, manifest, name, old, entry, result, check_mode)
    if placement is not None:
        placed, place_changed, place_info = place(entry, placement, settings, check_mode, client_factory)
        place_info['storage_from'] = placement['storage_from']
        result['proxmox'] = place_info
        if place_changed:
            result['changed'] = True
        _record(manifest_path, manifest, name, old, placed, result, check_mode)
        entry = placed
    result['artefact'] = entry
    return result


def intent_has_containers(nodes_file: str | None) -> bool:
    """Whether the nodes intent (relative paths from the project root) has an enabled ``guest: lxc`` node."""
    # Imported here: the intent needs PyYAML, which only this option uses.
    from ansible_collections.eminfra.pipeline.plugins.module_utils._intent import (  # pylint: disable=import-outside-toplevel
        DEFAULT_NODES_PATH, display_path, enabled_nodes)
    root = find_project_root()
    path = os.path.join(root, nodes_file or DEFAULT_NODES_PATH)
    return any(node.get('guest') == 'lxc' for node in enabled_nodes(path, display_path(path, root)))


def _record(manifest_path: str, manifest: dict | None, name: str, old: dict | None, entry: dict, result: dict,
            check_mode: bool) -> dict | None:
    """Write ``entry`` into the manifest when it differs from what is there; return the manifest."""
    current = (manifest or {}).get(name)
    if manifest and _manifest.same_artefact(current, entry) and entry.get('fetched_at') == current.get('fetched_at'):
        return manifest
    new_manifest = _manifest.with_entry(manifest, name, entry)
    result['diff'] = {'before': _manifest.render({name: old}) if old else '',
                      'after': _manifest.render({name: entry})}
    if not check_mode:
        _manifest.write(manifest_path, new_manifest)
    result['changed'] = True
    return new_manifest


def _with_placement_plan(result: dict, placement: dict | None) -> dict:
    if placement is not None:
        result['proxmox'] = {'planned': True, 'storage': placement['storage'],
                             'storage_from': placement['storage_from']}
    return result


def placement_spec(params: dict) -> dict | None:
    """The ``proxmox`` options with the storage settled, or None without ``proxmox``.

    ``proxmox.storage`` when given; otherwise ``cluster.proxmox.template_storage`` of the cluster
    intent (``proxmox.intent_file``, default ``inventory/dev/cluster.yaml``; relative paths are
    taken from the project root). ``storage_from`` says which of the two it was.
    """
    if params.get('proxmox') is None:
        return None
    spec = dict(params['proxmox'])
    if spec.get('storage'):
        spec['storage_from'] = 'proxmox.storage'
        return spec
    # Imported here: the intent needs PyYAML, which only placement without a storage uses.
    from ansible_collections.eminfra.pipeline.plugins.module_utils._intent import (  # pylint: disable=import-outside-toplevel
        DEFAULT_CLUSTER_PATH, display_path, load_cluster)
    root = find_project_root()
    path = os.path.join(root, spec.get('intent_file') or DEFAULT_CLUSTER_PATH)
    if not os.path.isfile(path):
        raise CheckError('intent_valid', 'the cluster intent does not exist, so there is no '
                         'cluster.proxmox.template_storage to place the artefact on', where=path,
                         remediation='write the intent (inventory/dev/cluster.yaml) or point proxmox.intent_file '
                         '(role: templates_intent_cluster_file) at it; or name the storage with proxmox.storage '
                         '(role: templates_proxmox_storage)')
    cluster = load_cluster(path, root=root)
    spec['storage'] = cluster['proxmox']['template_storage']
    spec['storage_from'] = f'{display_path(path, root)}: cluster.proxmox.template_storage'
    return spec


def _fetch_verified(params: dict, url: str, dest: str, checksum, old: dict | None, sleep) -> tuple[dict, dict]:
    timeout = float(params.get('timeout') or 30)
    retries = int(params.get('retries') if params.get('retries') is not None else 3)
    validate_certs = params.get('validate_certs', True)
    ca_path = params.get('ca_path')
    checksum_url = None
    algo = checksum_algorithm(params.get('checksum'))
    if checksum and checksum[0] == 'pinned':
        expected, source = checksum[1], 'pinned'
    elif checksum:
        checksum_url = checksum[1]
        text = fetch_text(checksum_url, timeout=timeout, validate_certs=validate_certs, ca_path=ca_path,
                          retries=retries, sleep=sleep)
        expected, source = published_digest(text, filename_from_url(url), checksum_url, algo), 'published'
    elif old and old.get('sha256'):
        # No published checksum (Talos image factory): what the first fetch recorded is the reference.
        expected, source = old['sha256'], old.get('checksum_source') or 'first_fetch'
    else:
        expected, source = None, 'first_fetch'
    with writer_lock(dest, wait=timeout * 2):
        return _fetch_verified_locked(params, url, dest, expected, source, checksum_url, timeout, retries,
                                      validate_certs, ca_path, sleep, algo)


def _fetch_verified_locked(params: dict, url: str, dest: str, expected, source, checksum_url, timeout, retries,
                           validate_certs, ca_path, sleep, algo: str = 'sha256') -> tuple[dict, dict]:
    began = time.monotonic()
    # The streaming pass computes sha256; a sha512 reference is checked in a second pass over
    # the file (a container template is a few hundred MiB), and recorded beside it.
    extra = {}
    if expected and not params.get('force') and os.path.isfile(dest) and not os.path.exists(dest + '.part'):
        reference, size = file_digest(dest, algo)
        if reference == expected:
            digest = reference if algo == 'sha256' else file_digest(dest)[0]
            if algo != 'sha256':
                extra[algo] = reference
            # The right bytes are already there (e.g. the manifest was lost): adopt them.
            entry = _local_entry(params, dest, digest, size, source, _manifest.now_iso(), checksum_url)
            entry.update(extra)
            return entry, {'sha256': digest, 'size': size, 'checksum_source': source, 'action': 'adopt',
                           'elapsed': round(time.monotonic() - began, 3)}
    progress_path = params.get('progress_file') or f'{dest}.progress'
    fetched = fetch(url, dest, timeout=timeout, retries=retries, validate_certs=validate_certs, ca_path=ca_path,
                    progress_path=progress_path, sleep=sleep)
    progress = Progress(progress_path, url)
    got = fetched.sha256
    if algo != 'sha256':
        got = extra[algo] = file_digest(part_paths(dest)[0], algo)[0]
    if expected and got != expected:
        discard(dest)
        progress.remove()
        what = {'pinned': 'the pinned checksum', 'published': f'{checksum_url}',
                'first_fetch': 'the digest recorded by the first fetch'}[source]
        remediation = ('retry (a mirror may be serving a broken copy); if upstream replaced the file on purpose, '
                       'update the checksum')
        if source == 'first_fetch':
            remediation += ' or delete the manifest entry to record a new first fetch'
        raise DownloadError('template_checksum', f'{algo} mismatch: expected {expected} ({what}), got '
                            f'{got} for {fetched.size} bytes; the download was discarded',
                            where=f'GET {url}', remediation=remediation)
    finish(dest)
    progress.remove()
    entry = _local_entry(params, dest, fetched.sha256, fetched.size, source, _manifest.now_iso(), checksum_url)
    entry.update(extra)
    return entry, {'sha256': fetched.sha256, 'size': fetched.size, 'bytes_transferred': fetched.bytes_transferred,
                   'resumed': fetched.resumed, 'restarted': fetched.restarted, 'attempts': fetched.attempts,
                   'elapsed': round(time.monotonic() - began, 3), 'checksum_source': source, 'action': 'fetch',
                   'events': fetched.events}


# ---------------------------------------------------------------------------------- placement
def pve_filename(entry: dict, content: str, override: str | None) -> str:
    """A name Proxmox accepts for this content type (``.img`` qcow2 becomes ``.qcow2`` for import)."""
    name = override or entry['filename']
    check_filename(name, where='proxmox.filename')
    if content == 'import' and not override and name.lower().endswith('.img'):
        with open(entry['path'], 'rb') as handle:
            magic = handle.read(4)
        name = name[:-4] + ('.qcow2' if magic == b'QFI\xfb' else '.raw')
    if not _CONTENT_EXT[content].match(name):
        wanted = {'iso': '.iso or .img', 'vztmpl': '.tar or .tar.(gz|xz|zst|bz2)',
                  'import': '.qcow2, .raw, .vmdk or .ova'}[content]
        raise DownloadError('template_placement', f'{name!r} is not a valid name for {content} content '
                            f'(Proxmox VE wants {wanted})', where='proxmox.filename',
                            remediation='set proxmox.filename to a name with the right extension, or choose '
                            'another proxmox.content')
    return name


class _UploadFile(io.FileIO):
    """The local file, presented to the multipart encoder under the Proxmox file name."""

    def __init__(self, path: str, upload_name: str) -> None:
        super().__init__(path, 'rb')
        # requests takes the multipart file name from ``name`` (FileIO sets it to the path).
        self.name = upload_name


def _default_client_factory(settings: _proxmox_env.ProxmoxSettings, timeout: float):
    return settings.client(timeout=timeout)


def _find_volume(client, node: str, storage: str, content: str, volid: str) -> dict | None:
    for item in client.get(f'nodes/{node}/storage/{storage}/content', content=content) or []:
        if item.get('volid') == volid:
            return item
    return None


def place(entry: dict, spec: dict, settings: _proxmox_env.ProxmoxSettings, check_mode: bool,
          client_factory=None) -> tuple[dict, bool, dict]:
    """Make the artefact present on Proxmox storage; return (entry with proxmox_volid, changed, info).

    ``client_factory(settings, timeout)`` returns the API client (``ProxmoxSettings.client`` unless given)."""
    from ansible_collections.eminfra.pipeline.plugins.module_utils._proxmox import ProxmoxPermissionError  # pylint: disable=import-outside-toplevel
    content = spec.get('content') or CONTENT_FOR_TYPE[entry['type']]
    storage = spec['storage']
    method = spec.get('method') or 'auto'
    timeout = float(spec.get('timeout') or 1800)
    factory = client_factory or _default_client_factory
    client = factory(settings, float(spec.get('api_timeout') or 30))
    node = spec.get('node') or settings.node
    name = pve_filename(entry, content, spec.get('filename'))
    volid = f'{storage}:{content}/{name}'
    info = {'storage': storage, 'content': content, 'node': node, 'volid': volid, 'method': None,
            'action': 'none', 'fallback': None}
    existing = _find_volume(client, node, storage, content, volid)
    if existing is not None and int(existing.get('size') or -1) == entry['size'] and not spec.get('force'):
        info['action'] = 'kept'
        return dict(entry, proxmox_volid=volid), False, info
    if check_mode:
        info['action'] = 'would_place'
        return dict(entry, proxmox_volid=volid), True, info
    if existing is not None:
        if not spec.get('force'):
            raise DownloadError('template_placement', f'{volid} exists with size {existing.get("size")}, '
                                f'the artefact has {entry["size"]} bytes', where=f'nodes/{node}/storage/{storage}/content',
                                remediation='remove the volume in Proxmox (or set proxmox.force: true to replace it)')
        client.wait_task(client.delete(f'nodes/{node}/storage/{storage}/content/{volid}'), node=node,
                         timeout=timeout)
    order = {'download_url': ['download_url'], 'upload': ['upload'], 'auto': ['download_url', 'upload']}[method]
    for attempt in order:
        try:
            if attempt == 'download_url':
                upid = client.post(f'nodes/{node}/storage/{storage}/download-url', content=content, filename=name,
                                   url=entry['source'], checksum=entry['sha256'], **{
                                       'checksum-algorithm': 'sha256',
                                       'verify-certificates': bool(spec.get('validate_certs', True))})
            else:
                with _UploadFile(entry['path'], name) as handle:
                    upid = client.post(f'nodes/{node}/storage/{storage}/upload', content=content, filename=handle,
                                       checksum=entry['sha256'], **{'checksum-algorithm': 'sha256'})
            client.wait_task(upid, node=node, timeout=timeout)
            info['method'] = attempt
            break
        except ProxmoxPermissionError as exc:
            if attempt == order[-1]:
                raise
            info['fallback'] = f'download-url refused ({exc.detail}); uploaded instead'
    found = _find_volume(client, node, storage, content, volid)
    if found is None or int(found.get('size') or -1) != entry['size']:
        raise DownloadError('template_placement', f'after the {info["method"]} task {volid} is '
                            + ('missing' if found is None else f'{found.get("size")} bytes, not {entry["size"]}'),
                            where=f'nodes/{node}/storage/{storage}/content',
                            remediation='look at the task log in the Proxmox UI; check free space on the storage')
    info['action'] = 'placed'
    return dict(entry, proxmox_volid=volid), True, info
