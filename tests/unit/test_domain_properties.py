"""Properties of the domain rules, checked with Hypothesis over many generated cases."""

from __future__ import annotations

import math
import string
from datetime import UTC, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from service.domain import bids, invites
from service.domain.bids import ResponseFact
from service.domain.quiet_hours import QuietHours, parse_clock, quiet_between

PROPERTIES = settings(max_examples=300, derandomize=True, deadline=None)
DAY = timedelta(hours=24)

clock_times = st.builds(time, st.integers(0, 23), st.integers(0, 59))
moments = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2060, 12, 31), timezones=st.just(UTC)
)


@st.composite
def quiet_hours(draw: st.DrawFn, zones: st.SearchStrategy[str] | None = None) -> QuietHours:
    start, end = draw(clock_times), draw(clock_times)
    assume(start != end)  # the API refuses equal ends (QuietHoursSchema)
    zone = draw(st.timezone_keys(allow_prefix=False) if zones is None else zones)
    return QuietHours(start, end, zone)


# Zones whose clocks jump: Europe and the US spring forward at 02:00/01:00 local, Lord Howe by
# 30 minutes, Chatham at 02:45, Santiago at midnight, and the southern hemisphere the other way.
DST_ZONES = (
    "Europe/Berlin",
    "Europe/London",
    "America/New_York",
    "America/Santiago",
    "America/Havana",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
)


@cache
def clock_changes(zone_name: str, year: int) -> tuple[datetime, ...]:
    """The instants (UTC, to the minute) when the zone's clocks changed during `year`."""
    zone = ZoneInfo(zone_name)
    found = []
    hour = datetime(year, 1, 1, tzinfo=UTC)
    while hour.year == year:
        following = hour + timedelta(hours=1)
        if hour.astimezone(zone).utcoffset() != following.astimezone(zone).utcoffset():
            low, high = hour, following
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                same = middle.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset()
                low, high = (middle, high) if same else (low, middle)
            found.append(high.replace(second=0, microsecond=0))
        hour = following
    return tuple(found)


@st.composite
def around_a_clock_change(draw: st.DrawFn) -> tuple[QuietHours, datetime]:
    """Quiet hours and a moment within a day of a clock change; the window's ends are often
    near the local times the clock jumps over or repeats."""
    zone_name = draw(st.sampled_from(DST_ZONES))
    year = draw(st.integers(2010, 2035))
    changes = clock_changes(zone_name, year)
    assume(changes)
    change = draw(st.sampled_from(changes))
    zone = ZoneInfo(zone_name)
    local_before = (change - timedelta(minutes=1)).astimezone(zone)
    local_after = change.astimezone(zone)

    def nearby() -> st.SearchStrategy[time]:
        anchor = draw(st.sampled_from([local_before, local_after]))
        shift = timedelta(minutes=draw(st.integers(-90, 90)))
        return st.just((anchor + shift).time().replace(second=0, microsecond=0))

    start = draw(st.one_of(clock_times, nearby()))
    end = draw(st.one_of(clock_times, nearby()))
    assume(start != end)
    moment = change + timedelta(seconds=draw(st.integers(-26 * 3600, 26 * 3600)))
    return QuietHours(start, end, zone_name), moment


def minutes_between(earlier: datetime, later: datetime) -> list[datetime]:
    """`earlier` and every whole UTC minute after it, before `later` (nothing when equal)."""
    if later <= earlier:
        return []
    first = earlier.replace(second=0, microsecond=0) + timedelta(minutes=1)
    count = max(0, math.ceil((later - first) / timedelta(minutes=1)))
    return [earlier, *(first + timedelta(minutes=n) for n in range(count))]


