"""Built-in interceptors, one self-contained module each; importing this package registers them.

Modules are found with `pkgutil`, so adding an interceptor is adding a file here:
no list to keep. Modules whose name starts with `_` are helpers, not imported here.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
