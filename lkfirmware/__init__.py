"""lkfirmware: exactly the right Linux firmware for LinuxKit images.

The data flow, one module per step::

    query -> catalog -> plan -> fetch (cache) -> stage -> config
    resolver.py  catalog.py  plan.py  fetcher.py, cache.py  stage.py  config.py

(No module is named after a public function, so that importing a module never hides
the function of the same name here.)

The public API is re-exported here and imported lazily, so ``import lkfirmware`` and
the command line stay fast.

>>> import lkfirmware
>>> [f.path for f in lkfirmware.resolve("brcmfmac43602").files]
['brcm/brcmfmac43602-pcie.bin']
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up

__version__ = "0.1.0"

_EXPORTS = {
    "resolve": "lkfirmware.resolver",
    "load_catalog": "lkfirmware.catalog",
    "Catalog": "lkfirmware.catalog",
    "Plan": "lkfirmware.plan",
    "FirmwareFile": "lkfirmware.plan",
    "FirmwareLink": "lkfirmware.plan",
    "fetch": "lkfirmware.api",
    "add_to_config": "lkfirmware.api",
    "write_firmware_yml": "lkfirmware.api",
    "Fetched": "lkfirmware.api",
    "ConfigUpdate": "lkfirmware.api",
    "FetchResult": "lkfirmware.fetcher",
    "CachedBlob": "lkfirmware.fetcher",
    "FilesEntry": "lkfirmware.config",
    "scan_modules": "lkfirmware.modules",
    "LkFirmwareError": "lkfirmware.errors",
    "QueryError": "lkfirmware.errors",
    "FetchError": "lkfirmware.errors",
    "ConfigError": "lkfirmware.errors",
    "IntegrityError": "lkfirmware.errors",
}

__all__ = [
    "CachedBlob",
    "Catalog",
    "ConfigError",
    "ConfigUpdate",
    "FetchError",
    "FetchResult",
    "Fetched",
    "FilesEntry",
    "FirmwareFile",
    "FirmwareLink",
    "IntegrityError",
    "LkFirmwareError",
    "Plan",
    "QueryError",
    "add_to_config",
    "fetch",
    "load_catalog",
    "resolve",
    "scan_modules",
    "write_firmware_yml",
]

if TYPE_CHECKING:
    from lkfirmware.catalog import Catalog, load_catalog
    from lkfirmware.errors import (
        ConfigError,
        FetchError,
        IntegrityError,
        LkFirmwareError,
        QueryError,
    )
    from lkfirmware.plan import FirmwareFile, FirmwareLink, Plan
    from lkfirmware.resolver import resolve


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lkfirmware' has no attribute {name!r}")
    return getattr(__import__(module, fromlist=[name]), name)
