"""Dosimeter drivers, one module per protocol, found by name.

Each module exposes ``DRIVER``, a :class:`drivers.base.Driver` subclass.  The serial source creates
one per configured port with :func:`create`; the configuration check validates driver options with
:func:`validate_options`.
"""
from __future__ import annotations

import importlib
from typing import Any, Mapping

from .base import CANONICAL_UNIT, Driver, Item, LineSettings, Problem, Reading

REGISTRY: dict[str, str] = {
    "diamentor": "drivers.diamentor",
    "automess": "drivers.automess",
    "gmc": "drivers.gmc",
    "mightyohm": "drivers.mightyohm",
    "radpro": "drivers.radpro",
    "generic": "drivers.generic",
}

__all__ = ["CANONICAL_UNIT", "Driver", "Item", "LineSettings", "Problem", "Reading", "REGISTRY", "get", "create",
           "names", "primary_quantity", "validate_options"]


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str) -> type[Driver]:
    """The driver class registered as ``name`` (``KeyError`` lists the known names)."""
    if name not in REGISTRY:
        raise KeyError(f"unknown driver {name!r}; known: {', '.join(REGISTRY)}")
    return importlib.import_module(REGISTRY[name]).DRIVER


def create(name: str, device: str, options: Mapping[str, Any] | None = None,
           poll_interval_s: float | None = None) -> Driver:
    """A fresh driver instance for one device (options validated; a generic profile is loaded)."""
    cls = get(name)
    if poll_interval_s is None:
        return cls(device, options)
    return cls(device, options, poll_interval_s=poll_interval_s)


def primary_quantity(name: str, options: Mapping[str, Any]) -> str:
    """The quantity a device mostly reports (a generic profile's first quantity), to pick its default role."""
    if name == "generic":
        from .generic import load_profile

        return load_profile(options["profile"]).quantity[0].quantity
    return get(name).primary


def validate_options(name: str, options: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` (or pydantic's ``ValidationError``) if ``options`` do not suit driver ``name``."""
    cls = get(name)
    parsed = cls.Options.model_validate(dict(options))
    profile = getattr(parsed, "profile", None)
    if profile is not None:
        from .generic import load_profile

        try:
            load_profile(profile)
        except OSError as exc:
            raise ValueError(f"profile {profile}: {exc.strerror or exc}") from exc
