"""Wrapping methods on classes (SDKs, the OpenTelemetry SDK), remembered so that ``uninstrument()``
can put them back.

Patches go on the class, not on client instances, so clients created before ``instrument()``
are covered too.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

import wrapt


class ClassPatches:
    """A set of wrapt wrappers on class methods; :meth:`undo` restores the originals."""

    def __init__(self) -> None:
        self._originals: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, wrapper: Callable[..., Any]) -> None:
        self._originals.append((owner, name, vars(owner)[name]))
        wrapt.wrap_function_wrapper(owner, name, wrapper)

    def patched(self, owner: Any, name: str) -> bool:
        """True if ``owner.name`` is wrapped by this set."""
        return any(patched is owner and attribute == name for patched, attribute, _ in self._originals)

    def owns(self, function: Any) -> bool:
        """True if ``function`` is one of this set's wrappers (a module that imported it by name)."""
        return any(vars(owner).get(name) is function for owner, name, _ in self._originals)

    def undo(self) -> None:
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)
        self._originals.clear()

    def __bool__(self) -> bool:
        return bool(self._originals)


class PatchSetOnce:
    """A framework provider's ``patches()``: one patch set for the process, made the first time the
    framework is found installed (its import hooks are process-wide), None while it is not.

    ``distribution``, when the import name is a common one (``agents``): the installed package must
    also be that distribution."""

    def __init__(self, module: str, make: Callable[[], Any], *, distribution: str | None = None) -> None:
        self._module = module
        self._make = make
        self._distribution = distribution
        self.made: Any = None

    def __call__(self) -> Any:
        if self.made is not None:
            return self.made
        if importlib.util.find_spec(self._module) is None:
            return None
        if self._distribution is not None:
            try:
                importlib.metadata.version(self._distribution)
            except importlib.metadata.PackageNotFoundError:
                return None
        self.made = self._make()
        return self.made


class ImportHooks:
    """Calls ``on_import(name, module)`` for each of ``modules`` when the application imports it, at
    once if it already has: nothing is imported from a framework before the application imports it.

    wrapt's post-import hooks cannot be removed, so they are registered once per process; a later
    :meth:`run` (instrumenting again after ``uninstrument()``) calls back for the modules already
    imported. The name is the one registered (while a package imports, ``module.__name__`` may not
    be it yet).
    """

    def __init__(self, modules: Iterable[str], on_import: Callable[[str, ModuleType], None]) -> None:
        self._modules = tuple(modules)
        self._on_import = on_import
        self._registered = False

    def run(self) -> None:
        if not self._registered:
            self._registered = True
            for name in self._modules:  # runs now if already imported
                wrapt.register_post_import_hook(functools.partial(self._on_import, name), name)
            return
        for name in self._modules:
            module = sys.modules.get(name)
            if module is not None:
                self._on_import(name, module)


class HookedPatchSet:
    """A framework's patch set: :class:`ClassPatches` applied by :meth:`_on_import` as each of
    ``modules`` is imported (at once if it already is), while installed; :meth:`remove` undoes them.

    Subclasses define ``_on_import(name, module)`` (which checks :attr:`installed`: the import hooks
    outlive an ``uninstrument()``), and extend :meth:`remove` for state of their own."""

    def __init__(self, modules: Iterable[str]) -> None:
        self._patches = ClassPatches()
        self._installed = False
        self._hooks = ImportHooks(modules, self._on_import)

    def _on_import(self, name: str, module: ModuleType) -> None:
        raise NotImplementedError

    def install(self) -> None:
        if self._installed:
            return
        self._installed = True
        self._hooks.run()

    def remove(self) -> None:
        self._installed = False
        self._patches.undo()

    @property
    def installed(self) -> bool:
        return self._installed
