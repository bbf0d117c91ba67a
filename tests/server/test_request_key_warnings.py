"""The contract's str request keys do not make aiohttp warn about this package's own writes;
an application's own str keys still get aiohttp's advice."""

from __future__ import annotations

import uuid
import warnings
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from reactive import server


def _set_key_from(module_name: str, key: str) -> None:
    """Set ``request[key]`` from code whose module is ``module_name`` (as warnings see it)."""
    namespace: dict[str, Any] = {"__name__": module_name}
    source = "def put(request, key):\n    request[key] = 1\n"
    exec(compile(source, f"<{module_name}>", "exec"), namespace)
    namespace["put"](make_mocked_request("POST", "/x"), key)


def test_only_keys_set_by_the_application_are_warned_about() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        server.silence_own_request_key_warnings()
        # aiohttp warns once per key per process: fresh names keep the test repeatable.
        fresh = uuid.uuid4().hex
        _set_key_from("integrations.auth.integration", f"package key one {fresh}")
        _set_key_from("reactive.server", f"package key two {fresh}")
        _set_key_from("myapp.handlers", f"application key {fresh}")

    key_warnings = [w for w in caught if issubclass(w.category, web.NotAppKeyWarning)]
    assert [w.filename for w in key_warnings] == ["<myapp.handlers>"]
