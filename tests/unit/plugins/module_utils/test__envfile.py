# Copyright (c) 2026 EM-Infra maintainers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.eminfra.pipeline.plugins.module_utils._envfile import (
    EnvFileError,
    parse_env,
    quote,
    read_env_file,
    render_env,
)

BASH_ENV = {'PATH': os.environ.get('PATH', '/usr/bin:/bin'), 'LC_ALL': 'C.UTF-8'}

TRICKY_VALUES = [
    '',
    'plain',
    'with spaces  inside',
    "it's",
    "''",
    '"double"',
    '$HOME and ${PATH} and $(id) and `id`',
    'back\\slash \\n \\\\',
    'line one\nline two\n',
    '\n',
    'tab\there',
    'unicode: ünïcødé ✓ 日本',
    "mixed '\"$\\`!*?[a]{b,c}~ #;&|<>()",
    'https://127.0.0.1:8006/api2/json',
    'pipeline@pve!full',
]


def bash_read_back(path: str, keys: list[str]) -> list[str]:
    """Source ``path`` with bash (set -u) and print each key's value, NUL-separated."""
    script = 'set -eu; . "$1"; shift; for key in "$@"; do printf "%s\\0" "${!key}"; done'
    proc = subprocess.run(['bash', '-c', script, 'bash', path, *keys], capture_output=True, env=BASH_ENV,
                          check=True)
    return proc.stdout.decode('utf-8').split('\0')[:-1]


# ---------------------------------------------------------------- parsing

def test_parse_accepts_what_operators_write():
    text = (
        '# Proxmox access\n'
        '\n'
        'PROXMOX_API_URL=https://127.0.0.1:8006\n'
        '   export PROXMOX_NODE="pve"   # the node\n'
        "PROXMOX_TOKEN_ID='pipeline@pve!full'\n"
        'EMPTY=\n'
        'EMPTY_QUOTED=""\n'
        'export\tTABBED=x\n'
        'HASH=#not-a-comment\n'
        'MID=a#b\n'
        "CONCAT=a'b c'\"d\"\n"
        'ESCAPED="a \\"quoted\\" \\$x \\\\ \\q"\n'
        "LITERAL='$(rm -rf /) $HOME `id`'\n"
        'UNQUOTED_DOLLAR=$HOME\n'
        'MULTI="one\n'
        'two"\n'
        'AFTER=after\r\n'
    )
    assert parse_env(text, source='proxmox.env') == {
        'PROXMOX_API_URL': 'https://127.0.0.1:8006',
        'PROXMOX_NODE': 'pve',
        'PROXMOX_TOKEN_ID': 'pipeline@pve!full',
        'EMPTY': '',
        'EMPTY_QUOTED': '',
        'TABBED': 'x',
        'HASH': '#not-a-comment',
        'MID': 'a#b',
        'CONCAT': 'ab cd',
        'ESCAPED': 'a "quoted" $x \\ \\q',
        'LITERAL': '$(rm -rf /) $HOME `id`',
        'UNQUOTED_DOLLAR': '$HOME',
        'MULTI': 'one\ntwo',
        'AFTER': 'after',
    }


def test_parse_agrees_with_bash_on_quoting(tmp_path):
    text = ("A='single $x'\n"
            'B="double \\"q\\" \\\\ \\z"\n'
            "C=a'b'\"c\"\\ d\n"
            'export D="multi\nline"\n'
            "E='it'\\''s'\n")
    path = tmp_path / 'agree.env'
    path.write_text(text, encoding='utf-8')
    parsed = parse_env(text)
    assert bash_read_back(str(path), list(parsed)) == list(parsed.values())


def test_error_after_multiline_value_names_the_right_line():
    text = 'A="one\ntwo\nthree"\nB=ok\nC x\n'
    with pytest.raises(EnvFileError) as err:
        parse_env(text, source='f.env')
    assert err.value.line == 5
    assert 'f.env line 5' in str(err.value)


@pytest.mark.parametrize('text, line, words', [
    ('A=1\nNOEQUALS\n', 2, 'no "="'),
    ("A=1\nB='open\n", 2, 'single quote is never closed'),
    ('A="open\n\n', 1, 'double quote is never closed'),
    ('A=1\nB=2\nA=3\n', 3, 'duplicate key A (first set on line 1)'),
    ('A=1\n\x00\x01binary', 2, 'NUL byte'),
    ('A=1\nB=\x1b[31m\n', 2, 'control character'),
    ('', 1, 'no KEY=VALUE lines'),
    ('# only a comment\n\n', 1, 'no KEY=VALUE lines'),
    ('1A=x\n', 1, 'invalid key'),
    ('A B=x\n', 1, 'invalid key'),
    ('KEY =x\n', 1, 'invalid key'),
    ('A=two words\n', 1, 'unexpected text after the value'),
    ('A=x;rm -rf /\n', 1, "shell syntax ';'"),
    ('A=$(id)\n', 1, "shell syntax '('"),
    ('A=x\\', 1, 'backslash at the end'),
])
def test_malformed_env_files_name_file_and_line(text, line, words):
    with pytest.raises(EnvFileError) as err:
        parse_env(text, source='state/proxmox.env')
    message = str(err.value)
    assert message.startswith(f'env_file_syntax: state/proxmox.env line {line}: ')
    assert words in message
    assert 'Remediation: ' in message
    assert err.value.line == line


