"""Cron schedules of pipelines: which minutes a 5-field cron expression fires at (UTC).

Fields: minute hour day-of-month month day-of-week (0 or 7 = Sunday), each ``*``, a number,
a range ``a-b``, a list ``a,b`` and steps ``*/n`` or ``a-b/n``. As in cron, when both
day-of-month and day-of-week are restricted, a day matching either fires.
Pure apart from converting times to UTC calendar fields (``time.gmtime``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_NAMES = ("minute", "hour", "day of month", "month", "day of week")


class CronError(ValueError):
    """A cron expression that cannot be read; the message names the field."""


@dataclass(frozen=True, slots=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    is_day_restricted: bool
    is_weekday_restricted: bool

    def matches(self, at_s: float) -> bool:
        """Whether the minute containing ``at_s`` (UTC) fires."""
        t = time.gmtime(at_s)
        weekday = (t.tm_wday + 1) % 7  # cron: 0 = Sunday; gmtime: 0 = Monday
        day_ok = t.tm_mday in self.days
        weekday_ok = weekday in self.weekdays
        if self.is_day_restricted and self.is_weekday_restricted:
            is_day = day_ok or weekday_ok
        else:
            is_day = day_ok and weekday_ok
        return (
            t.tm_min in self.minutes
            and t.tm_hour in self.hours
            and t.tm_mon in self.months
            and is_day
        )

    def last_fire(self, after_s: float, until_s: float) -> float | None:
        """The latest minute start in (``after_s``, ``until_s``] that fires, or None. Looks
        back at most one day."""
        minute = int(until_s // 60) * 60
        floor = max(after_s, until_s - 86400)
        while minute > floor:
            if self.matches(minute):
                return float(minute)
            minute -= 60
        return None


def _field(text: str, index: int) -> frozenset[int]:
    low, high = _RANGES[index]
    out: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if body == "*":
                start, end = low, high
            elif "-" in body:
                a, b = body.split("-", 1)
                start, end = int(a), int(b)
            else:
                start = end = int(body)
        except ValueError:
            raise CronError(f"cron {_NAMES[index]} field {text!r}: not a number") from None
        if step < 1 or start < low or end > high or start > end:
            raise CronError(
                f"cron {_NAMES[index]} field {text!r}: must lie in {low}-{high} with a step >= 1"
            )
        out.update(range(start, end + 1, step))
    if index == 4 and 7 in out:
        out = (out - {7}) | {0}
    return frozenset(out)


def parse_cron(expression: str) -> Cron:
    """The schedule of a 5-field cron expression; raises CronError naming the bad field."""
    fields = expression.split()
    if len(fields) != 5:
        raise CronError(
            f"cron {expression!r}: needs 5 fields (minute hour day-of-month month "
            "day-of-week), e.g. '0 3 * * *' for 03:00 UTC daily"
        )
    minutes, hours, days, months, weekdays = (_field(f, i) for i, f in enumerate(fields))
    return Cron(minutes, hours, days, months, weekdays, fields[2] != "*", fields[4] != "*")
