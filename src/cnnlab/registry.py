"""Name -> factory registries: datasets, models, losses, augmentations, optimizers.

Following torchvision's ``_api.py``: registering a name twice is an error, lookups of an
unknown name list what exists, and ``names(pattern)`` is what ``cnnlab models`` prints.
"""

from __future__ import annotations

import fnmatch
from typing import Callable, Generic, TypeVar

from cnnlab.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of entries of one kind (e.g. model builders)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._descriptions: dict[str, str] = {}

    def register(self, name: str, description: str = "") -> Callable[[T], T]:
        """Decorator adding ``obj`` under ``name``; a second entry with that name raises."""

        def add(obj: T) -> T:
            self.add(name, obj, description)
            return obj

        return add

    def add(self, name: str, obj: T, description: str = "") -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj
        doc = description or (getattr(obj, "__doc__", None) or "").strip().splitlines()[0:1]
        self._descriptions[name] = doc if isinstance(doc, str) else (doc[0] if doc else "")

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"Unknown {self.kind} {name!r}. Available: {', '.join(self.names()) or 'none'}."
            ) from None

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def describe(self, pattern: str = "*") -> list[tuple[str, str]]:
        return [(n, self._descriptions[n]) for n in self.names(pattern)]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
