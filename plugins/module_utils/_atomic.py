# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""State-file I/O: atomic writes, JSON reads that fail as checks, file digests.

This is a private module_utils file of eminfra.pipeline; its API may change at any time.

Writes go to a temp file in the same directory, fsync, rename, fsync directory: a reader of a
state file sees the old content or the new content, never a torn file, and a crash never leaves
a half-written file under the real name. ``read_json`` is the one way a contract or state file
in JSON is read: every way it can be unusable is a CheckError naming the check, the file and a
remediation. ``file_digest`` is the one way a file is hashed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError

#: Bytes read at a time when hashing a file.
HASH_CHUNK = 1 << 20


def read_bytes(path: str) -> bytes | None:
    """Return the file's content, or None when it does not exist."""
    try:
        with open(path, 'rb') as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def read_json(path: str, check: str, remediation: str, expect: type | None = dict, what: str = 'the file'):
    """The JSON document at ``path``, whose top level must be an ``expect`` (None: anything).

    Missing, unreadable, not UTF-8 JSON, or the wrong top-level type: CheckError ``check`` naming
    ``path``, with ``remediation``."""
    try:
        with open(path, 'rb') as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise CheckError(check, f'{what} does not exist', where=path, remediation=remediation) from None
    except OSError as exc:
        raise CheckError(check, f'{what} cannot be read ({exc.strerror or exc})', where=path,
                         remediation=remediation) from None
    try:
        data = json.loads(raw.decode('utf-8'))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckError(check, f'not JSON ({exc})', where=path, remediation=remediation) from None
    if expect is not None and not isinstance(data, expect):
        wanted = {dict: 'an object', list: 'an array'}.get(expect, expect.__name__)
        raise CheckError(check, f'the top level is {_json_kind(data)}, not {wanted}', where=path,
                         remediation=remediation)
    return data


def _json_kind(data) -> str:
    for kind, name in ((dict, 'an object'), (list, 'an array'), (str, 'a string'), (bool, 'a boolean'),
                       (int, 'a number'), (float, 'a number')):
        if isinstance(data, kind):
            return name
    return 'null'


def update_digest(digest, path: str, length: int | None = None) -> int:
    """Feed the first ``length`` bytes of ``path`` (all of it when None) into ``digest``; return how many."""
    done = 0
    with open(path, 'rb') as handle:
        while length is None or done < length:
            chunk = handle.read(HASH_CHUNK if length is None else min(HASH_CHUNK, length - done))
            if not chunk:
                break
            digest.update(chunk)
            done += len(chunk)
    return done


def file_digest(path: str, algo: str = 'sha256') -> tuple[str, int]:
    """The file's hex digest (``sha256`` unless told) and its size."""
    digest = hashlib.new(algo)
    size = update_digest(digest, path)
    return digest.hexdigest(), size


def fsync_dir(directory: str) -> None:
    """Make a rename or a new file in ``directory`` durable."""
    fd = os.open(directory or '.', os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes | str, mode: int = 0o644, makedirs: bool = True,
                 dir_mode: int = 0o755) -> None:
    """Replace ``path`` with ``data`` atomically; the file has ``mode`` from its first byte."""
    if isinstance(data, str):
        data = data.encode('utf-8')
    directory = os.path.dirname(os.path.abspath(path))
    if makedirs:
        os.makedirs(directory, mode=dir_mode, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix='.tmp', dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(directory)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_if_changed(path: str, data: bytes | str, mode: int = 0o644) -> bool:
    """Write atomically only when content or mode differ; return whether anything changed."""
    if isinstance(data, str):
        data = data.encode('utf-8')
    current = read_bytes(path)
    if current == data and (os.stat(path).st_mode & 0o7777) == mode:
        return False
    atomic_write(path, data, mode=mode)
    return True
