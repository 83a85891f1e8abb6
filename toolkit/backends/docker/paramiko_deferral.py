"""The docker SDK imports paramiko (0.2 s here) at import time; this defers it to its first use.

:mod:`toolkit.backends.docker.client` calls :func:`_defer_paramiko` before it imports the SDK.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any


class _Deferred(types.ModuleType):
    """Stands in for a module in ``sys.modules`` and imports it when an attribute is read."""

    def __getattr__(self, attr: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        real = importlib.import_module(self.__name__)
        self.__dict__.update(vars(real))
        return getattr(real, attr)


def _defer_paramiko() -> None:
    """The docker SDK imports paramiko (0.2 s here) at import time, used only for ssh://
    without an ssh command; ctk's CLI pays that on every call unless it waits for a use."""
    if "paramiko" not in sys.modules and importlib.util.find_spec("paramiko") is not None:
        sys.modules["paramiko"] = _Deferred("paramiko")
