# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Storage: status, content, volumes, download-url and upload."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import os
import re
import shutil
import ssl
import subprocess
import urllib.request

from tests.pvesim.api.base import (Ctx, _assert_file_validity, _bool, _check_file_name, _encode_text, _file_based,
                                   _file_digest, _node, _normalize_filename, _open_url, _perm)
from tests.pvesim.state import ApiError, Simulator, Task, TaskError, image_virtual_size, volume_format


def _storage_visible(ctx: Ctx, storeid: str) -> bool:
    return ctx.checker.has(f'/storage/{storeid}', ['Datastore.Audit', 'Datastore.AllocateSpace'], True)


def _storage_status_entry(sim: Simulator, storeid: str) -> dict:
    store = sim.storages[storeid]
    used = sim.storage_usage(storeid)
    total = int(store['total'])
    return {'storage': storeid, 'type': store['type'], 'content': ','.join(sorted(store['content'])),
            'active': 1, 'enabled': 1 if store.get('enabled', True) else 0, 'shared': 1 if store.get('shared') else 0,
            'total': total, 'used': used, 'avail': max(total - used, 0),
            'used_fraction': (used / total) if total else 0.0}


def get_node_storage(ctx: Ctx) -> object:
    sim = ctx.sim
    out = []
    wanted_content = set(str(ctx.params['content']).split(',')) if ctx.params.get('content') else None
    for storeid, store in sorted(sim.storages.items()):
        if ctx.params.get('storage') and ctx.params['storage'] != storeid:
            continue
        if not _storage_visible(ctx, storeid):
            continue
        if wanted_content and not wanted_content & set(store['content']):
            continue
        if ctx.params.get('enabled') and not store.get('enabled', True):
            continue
        out.append(_storage_status_entry(sim, storeid))
    return out


def get_storage_config_list(ctx: Ctx) -> object:
    out = []
    for storeid, store in sorted(ctx.sim.storages.items()):
        if ctx.params.get('type') and ctx.params['type'] != store['type']:
            continue
        if not _storage_visible(ctx, storeid):
            continue
        entry = {'storage': storeid, 'type': store['type'], 'content': ','.join(sorted(store['content'])),
                 'digest': hashlib.sha1(repr(sorted(store.items())).encode()).hexdigest()}
        if store['type'] == 'dir':
            entry['path'] = store.get('path', '/var/lib/vz')
        if store['type'] == 'lvmthin':
            entry.update({'thinpool': 'data', 'vgname': 'pve'})
        if store.get('shared'):
            entry['shared'] = 1
        out.append(entry)
    return out


def get_storage_status(ctx: Ctx) -> object:
    storeid = str(ctx.params['storage'])
    ctx.sim.storage(storeid)
    entry = _storage_status_entry(ctx.sim, storeid)
    entry.pop('storage')
    entry.pop('used_fraction')
    return entry


def get_storage_content(ctx: Ctx) -> object:
    storeid = str(ctx.params['storage'])
    ctx.sim.storage(storeid)
    out = []
    for entry in ctx.sim.list_volumes(storeid):
        if ctx.params.get('content') and entry['content'] != ctx.params['content']:
            continue
        if ctx.params.get('vmid') is not None and entry.get('vmid') != ctx.params['vmid']:
            continue
        # VM images are listed only where the caller may audit the VM (or allocate on the storage)
        if entry['content'] in ('images', 'rootdir') and not (
                ctx.checker.has(f"/vms/{entry['vmid']}", ['VM.Audit'])
                or ctx.checker.has(f'/storage/{storeid}', ['Datastore.Allocate'])):
            continue
        out.append(entry)
    return out


def _resolve_volume(ctx: Ctx) -> tuple[str, str, str, int | None, str]:
    volume = str(ctx.params['volume'])
    storeid = ctx.params.get('storage')
    if ':' not in volume:
        if not storeid:
            raise ApiError(500, f"unable to parse volume ID '{volume}'")
        volume = f'{storeid}:{volume}'
    try:
        parsed = ctx.sim.parse_volid(volume)
    except ValueError as exc:
        raise ApiError(500, str(exc)) from None
    if storeid and parsed[0] != storeid:
        raise ApiError(500, f"volume '{volume}' is not on storage '{storeid}'")
    return parsed


def _check_volume_access(ctx: Ctx, storeid: str, content: str, owner: int | None, vmid: int | None = None) -> None:
    if content in ('iso', 'vztmpl', 'import'):
        _perm(ctx, f'/storage/{storeid}', ['Datastore.AllocateSpace', 'Datastore.Audit'], True)
    elif owner is not None and vmid is not None and owner == vmid:
        return
    else:
        _perm(ctx, f'/storage/{storeid}', ['Datastore.Allocate'])


