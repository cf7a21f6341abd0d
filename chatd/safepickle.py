"""A pickle reader that runs no code: plain data (dict, list, str, int, float, bool, None) only.

`pickle.loads` is not safe on a stranger's file: a pickle is a program that
may call any global, or be built to exhaust memory or time. `load_plain`
never runs a pickle it has not read first: `scan` reads the opcode stream
without building anything (data opcodes only, memo indexes in sequence,
budgets); the load itself uses an unpickler whose `find_class` always
raises; `check_tree`, an iterative walk, refuses shared containers and deep
nesting. Every refusal is an `UnsafePickle` with a one-line reason.
chatd's transcripts (chatd/transcript.py) are read with it; docs/transcripts.md
explains each defence.
"""

from __future__ import annotations

import io
import pickle
import pickletools
from dataclasses import dataclass
from typing import Any

# why: protocols 4 and 5 carry plain data with no global at all; older ones need one for bytes.
READABLE_PROTOCOLS = frozenset({4, 5})
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
# why: the wire refuses JSON nested deeper than 32 levels; a transcript needs 5.
MAX_DEPTH = 32
# why: Python's pickler batches APPENDS/SETITEMS by 1000, so honest files stay far below this.
MAX_STACK = 1 << 20

# Opcodes that build plain data and nothing else. Text-mode (protocol 0)
# forms, bytes, tuples and sets are left out: a protocol 4/5 pickler never
# needs them for a transcript, and each one left out is one less way in.
PUSH_OPCODES = frozenset(
    {
        "NONE", "NEWTRUE", "NEWFALSE",
        "BININT", "BININT1", "BININT2", "LONG1", "BINFLOAT",
        "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8",
        "EMPTY_LIST", "EMPTY_DICT",
        "BINGET", "LONG_BINGET",
    }
)  # fmt: skip
ALLOWED_OPCODES = PUSH_OPCODES | {
    "PROTO", "FRAME", "STOP", "MARK", "MEMOIZE", "BINPUT", "LONG_BINPUT",
    "APPEND", "APPENDS", "LIST", "SETITEM", "SETITEMS", "DICT",
}  # fmt: skip
# Opcodes that name a global, call it or build an object: the code-execution path.
OBJECT_OPCODES = frozenset(
    {
        "GLOBAL", "STACK_GLOBAL", "REDUCE", "BUILD", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX",
        "EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID",
    }
)  # fmt: skip
_CONTAINER_OPCODES = frozenset({"EMPTY_LIST", "EMPTY_DICT", "LIST", "DICT"})
_SCALARS = (str, int, float, bool, type(None))


class UnsafePickle(Exception):
    """A pickle that is refused, or cannot be read; the message is one line."""


class ForeignPickle(UnsafePickle):
    """Not a pickle this reader reads at all (another format, or an old protocol)."""


