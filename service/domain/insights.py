"""Reading the couple's figures kindly: the pursue-withdraw cycle, named only with evidence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MIN_BIDS = 10  # fewer bids than this in the period: too thin to say anything
PURSUER_SHARE = 0.7  # one partner sends at least this share of the bids
SLOW_MEDIAN_SECONDS = 3600  # the other's typical answer takes longer than an hour
RARE_TURN_TOWARD = 0.5  # or the other turns toward fewer than half of the bids
MIN_OUTCOMES = 3  # fewer of the other's outcomes (or answers, for the median): too thin to read


@dataclass(frozen=True)
class PartnerFigures:
    user_id: str
    name: str
    sent: int
    # Received bids whose outcome is known: turned toward, a `later` kept or broken, or missed.
    # Not those still open, nor a `later` whose back_at has not come: a partner asleep, or one
    # who said "I'll be back at 9" at 8, has not turned away. The partner's shown
    # `turn_toward_rate` is this one.
    decided: int
    turned_toward: int  # of `decided`
    answered: int  # the responses the median is over
    median_response_seconds: int | None

    @property
    def turn_toward_rate(self) -> float | None:
        return round(self.turned_toward / self.decided, 4) if self.decided else None


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} seconds"
    if seconds < 5400:
        return f"{round(seconds / 60)} minutes"
    return f"{seconds / 3600:.1f} hours"


def pursue_withdraw(a: PartnerFigures, b: PartnerFigures) -> dict[str, Any] | None:
    """The Protest Polka, when the numbers show it; None when they don't or are too few."""
    total = a.sent + b.sent
    if total < MIN_BIDS:
        return None
    reacher, other = (a, b) if a.sent >= b.sent else (b, a)
    share = reacher.sent / total
    if share < PURSUER_SHARE:
        return None
    slow = (
        other.answered >= MIN_OUTCOMES
        and (other.median_response_seconds or 0) > SLOW_MEDIAN_SECONDS
    )
    rare = (
        other.decided >= MIN_OUTCOMES
        and other.turn_toward_rate is not None
        and other.turn_toward_rate < RARE_TURN_TOWARD
    )
    if not (slow or rare):
        return None
    how = []
    if rare and other.turn_toward_rate is not None:
        how.append(f"{other.name} turned toward {round(100 * other.turn_toward_rate)}% of them")
    if slow and other.median_response_seconds is not None:
        how.append(f"answers took {_duration(other.median_response_seconds)} at the middle")
    message = (
        f"Over this period {reacher.name} sent {round(100 * share)}% of your bids, and "
        f"{' and '.join(how)}. Many couples get caught in this cycle: one reaches harder when "
        "the other seems far away, and the other steps back when the reaching feels like "
        "pressure. The cycle is the problem, not either of you. It can help to talk about "
        "what reaching out and answering feel like for each of you."
    )
    return {
        "name": "pursue_withdraw",
        "reaching_partner_id": reacher.user_id,
        "withdrawing_partner_id": other.user_id,
        "message": message,
        "evidence": {
            "bids": total,
            "share_sent_by_reaching_partner": round(share, 3),
            "turn_toward_rate_of_other": other.turn_toward_rate,
            "median_response_seconds_of_other": other.median_response_seconds,
        },
    }