def check_reachable(quiet: QuietHours, moment: datetime) -> datetime:
    """`reachable_from` is the first instant at or after the moment outside quiet hours."""
    reachable = quiet.reachable_from(moment)
    assert reachable.tzinfo is not None and reachable.utcoffset() == timedelta(0)
    assert reachable >= moment, "never before the moment"
    assert not quiet.contains(reachable), "never inside quiet hours"
    # Quiet hours are whole local minutes, so checking every minute finds any open moment.
    opened = [m for m in minutes_between(moment, reachable) if not quiet.contains(m)]
    assert opened == [], f"quiet hours were over at {opened[0]} already" if opened else ""
    zone = ZoneInfo(quiet.timezone)
    if moment.astimezone(zone).utcoffset() == reachable.astimezone(zone).utcoffset():
        assert reachable - moment <= DAY, "quiet hours last less than a day"
    else:  # a clock change in between can skip a day's open minutes altogether
        assert reachable - moment <= 2 * DAY
    assert quiet.reachable_from(reachable) == reachable, "the end of quiet hours is stable"
    return reachable


@PROPERTIES
@given(quiet=quiet_hours(), moment=moments)
@example(
    quiet=QuietHours(time(22, 0), time(7, 0), "America/New_York"),
    moment=datetime(2026, 11, 27, 3, 30, tzinfo=UTC),
)
def test_a_bid_reaches_the_partner_when_their_quiet_hours_allow(
    quiet: QuietHours, moment: datetime
) -> None:
    check_reachable(quiet, moment)


@PROPERTIES
@given(case=around_a_clock_change())
# The night London's clocks go back (02:00 BST -> 01:00 GMT), quiet hours 23:00-01:30: a bid
# at 01:10 GMT (the second 01:10) must wait until 01:30 GMT, not "reach" at 01:30 BST, which
# was 40 minutes before it was sent.
@example(
    case=(
        QuietHours(time(23, 0), time(1, 30), "Europe/London"),
        datetime(2026, 10, 25, 1, 10, tzinfo=UTC),
    )
)
# Santiago skips 00:00-01:00 when its clocks go forward: with quiet hours 01:00-00:00 that
# day has no open minute, and 01:00 (right after the jump) is inside quiet hours again.
@example(
    case=(
        QuietHours(time(1, 0), time(0, 0), "America/Santiago"),
        datetime(2010, 10, 10, 3, 59, 59, tzinfo=UTC),
    )
)
def test_quiet_hours_hold_across_clock_changes(case: tuple[QuietHours, datetime]) -> None:
    quiet, moment = case
    check_reachable(quiet, moment)


@PROPERTIES
@given(quiet=quiet_hours(), moment=moments)
def test_reachable_at_ignores_quiet_hours_only_when_there_are_none(
    quiet: QuietHours, moment: datetime
) -> None:
    assert bids.reachable_at(moment, None) == moment
    assert bids.reachable_at(moment, quiet) == quiet.reachable_from(moment)


@PROPERTIES
@given(
    reachable=moments,
    delta=st.timedeltas(min_value=-10 * DAY, max_value=10 * DAY),
)
def test_response_seconds_are_never_negative(reachable: datetime, delta: timedelta) -> None:
    seconds = bids.response_seconds(reachable, reachable + delta)
    assert seconds >= 0
    if delta >= timedelta(0):
        assert seconds == int(delta.total_seconds())
    else:
        assert seconds == 0  # answered before quiet hours ended: no time counts


def quiet_minute_by_minute(quiet: QuietHours, earlier: datetime, later: datetime) -> timedelta:
    """The time from `earlier` to `later` inside quiet hours, a UTC minute at a time: the local
    clock's minute, and so whether it is quiet, holds through each (offsets are whole minutes)."""
    quiet_time = timedelta(0)
    for moment in minutes_between(earlier, later):
        ends = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        if quiet.contains(moment):
            quiet_time += min(ends, later) - moment
    return quiet_time


# A bid is answered within its day to live, from the end of quiet hours that may hold it longer.
spans = st.timedeltas(min_value=timedelta(0), max_value=DAY + timedelta(hours=12))