def get_volume(ctx: Ctx) -> object:
    storeid, content, name, owner, path = _resolve_volume(ctx)
    _check_volume_access(ctx, storeid, content, owner)
    if not os.path.exists(path):
        raise ApiError(500, f"volume '{storeid}:{name}' does not exist")
    stat = os.stat(path)
    size = image_virtual_size(path) if content in ('images', 'import') else stat.st_size
    return {'path': path, 'size': size, 'used': stat.st_size, 'format': _fmt(content, name)}


def _fmt(content: str, name: str) -> str:
    return volume_format(content, name)


def delete_volume(ctx: Ctx) -> object:
    storeid, content, name, owner, path = _resolve_volume(ctx)
    _perm(ctx, f'/storage/{storeid}', ['Datastore.Allocate'])
    if not os.path.exists(path):
        raise ApiError(500, f"volume '{storeid}:{name}' does not exist")
    if owner is not None and owner in ctx.sim.vms:
        vm = ctx.sim.vms[owner]
        if any(name in str(value) for value in vm.config.values()):
            raise ApiError(500, f"unable to delete volume '{storeid}:{name}' - still in use by VM {owner}")

    def work(task: Task) -> None:
        os.unlink(path)
        task.write(f"Removed volume '{storeid}:{name}'")
    return ctx.sim.start_task(_node(ctx), 'imgdel', _encode_text(f'{storeid}:{name}'), ctx.authid, work)


def get_url_metadata(ctx: Ctx) -> object:
    url = str(ctx.params['url'])
    verify = _bool(ctx.params.get('verify-certificates', 1))
    try:
        with _open_url(url, bool(verify), 'HEAD') as response:
            headers = response.headers
            final = response.geturl()
    except urllib.error.HTTPError as exc:
        raise ApiError(500, f"invalid server response: '{exc.code} {exc.reason}'") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ApiError(500, f"invalid server response: '500 Can't connect ({exc})'") from None
    except TaskError as exc:
        raise ApiError(500, str(exc)) from None
    result: dict[str, object] = {}
    disposition = headers.get('Content-Disposition', '')
    match = re.search(r'filename="?([^";]+)"?', disposition)
    filename = match.group(1) if match else os.path.basename(urllib.parse.urlsplit(final).path)
    if filename:
        result['filename'] = filename
    if headers.get('Content-Length'):
        result['size'] = int(headers['Content-Length'])
    if headers.get('Content-Type'):
        result['mimetype'] = headers['Content-Type'].split(';')[0].strip()
    return result


DECOMPRESSORS = {'gz': ['zcat'], 'lzo': ['lzop', '-d', '-c'], 'zst': ['zstd', '-q', '-d', '-c'],
                 'bz2': ['bzcat', '-q']}


def _decompress(compression: str, src: str, dest: str) -> None:
    """Run the decompressor PVE uses (zcat, lzop, zstd, bzcat) when installed; gz and bz2 fall
    back to Python's own modules so the simulator needs no extra packages."""
    command = DECOMPRESSORS[compression]
    shown = ' '.join([*command, src])
    if shutil.which(command[0]):
        with open(dest, 'wb') as out:
            proc = subprocess.run([*command, src], stdout=out, stderr=subprocess.PIPE, check=False)  # noqa: S603
        if proc.returncode:
            raise TaskError(f"command '{shown}' failed: exit code {proc.returncode}")
        return
    opener = {'gz': gzip.open, 'bz2': bz2.open}.get(compression)
    if opener is None:
        raise TaskError(f"command '{shown}' failed: exec failed: No such file or directory")
    try:
        with opener(src, 'rb') as handle, open(dest, 'wb') as out:
            shutil.copyfileobj(handle, out, 1 << 20)
    except OSError as exc:
        raise TaskError(f"command '{shown}' failed: {exc}") from None


def _verify_checksum(task: Task, path: str, algorithm: str, checksum: str) -> None:
    got = _file_digest(algorithm, path)
    if got.lower() != checksum.lower():
        task.write('calculating checksum...')
        raise TaskError(f"checksum mismatch: got '{got}' != expect '{checksum}'")
    task.write('calculating checksum...OK, checksum verified')


def _fetch(task: Task, url: str, verify: bool, tmp: str) -> None:
    """Download like wget does for PVE; failures end the task with wget's exit code."""
    wget = f"download failed: command 'wget --progress=dot:giga -O {tmp} {url}' failed: exit code"
    try:
        with _open_url(url, verify) as response, open(tmp, 'wb') as out:
            total = 0
            for chunk in iter(lambda: response.read(1 << 20), b''):
                out.write(chunk)
                total += len(chunk)
        task.write(f'{total} bytes received')
    except urllib.error.HTTPError as exc:
        task.write(f'ERROR {exc.code}: {exc.reason}.')
        raise TaskError(f'{wget} 8') from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, 'reason', exc)
        task.write(f'failed: {reason}.')
        raise TaskError(f'{wget} {5 if isinstance(reason, ssl.SSLError) else 4}') from None


