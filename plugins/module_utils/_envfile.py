# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Read and write the pipeline's ``KEY=VALUE`` env files without any shell evaluation.

This is a private module_utils file of eminfra.pipeline; its API may change at any time.

Reading accepts what operators write by hand: comments, blank lines, an optional ``export``
prefix, unquoted values, single quotes (literal) and double quotes (backslash escapes for
``\\ " $ ` newline``). ``$VAR`` and command substitutions are kept literally, never expanded.
Writing produces ``KEY='value'`` lines that bash sources back to the exact same values.
"""

from __future__ import annotations

import os
import re
import stat

from ansible_collections.eminfra.pipeline.plugins.module_utils._errors import CheckError

KEY_RE = re.compile(r'[A-Za-z_][A-Za-z0-9_]*\Z')
_DQ_ESCAPABLE = '\\"$`\n'
#: Characters that never occur in a text env file (tab and newline are text).
_CONTROL_RE = re.compile('[\x00-\x08\x0b-\x1f\x7f]')
_BLANK = ' \t'
#: The quoted excerpt of a syntax error message (``: 'text'`` or `` in 'text'``).
_QUOTED_EXCERPT_RE = re.compile(r"(:| in) '(?:[^'\\]|\\.)*'|(:| in) \"(?:[^\"\\]|\\.)*\"")


class EnvFileError(CheckError):
    """A malformed env file; names the file and the line."""

    def __init__(self, source: str, line: int | None, detail: str, check: str = 'env_file_syntax',
                 remediation: str | None = None) -> None:
        where = source if line is None else f'{source} line {line}'
        super().__init__(check, detail, where=where,
                         remediation=remediation or 'write one KEY=VALUE per line; quote values '
                         "that contain spaces or quotes, e.g. KEY='a value'")
        self.source = source
        self.line = line


def _parse_value(text: str, pos: int, line: int, source: str) -> tuple[str, int, int]:
    """Parse a value starting at ``pos``; return (value, new_pos, new_line)."""
    out: list[str] = []
    length = len(text)
    while pos < length:
        char = text[pos]
        if char == '\n':
            break
        if char in ' \t':
            # Whitespace ends an unquoted value; only a comment may follow.
            rest_end = text.find('\n', pos)
            rest = text[pos:rest_end if rest_end != -1 else length].strip(_BLANK)
            if rest and not rest.startswith('#'):
                raise EnvFileError(source, line, f'unexpected text after the value: {rest[:40]!r} '
                                   '(quote values that contain spaces)')
            pos = rest_end if rest_end != -1 else length
            break
        if char == "'":
            end = text.find("'", pos + 1)
            if end == -1:
                raise EnvFileError(source, line, 'single quote is never closed')
            segment = text[pos + 1:end]
            out.append(segment)
            line += segment.count('\n')
            pos = end + 1
            continue
        if char == '"':
            pos += 1
            open_line = line
            while True:
                if pos >= length:
                    raise EnvFileError(source, open_line, 'double quote is never closed')
                char = text[pos]
                if char == '"':
                    pos += 1
                    break
                if char == '\\' and pos + 1 < length and text[pos + 1] in _DQ_ESCAPABLE:
                    if text[pos + 1] == '\n':
                        line += 1  # line continuation: both characters vanish
                    else:
                        out.append(text[pos + 1])
                    pos += 2
                    continue
                if char == '\n':
                    line += 1
                out.append(char)
                pos += 1
            continue
        if char == '\\':
            if pos + 1 >= length:
                raise EnvFileError(source, line, 'backslash at the end of the file')
            if text[pos + 1] == '\n':
                line += 1
            else:
                out.append(text[pos + 1])
            pos += 2
            continue
        if char == '#' and not out and pos > 0 and text[pos - 1] == '=':
            # KEY=#x is a value in the shell, not a comment.
            out.append(char)
            pos += 1
            continue
        if char in ';&|<>()`':
            raise EnvFileError(source, line, f'shell syntax {char!r} is not allowed in an unquoted '
                               'value (env files are data, not scripts)')
        out.append(char)
        pos += 1
    return ''.join(out), pos, line


def parse_env(text: str, source: str = '<string>', allow_empty: bool = False) -> dict[str, str]:
    """Parse env-file text into an ordered dict; raise EnvFileError naming ``source`` and line."""
    text = text.replace('\r\n', '\n')
    if '\x00' in text:
        line = text[:text.index('\x00')].count('\n') + 1
        raise EnvFileError(source, line, 'binary content (NUL byte); this is not a text env file')
    control = _CONTROL_RE.search(text)
    if control:
        line = text[:control.start()].count('\n') + 1
        raise EnvFileError(source, line, f'control character {control.group()!r}; this is not a '
                           'text env file')
    result: dict[str, str] = {}
    first_line: dict[str, int] = {}
    pos = 0
    line = 1
    length = len(text)
    while pos < length:
        end = text.find('\n', pos)
        raw_end = end if end != -1 else length
        stripped = text[pos:raw_end].strip(_BLANK)
        if not stripped or stripped.startswith('#'):
            pos = raw_end + 1
            line += 1
            continue
        start_line = line
        lead = len(text[pos:raw_end]) - len(text[pos:raw_end].lstrip(_BLANK))
        pos += lead
        if text.startswith('export', pos) and pos + 6 < length and text[pos + 6] in ' \t':
            pos += 6
            while pos < length and text[pos] in ' \t':
                pos += 1
        eq = text.find('=', pos, raw_end)
        if eq == -1:
            raise EnvFileError(source, start_line, f'no "=" in {stripped[:40]!r}; expected KEY=VALUE')
        key = text[pos:eq]
        if not KEY_RE.match(key):
            raise EnvFileError(source, start_line, f'invalid key {key[:40]!r}: keys are letters, '
                               'digits and underscores, not starting with a digit, with no space '
                               'before "="')
        value, pos, line = _parse_value(text, eq + 1, start_line, source)
        if key in result:
            raise EnvFileError(source, start_line, f'duplicate key {key} (first set on line '
                               f'{first_line[key]})')
        result[key] = value
        first_line[key] = start_line
        pos += 1  # past the newline
        line += 1
    if not result and not allow_empty:
        raise EnvFileError(source, 1, 'the file has no KEY=VALUE lines (it is empty or only '
                           'comments)')
    return result


def read_env_file(path: str, allow_empty: bool = False, check: str = 'env_file_syntax') -> dict[str, str]:
    """Read and parse an env file; undecodable bytes become an EnvFileError naming the line."""
    with open(path, 'rb') as handle:
        data = handle.read()
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b'\n') + 1
        raise EnvFileError(path, line, f'not UTF-8 text (byte 0x{data[exc.start]:02x}); binary '
                           'content is not an env file', check=check) from None
    try:
        return parse_env(text, source=path, allow_empty=allow_empty)
    except EnvFileError as exc:
        exc.check = check
        raise


def check_private_file(path: str, present_check: str, valid_check: str, secret_name: str,
                       missing_remediation: str) -> None:
    """An env file that holds a secret (proxmox.env, terraform_backend.env) must exist, be a regular
    file and have no group or other permissions (0600); failures name ``path``."""
    name = os.path.basename(path)
    if not os.path.lexists(path):
        raise CheckError(present_check, 'the file does not exist', where=path, remediation=missing_remediation)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise CheckError(present_check, f'cannot stat the file ({exc.strerror})', where=path,
                         remediation='fix the path or its permissions') from None
    if not stat.S_ISREG(info.st_mode):
        raise CheckError(valid_check, 'not a regular file', where=path,
                         remediation=f'write {name} as a regular file with mode 0600')
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise CheckError(valid_check, f'mode {mode:04o} lets the group or others read {secret_name}; '
                         'the file is refused', where=path, remediation=f'chmod 600 {path}')


def read_private_env_file(path: str, present_check: str, valid_check: str, secret_name: str,
                          missing_remediation: str) -> dict[str, str]:
    """Read an env file that holds a secret, after ``check_private_file``."""
    check_private_file(path, present_check, valid_check, secret_name, missing_remediation)
    try:
        return read_env_file(path, check=valid_check)
    except EnvFileError as exc:
        # A syntax error quotes the text it stopped at, which in this file may be part of the secret.
        exc.detail = _QUOTED_EXCERPT_RE.sub('', exc.detail)
        raise


def quote(value: str) -> str:
    """Quote ``value`` for a shell: single quotes, with ``'`` written as ``'\\''``."""
    return "'" + value.replace("'", "'\\''") + "'"


def check_value(key: str, value: str) -> None:
    """Raise ValueError when ``value`` cannot be written so that it reads back exactly.

    Newlines and tabs are stored as they are inside single quotes; other control characters
    (NUL, carriage return, escape ...) are refused: bash would keep some and drop others, and
    they are never part of a path, an id or a URL.
    """
    control = _CONTROL_RE.search(value)
    if control:
        raise ValueError(f'{key}: the value holds the control character {control.group()!r}, '
                         'which an env file cannot store')
    try:
        value.encode('utf-8')
    except UnicodeEncodeError:
        raise ValueError(f'{key}: the value is not valid Unicode text') from None


def render_env(values: dict[str, str]) -> str:
    """Render ``KEY='value'`` lines that bash sources back to exactly ``values``."""
    lines = []
    for key, value in values.items():
        if not isinstance(key, str) or not KEY_RE.match(key):
            raise ValueError(f'invalid env key {key!r}')
        value = '' if value is None else str(value)
        check_value(key, value)
        lines.append(f'{key}={quote(value)}')
    return '\n'.join(lines) + ('\n' if lines else '')


def file_mode(path: str) -> int:
    return os.stat(path).st_mode & 0o7777
