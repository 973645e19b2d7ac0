"""An engine saved to disk and loaded back, by this version or an older one.

Paper accounts are kept between runs as a pickle of the `Engine` (see `Engine.__getstate__`
for what is left out). Pickle names every class by the module it lived in when the file was
written, so a snapshot from before the engine left the simulator names
`bot.sandbox.bitmex.engine.Engine`, `...Account`, `...Order` and so on; `load_engine` finds
those classes where they live now, so an upgrade keeps every paper account.
"""

from __future__ import annotations

import pickle
from typing import IO, Any

from bot.matching.engine import Engine

# Where the engine's classes used to live -> the module that exports them today (every
# class of the old module is re-exported by the package). Only ever added to.
MOVED_MODULES = {
    "bot.sandbox.bitmex.engine": "bot.matching",
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(MOVED_MODULES.get(module, module), name)


def load_engine(file: IO[bytes]) -> Engine:
    """Unpickle a saved engine. Unpickling runs code: only load a file we wrote ourselves."""
    engine = _Unpickler(file).load()
    if not isinstance(engine, Engine):
        raise TypeError(f"not a saved engine: {type(engine).__name__}")
    return engine
