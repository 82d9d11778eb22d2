"""Quota and compliance decisions: pure functions of readings, schedules, policies and time.

Nothing in this package opens a file or socket or reads the clock: the current instant is always
an argument, schedules arrive as text, and every result is a frozen dataclass carrying reason
codes whose kk / ru / en wording lives in the gettext catalog read by :mod:`kuat.agent.i18n`.
"""
