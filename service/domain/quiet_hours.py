"""Quiet hours in a partner's own time zone, and when a bid can first reach them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones


def is_valid_timezone(name: str) -> bool:
    if not name or name != name.strip():
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return name in _known_zones()


_ZONES: frozenset[str] | None = None


def _known_zones() -> frozenset[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones()) | {"UTC"}
    return _ZONES


def parse_clock(value: str) -> time:
    """Parse "HH:MM" (24-hour) or raise ValueError."""
    if len(value) != 5 or value[2] != ":":
        raise ValueError("use HH:MM, 24-hour")
    hours, minutes = value[:2], value[3:]
    if not (hours.isdigit() and minutes.isdigit()):
        raise ValueError("use HH:MM, 24-hour")
    h, m = int(hours), int(minutes)
    if not (0 <= h <= 23 and 0 <= m <= 59):
        raise ValueError("use HH:MM, 24-hour")
    return time(h, m)


@dataclass(frozen=True)
class QuietHours:
    """A daily window in local time; it may cross midnight (22:00 -> 07:00)."""

    start: time
    end: time
    timezone: str

    @classmethod
    def of(cls, start: str | None, end: str | None, timezone: str) -> QuietHours | None:
        if not start or not end:
            return None
        return cls(parse_clock(start), parse_clock(end), timezone)

    def _contains_local(self, local: time) -> bool:
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(ZoneInfo(self.timezone))
        return self._contains_local(local.time().replace(second=0, microsecond=0))

    def reachable_from(self, moment: datetime) -> datetime:
        """The first instant at or after `moment` that is outside quiet hours (UTC)."""
        zone = ZoneInfo(self.timezone)
        local = moment.astimezone(zone)
        if not self._contains_local(local.time()):
            return moment.astimezone(UTC)
        end_day = local.date()
        if self.start > self.end and local.time() >= self.start:
            end_day = end_day + timedelta(days=1)
        naive_end = datetime.combine(end_day, self.end)
        end_local = naive_end.replace(tzinfo=zone)
        # A wall-clock end that falls into a DST gap is pushed forward by the gap.
        return end_local.astimezone(UTC)
