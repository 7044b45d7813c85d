"""Quiet hours in a partner's own time zone, and when a bid can first reach them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

# Names that load on some hosts but are no place's zone: `localtime` and `posixrules` are files
# of the host's zoneinfo directory (the host's own zone, whatever that is; absent elsewhere),
# and `Factory` is the IANA database's placeholder for "no zone set" (offset 0, "-00").
NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


# The IANA database's areas of places: a zone a person lives in is `Area/Location` (perhaps
# `Area/Region/Location`). Its other names are no place: abbreviations and POSIX rules (`EST`
# is UTC-5 all year, not New York's clock), offsets (`Etc/GMT+5` is UTC-5), aliases of UTC
# (`GMT`, `Etc/UTC`), and legacy names of a country or a state (`US/Eastern`, `Japan`).
PLACE_AREAS = frozenset(
    {
        "Africa",
        "America",
        "Antarctica",
        "Arctic",
        "Asia",
        "Atlantic",
        "Australia",
        "Europe",
        "Indian",
        "Pacific",
    }
)


TIMEZONE_MESSAGE = "Not a known IANA time zone, for example Europe/Berlin."


def is_valid_timezone(name: str) -> bool:
    """An IANA place name the service knows (`Area/Location`), or `UTC`: what an account may
    choose. Names stored before this rule (`PST8PDT`) still load (`is_known_zone`)."""
    return is_known_zone(name) and (name == "UTC" or name.split("/")[0] in PLACE_AREAS)


def is_known_zone(name: str) -> bool:
    """Any zone name of the IANA database that the service can load, place or not. The name is
    looked up in the known list before any file is opened: a directory ("Europe") or an
    overlong name never reaches ZoneInfo."""
    if not name or name != name.strip() or name not in _known_zones():
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


_ZONES: frozenset[str] | None = None


def _known_zones() -> frozenset[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = (frozenset(available_timezones()) | {"UTC"}) - NOT_ZONES
    return _ZONES


DAY = timedelta(days=1)
CLOCK_FORMAT = "use HH:MM, 24-hour, with ASCII digits (00:00 to 23:59)"


def parse_clock(value: str) -> time:
    """Parse "HH:MM" (24-hour, ASCII digits only) or raise ValueError."""
    if len(value) != 5 or value[2] != ":" or not value.isascii():
        raise ValueError(CLOCK_FORMAT)
    hours, minutes = value[:2], value[3:]
    if not (hours.isdigit() and minutes.isdigit()):
        raise ValueError(CLOCK_FORMAT)
    h, m = int(hours), int(minutes)
    if not (0 <= h <= 23 and 0 <= m <= 59):
        raise ValueError(CLOCK_FORMAT)
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
        return _quiet_hours(start, end, timezone)

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
        """The first instant at or after `moment` that is outside quiet hours (UTC).

        Walks from turn to turn: the next time the local clock shows `end`, or jumps (a clock
        change can skip the end, skip a whole open window, or bring the clock back into it).
        """
        zone = ZoneInfo(self.timezone)
        at = moment.astimezone(UTC)
        for _ in range(8):
            local = at.astimezone(zone)
            if not self._contains_local(local.time()):
                return at
            at = self._next_turn(zone, at, local, self.end)
        return at

    def quiet_within(self, earlier: datetime, later: datetime) -> timedelta:
        """How much of the time from `earlier` to `later` falls in these quiet hours.

        Walks from turn to turn as `reachable_from` does: inside, to the next time the local
        clock shows `end`; outside, to the next `start`; and to each clock change between, so
        a night the clocks go back is an hour longer and one they go forward an hour shorter.
        """
        if self.start == self.end or later <= earlier:
            return timedelta(0)
        zone = ZoneInfo(self.timezone)
        at, until = earlier.astimezone(UTC), later.astimezone(UTC)
        quiet = timedelta(0)
        while at < until:
            local = at.astimezone(zone)
            inside = self._contains_local(local.time())
            turn = self._next_turn(zone, at, local, self.end if inside else self.start)
            if inside:
                quiet += min(turn, until) - at
            at = turn
        return quiet

    def _next_turn(self, zone: ZoneInfo, at: datetime, local: datetime, boundary: time) -> datetime:
        """The next instant after `at` (`local` on the zone's clock) when the clock shows
        `boundary`, or the clock change before it, if one comes first."""
        offset = local.utcoffset()
        day = local.date()
        if offset is not None:
            # The usual day: the clock keeps its offset until it next shows `boundary`.
            guess = datetime.combine(day, boundary, UTC) - offset
            if boundary <= local.time():
                guess += DAY
            if guess.astimezone(zone).utcoffset() == offset:
                return guess
        ends = []
        for shift in (-1, 0, 1, 2):
            wall = datetime.combine(day + timedelta(days=shift), boundary)
            for fold in (0, 1):
                instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
                if instant > at and instant.astimezone(zone).replace(tzinfo=None) == wall:
                    ends.append(instant)
        turn = min(ends)
        if offset != turn.astimezone(zone).utcoffset():
            turn = _clock_change(zone, at, turn)
        return turn


@lru_cache(maxsize=4096)
def _quiet_hours(start: str, end: str, timezone: str) -> QuietHours:
    """Quiet hours as an account keeps them, parsed once: a bid and its answer read them."""
    return QuietHours(parse_clock(start), parse_clock(end), timezone)


def quiet_between(quiet: QuietHours | None, earlier: datetime, later: datetime) -> timedelta:
    """The part of the time from `earlier` to `later` that fell in `quiet` hours, kept in their
    own time zone (nothing without quiet hours, or when `later` is not after `earlier`)."""
    if quiet is None:
        return timedelta(0)
    return quiet.quiet_within(earlier, later)


def _clock_change(zone: ZoneInfo, earlier: datetime, later: datetime) -> datetime:
    """The first instant after `earlier` (up to `later`) with another UTC offset."""
    offset = earlier.astimezone(zone).utcoffset()
    while later - earlier > timedelta(microseconds=1):
        middle = earlier + (later - earlier) / 2
        if middle.astimezone(zone).utcoffset() == offset:
            earlier = middle
        else:
            later = middle
    return later
