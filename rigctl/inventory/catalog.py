"""Re-export of the P2P source catalog, which lives in rigctl/core/catalog.py so the
modules shipped to hosts can use it too."""

from rigctl.core.catalog import (  # noqa: F401
    ADA,
    AIKITORIA_URL,
    AMPERE,
    BLACKWELL,
    P2P_CATALOG,
    TINYGRAD_URL,
    P2PSource,
    entries_for_version,
    lookup,
)