def check_quiet_between(quiet: QuietHours, earlier: datetime, span: timedelta) -> None:
    later = earlier + span
    asleep = quiet_between(quiet, earlier, later)
    assert asleep == quiet_minute_by_minute(quiet, earlier, later)
    assert quiet_between(None, earlier, later) == timedelta(0)
    assert quiet_between(quiet, later, earlier) == timedelta(0), "nothing backwards"
    awake = bids.awake_response_seconds(earlier, later, quiet)
    assert 0 <= awake <= bids.response_seconds(earlier, later)
    assert awake == max(0, int((span - asleep).total_seconds()))
    assert bids.awake_response_seconds(earlier, later, None) == bids.response_seconds(
        earlier, later
    )


@PROPERTIES
@given(quiet=quiet_hours(), earlier=moments, span=spans)
# A bid at 21:50 in Berlin answered at 07:05 with quiet hours 22:00-07:00: 15 minutes awake.
@example(
    quiet=QuietHours(time(22, 0), time(7, 0), "Europe/Berlin"),
    earlier=datetime(2031, 1, 10, 20, 50, tzinfo=UTC),
    span=timedelta(hours=9, minutes=15),
)
def test_the_quiet_time_between_two_moments_is_every_quiet_minute_between(
    quiet: QuietHours, earlier: datetime, span: timedelta
) -> None:
    check_quiet_between(quiet, earlier, span)


@PROPERTIES
@given(case=around_a_clock_change(), span=spans)
# The night Berlin's clocks go forward (02:00 -> 03:00), 22:00-07:00 is eight hours of sleep;
# the night they go back (03:00 -> 02:00) it is ten.
@example(
    case=(
        QuietHours(time(22, 0), time(7, 0), "Europe/Berlin"),
        datetime(2031, 3, 29, 21, 0, tzinfo=UTC),
    ),
    span=timedelta(hours=12),
)
@example(
    case=(
        QuietHours(time(22, 0), time(7, 0), "Europe/Berlin"),
        datetime(2031, 10, 25, 20, 0, tzinfo=UTC),
    ),
    span=timedelta(hours=12),
)
def test_the_quiet_time_between_two_moments_holds_across_clock_changes(
    case: tuple[QuietHours, datetime], span: timedelta
) -> None:
    quiet, moment = case
    check_quiet_between(quiet, moment, span)


def test_a_night_is_as_long_as_the_clocks_make_it() -> None:
    berlin = QuietHours(time(22, 0), time(7, 0), "Europe/Berlin")
    evening = datetime(2031, 3, 29, 20, 0, tzinfo=UTC)  # 21:00, before the clocks go forward
    assert quiet_between(berlin, evening, evening + DAY) == timedelta(hours=8)
    evening = datetime(2031, 10, 25, 19, 0, tzinfo=UTC)  # 21:00, before the clocks go back
    assert quiet_between(berlin, evening, evening + DAY) == timedelta(hours=10)


@PROPERTIES
@given(clock=clock_times)
def test_clock_strings_round_trip(clock: time) -> None:
    assert parse_clock(clock.strftime("%H:%M")) == clock


@PROPERTIES
@given(text=st.text(max_size=8))
def test_clock_strings_are_strict(text: str) -> None:
    try:
        parsed = parse_clock(text)
    except ValueError:
        return
    assert text == parsed.strftime("%H:%M")


# --- bid outcomes ----------------------------------------------------------------------

STATUSES = ("sent", "delivered", "seen", "answered", "expired")
OUTCOMES = {"pending", "toward", "later_pending", "later_kept", "later_broken", "missed"}
offsets = st.integers(min_value=0, max_value=14 * 24 * 3600)
BASE = datetime(2026, 1, 1, tzinfo=UTC)