@dataclass(frozen=True, slots=True)
class PickleBudget:
    """Budgets for one load; scaled to the size cap, so a hostile file costs no more
    memory or time than an honest file of the same size."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_opcodes: int = DEFAULT_MAX_BYTES // 2
    max_containers: int = DEFAULT_MAX_BYTES // 16
    max_nodes: int = DEFAULT_MAX_BYTES // 2
    max_depth: int = MAX_DEPTH
    max_stack: int = MAX_STACK

    @classmethod
    def for_size(cls, max_bytes: int) -> PickleBudget:
        # why: an honest pickle spends >= 3 bytes per opcode and >= 16 per message dict.
        return cls(
            max_bytes=max_bytes,
            max_opcodes=max(1024, max_bytes // 2),
            max_containers=max(64, max_bytes // 16),
            max_nodes=max(1024, max_bytes // 2),
        )


def one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


_NOT_OURS = "not a pickle of protocol 4 or 5"


def _refused(why: str) -> UnsafePickle:
    return UnsafePickle(f"refused: {why}")


def _damaged(name: str, pos: int, why: str) -> UnsafePickle:
    return UnsafePickle(f"damaged pickle: {name} at byte {pos} {why}")


def scan(data: bytes, limits: PickleBudget) -> None:
    """Refuse any pickle that is not plain data within budget, without building anything.

    Simulates the unpickler's stack and mark stack, so malformed streams are
    refused here and the real load never sees a stack or memo it would grow
    without bound.
    """
    opcodes = containers = memo = stack = 0
    marks: list[int] = []
    end = -1
    foreign = False  # why: a foreign pickle is still read, to say so if it would run code
    danger = ""
    try:
        for opcode, arg, at in pickletools.genops(data):
            pos = at or 0  # genops gives positions for a bytes input
            name = opcode.name
            opcodes += 1
            if opcodes > limits.max_opcodes:
                raise _refused(f"more than {limits.max_opcodes} pickle opcodes")
            if name in OBJECT_OPCODES:
                danger = (
                    danger or f"names a global or builds an object (opcode {name} at byte {pos})"
                )
                if not foreign and opcodes > 1:
                    raise _refused(f"the pickle {danger}; a transcript holds plain data only")
            if opcodes == 1:
                foreign = name != "PROTO" or arg not in READABLE_PROTOCOLS
            if foreign or opcodes == 1:
                end = pos
                continue
            if name not in ALLOWED_OPCODES:
                raise _refused(f"opcode {name} at byte {pos} is not plain transcript data")
            containers += name in _CONTAINER_OPCODES
            if containers > limits.max_containers:
                raise _refused(f"more than {limits.max_containers} lists and dicts")
            stack = _stack_effect(name, arg, pos, stack, marks, memo, len(data))
            if stack > limits.max_stack or len(marks) > limits.max_depth:
                raise _refused(f"the pickle nests too deep at byte {pos}")
            if name in ("MEMOIZE", "BINPUT", "LONG_BINPUT"):
                memo += 1
            end = pos
    except UnsafePickle:
        raise
    except Exception as exc:  # pickletools' own complaint about a short or broken stream
        if foreign or opcodes == 0:
            raise ForeignPickle(_NOT_OURS) from None
        raise UnsafePickle(f"truncated or damaged pickle: {one_line(str(exc))}") from None
    if foreign:
        raise ForeignPickle(f"{_NOT_OURS}, and it {danger}" if danger else _NOT_OURS)
    if end + 1 != len(data):
        raise UnsafePickle(f"damaged pickle: {len(data) - end - 1} bytes after its end")


def _stack_effect(
    name: str, arg: Any, pos: int, stack: int, marks: list[int], memo: int, size: int
) -> int:
    """The stack height after one opcode; UnsafePickle when it cannot apply."""

    def need(count: int) -> None:
        floor = marks[-1] if marks else 0
        if stack - floor < count:
            raise _damaged(name, pos, "has too few operands")

    if name in PUSH_OPCODES:
        if name in ("BINGET", "LONG_BINGET") and not 0 <= arg < memo:
            raise _refused(f"memo index {arg} at byte {pos} was never stored")
        return stack + 1
    if name in ("MEMOIZE", "BINPUT", "LONG_BINPUT"):
        if name != "MEMOIZE" and arg != memo:
            raise _refused(f"memo index {arg} at byte {pos} is out of sequence")
        need(1)
        return stack
    if name == "FRAME":
        if arg > size - pos - 9:  # why: FRAME's own 9 bytes come first
            raise UnsafePickle(f"truncated or damaged pickle: frame at byte {pos} is too long")
        return stack
    if name == "MARK":
        marks.append(stack)
        return stack
    if name in ("APPEND", "SETITEM"):
        operands = 2 if name == "APPEND" else 3
        need(operands)
        return stack - operands + 1
    if name in ("APPENDS", "SETITEMS", "LIST", "DICT"):
        if not marks:
            raise _damaged(name, pos, "without a mark")
        floor = marks.pop()
        outer = marks[-1] if marks else 0
        items = stack - floor
        if name in ("SETITEMS", "DICT") and items % 2:
            raise _damaged(name, pos, "has an odd item count")
        if name in ("LIST", "DICT"):
            return floor + 1
        if floor - outer < 1:
            raise _damaged(name, pos, "has no container")
        return floor
    if name == "STOP":
        if stack != 1 or marks:
            raise _damaged(name, pos, "with a bad stack")
        return stack
    raise _refused(f"opcode {name} at byte {pos} is not plain transcript data")


class _PlainUnpickler(pickle.Unpickler):
    """Loads plain data only: any request for a global is refused, whatever the scan said."""

    def find_class(self, module: str, name: str) -> Any:
        raise UnsafePickle(
            f"refused: the pickle names the global {one_line(module, 60)}.{one_line(name, 60)}"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickle("refused: the pickle asks for a persistent object")


def load_plain(data: bytes, limits: PickleBudget) -> Any:
    """Scan, then load, then walk: the plain-data tree of a pickle that passed every check."""
    scan(data, limits)
    try:
        root = _PlainUnpickler(io.BytesIO(data)).load()
    except UnsafePickle:
        raise
    except Exception as exc:
        raise UnsafePickle(f"damaged pickle: {one_line(str(exc))}") from None
    check_tree(root, limits)
    return root


def check_tree(root: Any, limits: PickleBudget) -> None:
    """Refuse shared containers, deep nesting, foreign types and trees over the node budget.

    Iterative, so depth costs no Python stack. A container is marked as
    seen when its parent is expanded, so a shared-reference bomb is refused
    at its first reuse instead of after 2^39 steps.
    """
    seen: set[int] = {id(root)}
    nodes = 0
    pending: list[tuple[Any, int]] = [(root, 1)]
    while pending:
        value, depth = pending.pop()
        nodes += 1
        if nodes > limits.max_nodes:
            raise _refused(f"more than {limits.max_nodes} values")
        kind = type(value)
        if kind is not dict and kind is not list:
            if not isinstance(value, _SCALARS):
                raise _refused(f"a {kind.__name__} is not plain data")
            continue
        if depth > limits.max_depth:
            raise _refused(f"data nested deeper than {limits.max_depth}")
        if kind is dict:
            nodes += len(value)  # the keys: scalars, since lists and dicts cannot be keys
        for child in value.values() if kind is dict else value:
            if type(child) is dict or type(child) is list:
                if id(child) in seen:
                    raise _refused("a list or dict appears more than once")
                seen.add(id(child))
            pending.append((child, depth + 1))
