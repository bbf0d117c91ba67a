"""Fingerprints of user callbacks: a short hash that changes when the callback's code changes.

The model manifest stores one per callback so that ``setup()`` can tell a changed computation
from an unchanged one. The rule, for a Python function:

- its bytecode (``co_code``), its constants (``co_consts``, recursively into nested code
  objects: lambdas and comprehensions inside it), the names it uses (``co_names``) and its
  argument count;
- the values of its closure cells and default arguments when they are plain data (None, bool,
  int, float, str, bytes and lists/tuples/dicts/sets of those), and the fingerprint of any
  function among them;
- for each global name it reads: the value when it is plain data (a module constant), the
  fingerprint when it is a function (a helper it calls), recursively.

``functools.partial`` objects are their function plus their arguments; bound methods their
function; other callable objects their class's ``__call__``.

Limits (documented, not detected): anything else a callback reaches contributes its *type name*
only: the state of an object in a closure or a global, a module attribute read through
``module.name``, a class's methods, data read from files. Line numbers and local variable names
do not count (moving or reformatting a function changes nothing). A new Python version may
compile the same source to other bytecode: every callback then counts as changed, and
``setup()`` recomputes what they derive (safe, costs one backfill).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import types
from collections.abc import Callable
from typing import Any

_PLAIN = (type(None), bool, int, float, str, bytes)
_MAX_DEPTH = 8


def fingerprint(fn: Callable[..., Any] | None) -> str | None:
    """The fingerprint of ``fn`` (None for None): 16 hex digits."""
    if fn is None:
        return None
    digest = hashlib.sha256()
    _feed(digest, fn, 0, set())
    return digest.hexdigest()[:16]


def _feed(digest: Any, value: Any, depth: int, seen: set[int]) -> None:
    def put(text: str) -> None:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")

    if isinstance(value, _PLAIN):
        put(f"{type(value).__name__}:{value!r}")
        return
    if depth > _MAX_DEPTH or id(value) in seen:
        put(f"ref:{type(value).__qualname__}")
        return
    seen = seen | {id(value)}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        put(f"{type(value).__name__}[{len(items)}")
        for item in items:
            _feed(digest, item, depth + 1, seen)
        put("]")
    elif isinstance(value, dict):
        put(f"dict[{len(value)}")
        for key in sorted(value, key=repr):
            _feed(digest, key, depth + 1, seen)
            _feed(digest, value[key], depth + 1, seen)
        put("]")
    elif isinstance(value, types.CodeType):
        _feed_code(digest, value, depth, seen)
    elif isinstance(value, types.FunctionType):
        put("function")
        _feed_code(digest, value.__code__, depth, seen)
        for default in value.__defaults__ or ():
            _feed(digest, default, depth + 1, seen)
        for cell in value.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell (a name bound later)
                put("empty-cell")
                continue
            _feed(digest, contents, depth + 1, seen)
        for name in _global_names(value.__code__):
            if name in value.__globals__:
                found = value.__globals__[name]
                if isinstance(found, (*_PLAIN, list, tuple, dict, types.FunctionType)):
                    put(f"global:{name}")
                    _feed(digest, found, depth + 1, seen)
    elif isinstance(value, types.MethodType):
        put("method")
        _feed(digest, value.__func__, depth + 1, seen)
    elif isinstance(value, functools.partial):
        put("partial")
        _feed(digest, value.func, depth + 1, seen)
        _feed(digest, value.args, depth + 1, seen)
        _feed(digest, dict(value.keywords), depth + 1, seen)
    elif isinstance(value, types.BuiltinFunctionType | types.BuiltinMethodType):
        put(f"builtin:{getattr(value, '__module__', None)}.{value.__qualname__}")
    elif isinstance(
        call := inspect.getattr_static(type(value), "__call__", None), types.FunctionType
    ):
        put(f"callable:{type(value).__qualname__}")
        _feed(digest, call, depth + 1, seen)
    else:
        put(f"object:{type(value).__module__}.{type(value).__qualname__}")


def _feed_code(digest: Any, code: types.CodeType, depth: int, seen: set[int]) -> None:
    digest.update(code.co_code)
    digest.update(repr((code.co_argcount, code.co_kwonlyargcount, code.co_names)).encode())
    for const in code.co_consts:
        _feed(digest, const, depth + 1, seen)


def _global_names(code: types.CodeType) -> list[str]:
    """The names ``code`` (and the code nested in it) may read as globals."""
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.extend(_global_names(const))
    return list(dict.fromkeys(names))