def post_download_url(ctx: Ctx) -> object:
    """pve-storage API2::Storage::Status download_url + pve-common Tools::download_file_from_url."""
    sim = ctx.sim
    storeid = str(ctx.params['storage'])
    content = str(ctx.params['content'])
    url = str(ctx.params['url'])
    store = sim.storage(storeid)
    if not _file_based(store):
        raise ApiError(500, f"can't upload to storage type '{store['type']}', not a file based storage!")
    if content not in store['content']:
        raise ApiError(500, f"storage '{storeid}' is not configured for content-type '{content}'")
    filename = _normalize_filename(str(ctx.params['filename']))
    image_format = _check_file_name(content, filename, upload=False)
    dest = sim.volume_path(storeid, content, filename)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    checksum = ctx.params.get('checksum')
    algorithm = ctx.params.get('checksum-algorithm') if checksum else None
    compression = ctx.params.get('compression')
    verify = bool(_bool(ctx.params.get('verify-certificates', 1)))

    def work(task: Task) -> None:
        if compression:
            if content != 'iso':
                raise TaskError(f'decompression not supported for {content}')
            if compression not in DECOMPRESSORS:
                raise TaskError('no decompression method found')
        task.write(f'downloading {url} to {dest}')
        if os.path.isfile(dest):
            if algorithm:
                got = _file_digest(str(algorithm), dest)
                if got.lower() == str(checksum).lower():
                    task.write('calculating checksum of existing file...OK, got correct file already, no need to download')
                    return
                task.write('calculating checksum of existing file...')
                raise TaskError(f"checksum mismatch: got '{got}' != expect '{checksum}', aborting")
            raise TaskError(f"refusing to override existing file '{dest}'")
        tmp = f'{dest}.tmp_dwnl.{task.pid}'
        tmp_decomp = f'{dest}.tmp_dcom.{task.pid}'
        try:
            _fetch(task, url, verify, tmp)
            if algorithm:
                _verify_checksum(task, tmp, str(algorithm), str(checksum))
            current = tmp
            if compression:
                task.write(f'decompressing {tmp} to {tmp_decomp}')
                _decompress(str(compression), tmp, tmp_decomp)
                os.unlink(tmp)
                current = tmp_decomp
            try:
                _assert_file_validity(current, image_format)
            except TaskError as exc:
                raise TaskError(f'failed to verify file: {exc}') from None
            os.replace(current, dest)
        finally:
            for leftover in (tmp, tmp_decomp):
                if os.path.exists(leftover):
                    os.unlink(leftover)
        task.write(f"download of '{url}' to '{dest}' finished")
    return sim.start_task(_node(ctx), 'download', _encode_text(filename), ctx.authid, work)


def post_upload(ctx: Ctx) -> object:
    """pve-storage API2::Storage::Status upload (the file arrives as the ``filename`` part)."""
    sim = ctx.sim
    storeid = str(ctx.params['storage'])
    content = str(ctx.params['content'])
    store = sim.storage(storeid)
    if not _file_based(store):
        raise ApiError(500, f"can't upload to storage type '{store['type']}'")
    upload = ctx.files.get('filename')
    if upload is None:
        raise ApiError(500, 'missing temporary file name')
    filename = _normalize_filename(upload[0])
    image_format = _check_file_name(content, filename, upload=True)
    if content not in store['content']:
        raise ApiError(500, f"storage '{storeid}' does not support '{content}' content")
    dest = sim.volume_path(storeid, content, filename)
    checksum = ctx.params.get('checksum')
    algorithm = ctx.params.get('checksum-algorithm')
    tmp = upload[1]
    ctx.files.pop('filename')  # the task owns the temporary file now
    node = _node(ctx)

    def work(task: Task) -> None:
        try:
            task.write(f'starting file import from: {tmp}')
            if algorithm:
                _verify_checksum(task, tmp, str(algorithm), str(checksum))
            _assert_file_validity(tmp, image_format)
            task.write(f'target node: {node}')
            task.write(f'target file: {dest}')
            task.write(f'file size is: {os.path.getsize(tmp)}')
            task.write(f'command: cp -- {tmp} {dest}')
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.move(tmp, dest)  # like the real server, an existing file is overwritten
            task.write('finished file import successfully')
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return sim.start_task(node, 'imgcopy', '', ctx.authid, work)