@st.composite
def responses(draw: st.DrawFn) -> list[ResponseFact]:
    """What the API lets a partner say: first toward, or one later (with back_at) then toward."""
    first_at = BASE + timedelta(seconds=draw(offsets))
    if draw(st.booleans()):
        return [ResponseFact("toward", first_at)]
    back_at = first_at + timedelta(seconds=draw(st.integers(1, 7 * 24 * 3600)))
    facts = [ResponseFact("later", first_at, back_at)]
    if draw(st.booleans()):
        facts.append(ResponseFact("toward", first_at + timedelta(seconds=draw(offsets))))
    return facts


@PROPERTIES
@given(status=st.sampled_from(STATUSES), facts=responses(), now_offset=offsets)
def test_outcomes_follow_the_first_response(
    status: str, facts: list[ResponseFact], now_offset: int
) -> None:
    now = facts[-1].at + timedelta(seconds=now_offset)
    result = bids.outcome(status, facts, now)
    assert result in OUTCOMES
    assert result not in ("pending", "missed"), "an answered bid is never pending or missed"
    first = facts[0]
    if first.kind == "toward":
        assert result == "toward"
        return
    assert first.back_at is not None
    toward = next((f for f in facts[1:] if f.kind == "toward"), None)
    if toward is not None and toward.at <= first.back_at:
        assert result == "later_kept"
    elif now > first.back_at:
        assert result == "later_broken"
    else:
        assert result == "later_pending"
    assert bids.turned_toward(result) == (result in ("toward", "later_kept"))


@PROPERTIES
@given(status=st.sampled_from(STATUSES), now=moments)
def test_an_unanswered_bid_is_pending_until_it_expires(status: str, now: datetime) -> None:
    assert bids.outcome(status, [], now) == ("missed" if status == "expired" else "pending")


@PROPERTIES
@given(facts=responses(), first=offsets, more=offsets)
def test_a_settled_outcome_never_changes_later(
    facts: list[ResponseFact], first: int, more: int
) -> None:
    earlier = facts[-1].at + timedelta(seconds=first)
    later = earlier + timedelta(seconds=more)
    before, after = bids.outcome("answered", facts, earlier), bids.outcome("answered", facts, later)
    if before != "later_pending":
        assert after == before
    else:
        assert after in ("later_pending", "later_broken")


# --- invite codes ----------------------------------------------------------------------

codes = st.text(alphabet=invites.ALPHABET, min_size=invites.LENGTH, max_size=invites.LENGTH)
LOOKALIKES = {"0": "Oo0", "1": "IiLl1"}


@PROPERTIES
@given(code=codes)
def test_a_displayed_code_reads_back_as_itself(code: str) -> None:
    shown = invites.display(code)
    assert len(shown) == invites.LENGTH + 1 and shown[4] == "-"
    assert invites.normalize(shown) == code
    assert invites.normalize(code) == code


@PROPERTIES
@given(code=codes, data=st.data())
def test_what_people_type_for_a_code_reads_back_as_the_code(code: str, data: st.DataObject) -> None:
    typed = []
    for index, char in enumerate(invites.display(code)):
        if char == "-":
            typed.append(data.draw(st.sampled_from(["-", " ", "", " - "])))
            continue
        char = data.draw(st.sampled_from(LOOKALIKES.get(char, char.upper() + char.lower())))
        gap = data.draw(st.sampled_from(["", " "])) if index else ""
        typed.append(gap + char)
    assert invites.normalize("".join(typed)) == code


@PROPERTIES
@given(typed=st.text(alphabet=string.ascii_letters + string.digits + " -", max_size=20))
def test_normalizing_twice_changes_nothing(typed: str) -> None:
    once = invites.normalize(typed)
    assert invites.normalize(once) == once
    assert " " not in once and "-" not in once


def test_new_codes_use_the_alphabet() -> None:
    made = {invites.new_code() for _ in range(200)}
    assert len(made) == 200
    for code in made:
        assert len(code) == invites.LENGTH and set(code) <= set(invites.ALPHABET)
        assert invites.normalize(invites.display(code)) == code
