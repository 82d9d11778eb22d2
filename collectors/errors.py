"""kuat's root error type.

Every error kuat raises on purpose (a refused config, schedule or order, a device that answered
garbage, a profile file that does not parse) derives from :class:`KuatError`, so a caller that
embeds kuat can tell kuat's own refusals from a bug with one ``except``. Each keeps its old base
too (``ValueError`` for refused input), so existing ``except ValueError`` code still holds.

It lives in ``collectors`` because that is the package every other one may import: ``quota`` and
``uplink`` read ``collectors``, and nothing imports ``agent``.
"""

from __future__ import annotations


class KuatError(Exception):
    """Base of every error kuat raises on purpose."""
