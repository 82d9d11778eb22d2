"""Legacy home of reason texts; the texts now live in the gettext catalog (kuat.agent.i18n).

``kuat.quota`` stays pure: a decision yields a :class:`~kuat.quota.reasons.Reason` (a code and
plain parameters) and the agent renders it in the operator's language. A reason code's text is
the catalog entry whose id is the code's value (``quota_ok``), in
``agent/locale/<lang>/LC_MESSAGES/kuat.po``.

``CATALOG`` is kept, empty, so that texts added here the old way (a code mapped to kk/ru/en
strings) keep rendering while branches merge; ``python -m kuat.agent.i18n_tool import-legacy``
moves them into the .po files, and a test fails until this dict is empty again.
"""

from __future__ import annotations

from kuat.quota.reasons import Code

CATALOG: dict[Code, dict[str, str]] = {}
