"""One registry shape for the families' output formats (serving/tool_parsers/, serving/reasoning_parsers/):
each module of a parser package registers its class; a parser is chosen by name (a deployment option, as
vLLM's) or, when none is named, by the chat template (`matches_template`, highest `detection_priority` first).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class FormatRegistry(Generic[T]):
    def __init__(self, package: str, path: list[str], option: str) -> None:
        self.package, self.path, self.option = package, path, option
        self._classes: dict[str, type[T]] = {}
        self._loaded = False

    def register(self, cls: type[T]) -> type[T]:
        self._classes[getattr(cls, "name")] = cls
        return cls

    def classes(self) -> dict[str, type[T]]:
        """Every parser of the package (its modules imported on first use: a new family is one new file)."""
        if not self._loaded:
            for module in pkgutil.iter_modules(self.path):
                if module.name != "base":
                    importlib.import_module(f"{self.package}.{module.name}")
            self._loaded = True
        return dict(self._classes)

    def names(self) -> list[str]:
        return sorted(self.classes())

    def choose(self, name: str | None, chat_template: str | None) -> T | None:
        classes = self.classes()
        if name:
            if name not in classes:
                raise ValueError(f"Unknown {self.option.removeprefix('--nemo-')} {name!r}; choose one of "
                                 f"{', '.join(sorted(classes))} ({self.option}), or leave it unset to pick it from "
                                 "the chat template.")
            return classes[name]()
        if not chat_template:
            return None
        ordered: list[Any] = sorted(classes.values(), key=lambda cls: -getattr(cls, "detection_priority", 0))
        return next((cls() for cls in ordered if cls.matches_template(chat_template)), None)