def test_read_env_file_names_the_line_of_undecodable_bytes(tmp_path):
    path = tmp_path / 'garbage.env'
    path.write_bytes(b'A=1\nB=2\nC=\xff\xfe\n')
    with pytest.raises(EnvFileError) as err:
        read_env_file(str(path), check='proxmox_env_valid')
    assert str(err.value).startswith(f'proxmox_env_valid: {path} line 3: not UTF-8 text (byte 0xff)')


def test_read_env_file_sets_the_check_id(tmp_path):
    path = tmp_path / 'empty.env'
    path.write_bytes(b'')
    with pytest.raises(EnvFileError) as err:
        read_env_file(str(path), check='proxmox_env_valid')
    assert str(err.value).startswith(f'proxmox_env_valid: {path} line 1: ')
    assert read_env_file(str(path), allow_empty=True) == {}


def test_random_binary_file_gives_env_file_error(tmp_path):
    path = tmp_path / 'random.env'
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(EnvFileError):
        read_env_file(str(path))


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(codec='utf-8'), max_size=200))
def test_parser_raises_only_env_file_error(text):
    try:
        result = parse_env(text, source='fuzz.env', allow_empty=True)
    except EnvFileError as err:
        assert str(err).startswith('env_file_syntax: fuzz.env line ')
    else:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in result.items())


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='AB=\'"\\ \t\n#$`;x-export', max_size=60))
def test_parser_on_env_like_text_raises_only_env_file_error(text):
    try:
        parse_env(text, source='fuzz.env', allow_empty=True)
    except EnvFileError:
        pass


# ---------------------------------------------------------------- writing

def test_quote():
    assert quote("it's") == "'it'\\''s'"
    assert quote('') == "''"


def test_render_env_is_sourceable_and_exact(tmp_path):
    values = {f'K{index}': value for index, value in enumerate(TRICKY_VALUES)}
    path = tmp_path / 'tricky.env'
    path.write_text(render_env(values), encoding='utf-8')
    assert bash_read_back(str(path), list(values)) == list(values.values())
    assert parse_env(path.read_text(encoding='utf-8')) == values


@pytest.mark.parametrize('value', ['a\rb', 'nul\x00', 'esc\x1b[0m', 'del\x7f', 'bell\x07'])
def test_render_env_refuses_values_it_cannot_store(value):
    with pytest.raises(ValueError, match='K: '):
        render_env({'K': value})


@pytest.mark.parametrize('key', ['1A', 'A-B', 'A B', '', 'Ä'])
def test_render_env_refuses_bad_keys(key):
    with pytest.raises(ValueError, match='invalid env key'):
        render_env({key: 'x'})


def test_render_env_empty():
    assert render_env({}) == ''


_VALUE_CHARS = st.characters(codec='utf-8', exclude_categories=('Cs',),
                             exclude_characters=''.join(chr(c) for c in range(32) if chr(c) not in '\t\n') + '\x7f')
_KEYS = st.from_regex(r'\AK_[A-Z0-9_]{0,6}\Z')


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_KEYS, st.text(alphabet=_VALUE_CHARS, max_size=40), min_size=1, max_size=6))
def test_render_round_trips_through_bash_and_the_parser(tmp_path_factory, values):
    path = tmp_path_factory.mktemp('roundtrip') / 'values.env'
    text = render_env(values)
    path.write_text(text, encoding='utf-8')
    assert bash_read_back(str(path), list(values)) == list(values.values())
    assert parse_env(text) == values


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_render_refuses_or_round_trips(value):
    try:
        text = render_env({'K': value})
    except ValueError:
        return
    assert parse_env(text) == {'K': value}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(['A', 'B', 'export A', ' B']),
                          st.text(alphabet='ab \t\'"\\#=\n', max_size=12)), min_size=1, max_size=3))
def test_whatever_the_parser_accepts_bash_reads_the_same(tmp_path_factory, lines):
    """Without $ and backquotes (which the parser keeps literally, by design) parser and bash agree."""
    text = ''.join(f'{key}={value}\n' for key, value in lines)
    try:
        parsed = parse_env(text)
    except EnvFileError:
        return
    path = tmp_path_factory.mktemp('agree') / 'fuzz.env'
    path.write_text(text, encoding='utf-8')
    assert bash_read_back(str(path), list(parsed)) == list(parsed.values()), text
