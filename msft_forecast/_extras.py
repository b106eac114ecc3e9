"""Optional libraries, and the error that names the extra installing them.

``pip install msft-forecast`` installs the engine and the command line. Each front end's library
comes with an extra: ``[sktime]`` (sktime and skpro), ``[darts]`` (Darts), ``[all]`` both.
Importing a front end without its library raises :class:`ModuleNotFoundError` (an
``ImportError``) whose message says which extra to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

#: The extra that installs each optional library of a front end.
EXTRA_OF = {"sktime": "sktime", "skpro": "sktime", "darts": "darts"}


def missing(library: str, what: str) -> ModuleNotFoundError:
    """The error for ``what`` (a module or a feature) needing ``library``, not installed.

    Examples
    --------
    >>> err = missing("darts", "msft_forecast.darts")
    >>> err.name, 'pip install "msft-forecast[darts]"' in str(err)
    ('darts', True)
    """
    return ModuleNotFoundError(
        f"{what} needs {library}, which is not installed: "
        f'pip install "msft-forecast[{EXTRA_OF[library]}]" '
        f'(or "msft-forecast[all]" for both front ends)',
        name=library,
    )


@contextmanager
def requiring(library: str, what: str) -> Iterator[None]:
    """Turn the block's "No module named ``library``" into :func:`missing`.

    Only the library itself being absent is translated: any other missing module (one of its
    own dependencies, or a part of it that an installed version lacks) propagates unchanged.
    """
    try:
        yield
    except ModuleNotFoundError as err:
        if err.name != library:
            raise
        raise missing(library, what) from err


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` (of an optional library), or raise :func:`missing` naming its extra."""
    with requiring(module.partition(".")[0], what):
        return importlib.import_module(module)
