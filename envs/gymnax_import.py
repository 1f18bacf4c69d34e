"""gymnax and its spaces, imported without the plotting libraries it does not need to step environments.

gymnax imports every environment module when it is imported, and two of them (Pong and Catch) import seaborn and
matplotlib.pyplot at module level for their `render` methods. That is 2-3 s of every `import jaxrl.envs`, every
CLI start and every subprocess, for libraries nothing here uses. While gymnax is first imported, those two names
are stand-ins that import the real library on first use, so a user's call to those `render` methods still works;
the stand-ins are removed from `sys.modules` right after, so anyone else importing seaborn gets the real module.
Every module of jaxrl.envs takes gymnax and its spaces from here.
"""

from __future__ import annotations

import importlib
import sys
import types

_DEFERRED = ("seaborn", "matplotlib.pyplot")


class _ImportOnUse(types.ModuleType):
    """A module name that imports the real module at its first attribute read and forwards every read to it."""

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self.__name__), attr)


def _import_gymnax() -> types.ModuleType:
    if "gymnax" in sys.modules:
        return sys.modules["gymnax"]
    stand_ins = {name: _ImportOnUse(name) for name in _DEFERRED if name not in sys.modules}
    sys.modules.update(stand_ins)
    try:
        return importlib.import_module("gymnax")
    finally:
        for name, module in stand_ins.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


gymnax = _import_gymnax()
from gymnax.environments import spaces  # noqa: E402  (after the import above, which sets the stand-ins)

Box, Discrete = spaces.Box, spaces.Discrete
__all__ = ["Box", "Discrete", "gymnax", "spaces"]
