"""The integration protocol: what every integration offers the application.

An integration connects the engine to one external system. It declares the environment variables
it needs, and contributes side effects (how it reacts to records), APIs (status queries,
webhooks) and middlewares. Business logic never lives here: it decides *when* by creating
records; the integration decides *how*.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from reactive import API, Controller, RecordMutationSideEffect


@attrs.frozen
class EnvVar:
    """An environment variable an integration needs: what it is for and where to get it."""

    name: str
    purpose: str
    obtain_from: str = ""
    required: bool = True
    secret: bool = True


class MissingEnvironmentError(RuntimeError):
    """Raised by ``configure()`` when required environment variables are missing; the message
    lists every one of them (across all integrations), with its purpose and origin."""

    def __init__(self, missing: list[tuple[str, EnvVar]]):
        lines = [
            f"  {var.name} ({integration}): {var.purpose}"
            + (f" — obtain from {var.obtain_from}" if var.obtain_from else "")
            for integration, var in missing
        ]
        super().__init__(
            f"{len(missing)} required environment variable(s) missing:\n" + "\n".join(lines)
        )
        self.missing = missing


class Integration:
    """Base class with no-op defaults. Override what the integration needs.

    Life cycle: ``await configure()`` (reads settings; refuses to start without them), build the
    controller with ``create_side_effects()``, ``await controller.setup()``, then
    ``await setup(controller)``; the server mounts ``create_apis()`` and
    ``create_middlewares()``.
    """

    name: str = "integration"
    env_vars: tuple[EnvVar, ...] = ()

    def __init__(self, environ: Mapping[str, str] | None = None):
        self.environ: Mapping[str, str] = os.environ if environ is None else environ

    def missing_environment(self) -> list[EnvVar]:
        """Required variables absent (or empty) in this integration's environment."""
        return [v for v in self.env_vars if v.required and not self.environ.get(v.name)]

    def env(self, name: str, default: str | None = None) -> str | None:
        """A declared environment variable's value."""
        if name not in {v.name for v in self.env_vars}:
            raise KeyError(f"{self.name} does not declare environment variable {name!r}")
        return self.environ.get(name) or default

    async def configure(self) -> None:
        """Check settings. The default refuses to start when required variables are missing."""
        missing = self.missing_environment()
        if missing:
            raise MissingEnvironmentError([(self.name, v) for v in missing])

    async def setup(self, controller: Controller) -> None:
        """Called once the controller is set up (start background work here)."""

    async def close(self) -> None:
        """Stop background work."""

    def create_side_effects(self) -> list[RecordMutationSideEffect]:
        return []

    def create_apis(self) -> dict[str, API]:
        return {}

    def create_middlewares(self) -> list[Any]:
        return []


class AggregatedIntegration(Integration):
    """Many integrations behind one interface (in the given order)."""

    name = "aggregated"

    def __init__(self, integrations: Iterable[Integration]):
        super().__init__()
        self.integrations = list(integrations)
        names = [i.name for i in self.integrations]
        if len(set(names)) != len(names):
            raise ValueError(f"integration names must be unique: {names}")

    def missing_environment(self) -> list[EnvVar]:
        return [v for i in self.integrations for v in i.missing_environment()]

    async def configure(self) -> None:
        missing = [(i.name, v) for i in self.integrations for v in i.missing_environment()]
        if missing:
            raise MissingEnvironmentError(missing)
        for integration in self.integrations:
            await integration.configure()

    async def setup(self, controller: Controller) -> None:
        for integration in self.integrations:
            await integration.setup(controller)

    async def close(self) -> None:
        for integration in reversed(self.integrations):
            await integration.close()

    def create_side_effects(self) -> list[RecordMutationSideEffect]:
        return [e for i in self.integrations for e in i.create_side_effects()]

    def create_apis(self) -> dict[str, API]:
        apis: dict[str, API] = {}
        for integration in self.integrations:
            for name, api in integration.create_apis().items():
                if name in apis:
                    raise ValueError(f"API {name!r} is declared by two integrations")
                apis[name] = api
        return apis

    def create_middlewares(self) -> list[Any]:
        return [m for i in self.integrations for m in i.create_middlewares()]
