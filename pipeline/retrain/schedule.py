"""`TWINSTREAM_RETRAIN_SCHEDULE`: `off`, an interval (`every 6h`) or a cron expression."""

import re
from datetime import timedelta

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

_INTERVAL = re.compile(r"every\s+(\d+)\s*(s|m|h|d)", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_schedule(text: str) -> BaseTrigger | None:
    """None for `off`; ValueError, naming the accepted forms, for anything unreadable."""
    text = text.strip()
    if text.lower() == "off":
        return None
    interval = _INTERVAL.fullmatch(text)
    if interval:
        amount = int(interval.group(1))
        if amount < 1:
            raise ValueError("a retraining interval must be at least 1")
        return IntervalTrigger(
            seconds=timedelta(**{_UNITS[interval.group(2).lower()]: amount}).total_seconds()
        )
    try:
        return CronTrigger.from_crontab(text, timezone="UTC")
    except ValueError as error:
        raise ValueError(
            f"retrain schedule {text!r} is neither `off`, `every <n>s|m|h|d` nor a "
            f"5-field cron expression: {error}"
        ) from error
