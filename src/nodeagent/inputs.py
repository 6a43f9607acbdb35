"""Reading files that an administrator or a careless tool may have filled
with anything: the config file and the files it points to (web config, GPU
counters, fake GPU descriptions, cfnconfig).

Whatever the bytes, the functions here either return or raise InputError
with a short one-line reason (the caller adds the file and the config key).
They never block on the file (a FIFO or a device is refused before it is
opened for reading), never read more than a size cap, and never let a YAML
document grow past what its bytes hold (alias bombs, deep nesting).
"""

from __future__ import annotations

import os
import stat
from typing import Any

import yaml

# No config-like file the agent reads is anywhere near this (the fully
# commented example config is 13 KB), and PyYAML's pure-Python loader takes
# about a second for this much.
MAX_FILE_BYTES = 256 << 10
# YAML nesting (written or reached through aliases); a config needs about 6.
MAX_DEPTH = 64
# Expanded size of a YAML document through its aliases, in characters of its
# scalars plus one per node: twice what a file under MAX_FILE_BYTES can hold
# without aliases, so only alias bombs reach it.
MAX_EXPANDED = 2 * MAX_FILE_BYTES

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class InputError(ValueError):
    """Why a file's content cannot be used: one line, without the file name;
    key is the dotted path of the YAML key concerned, when there is one."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


def _refuse_unless_regular(st: os.stat_result, max_bytes: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a plain file")
        raise InputError(f"is {kind}, not a regular file")
    if st.st_size > max_bytes:
        raise InputError(f"is {st.st_size} bytes, over the limit of {max_bytes} bytes")


def require_regular_file(path: str, max_bytes: int = MAX_FILE_BYTES) -> None:
    """For files another library opens by path (certificates): refuse a FIFO,
    a device or an oversized file before it is handed over."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror or e}") from None
    except ValueError as e:  # a NUL in the path
        raise InputError(f"cannot read: {e}") from None
    _refuse_unless_regular(st, max_bytes)


def read_bytes(path: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The content of a regular file of at most max_bytes.

    The path is stat'ed first so that a FIFO or a device is never opened; it is
    then opened non-blocking and fstat'ed again, because it may have been
    replaced in between (the open cannot block and the second check decides)."""
    require_regular_file(path, max_bytes)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror or e}") from None
    try:
        _refuse_unless_regular(os.fstat(fd), max_bytes)
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if size > max_bytes:  # it grew after the checks
        raise InputError(f"is over the limit of {max_bytes} bytes")
    return b"".join(chunks)


def decode_utf8(data: bytes) -> str:
    """Strict UTF-8 (a UTF-8 byte order mark is allowed); the error says where."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError("is UTF-16 text; save it as UTF-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputError(f"is not UTF-8 text (line {line}: byte 0x{data[e.start]:02x})") from None


def read_text(path: str, max_bytes: int = MAX_FILE_BYTES) -> str:
    """A regular file's content as strict UTF-8 text."""
    return decode_utf8(read_bytes(path, max_bytes))


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with a nesting limit while composing (the composer
    recurses once per level)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise InputError(f"YAML nested deeper than {MAX_DEPTH} levels at line {mark.line + 1}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases make it larger or deeper than its bytes
    could: the composed graph shares nodes, but everything that walks the
    loaded data (validation, error messages) sees every copy. Iterative, with
    each node's (size, depth) computed once, so the check is linear in the file."""
    done: dict[int, tuple[int, int]] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            kids = [done[id(c)] for c in _children(node)]
            own = len(node.value) + 1 if isinstance(node, yaml.ScalarNode) else 1
            size = min(own + sum(s for s, _ in kids), MAX_EXPANDED + 1)
            depth = 1 + max((d for _, d in kids), default=0)
            if size > MAX_EXPANDED:
                raise InputError(f"YAML aliases expand the document past {MAX_EXPANDED} characters")
            if depth > MAX_DEPTH:
                raise InputError(f"YAML aliases nest the document deeper than {MAX_DEPTH} levels")
            done[key] = (size, depth)
            open_.discard(key)
            continue
        if key in done:
            continue
        if key in open_:
            raise InputError(f"YAML alias at line {node.start_mark.line + 1} refers to a node that contains it")
        open_.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in done)


def _check_duplicates(loader: _Loader, root: yaml.Node) -> None:
    """Refuse a mapping that repeats a key (YAML says keys are unique; PyYAML
    keeps the last one silently), naming the key's dotted path. Each node is
    visited once: the walk is linear in the file, aliases or not."""
    from nodeagent.settings import shown

    seen_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            keys: set[Any] = set()
            for key_node, value_node in node.value:
                # merge keys (<<) may repeat and merged keys are overridden by
                # design; non-scalar keys are refused by PyYAML itself
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    stack.append((value_node, path))
                    continue
                key = loader.construct_object(key_node)
                name = f"{path}.{key}" if path else str(key)
                try:
                    duplicate = key in keys
                    keys.add(key)
                except TypeError:  # an unhashable key: PyYAML's error
                    duplicate = False
                if duplicate:
                    raise InputError(f"duplicate key {shown(key)} at line {key_node.start_mark.line + 1}", name)
                stack.append((value_node, name))


def load_yaml(text: str) -> Any:
    """One YAML document (safe types only), or InputError saying where it is wrong."""
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # checks every character is allowed
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        _check_duplicates(loader, node)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InputError(f"not valid YAML{where}: {e.problem or e.context or 'syntax error'}") from None
    except yaml.reader.ReaderError as e:
        character = f"#x{e.character:04x}" if isinstance(e.character, int) else repr(e.character)
        raise InputError(f"not valid YAML: character {character} is not allowed (position {e.position})") from None
    except yaml.YAMLError as e:
        raise InputError(f"not valid YAML: {type(e).__name__}") from None
    except (ValueError, OverflowError) as e:
        # scalars PyYAML resolves but Python refuses: an int of more than 4300
        # digits, a timestamp like 2024-13-45
        if isinstance(e, InputError):
            raise
        reason = "a number of too many digits" if "digits" in str(e) else str(e)
        raise InputError(f"not valid YAML: a value cannot be read ({reason})") from None
    finally:
        if loader is not None:
            loader.dispose()
