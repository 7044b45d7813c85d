"""Push work written in the same transaction as the change it announces (the outbox)."""

from service.services.push_outbox.holds import (
    break_end,
    due_from,
    follow_quiet_hours,
    hold,
    release,
)
from service.services.push_outbox.jobs import Recipient, job, on_enqueued, queue, wake_after_commit
from service.services.push_outbox.keys import (
    bid_push_of,
    message_pushes_of,
    reminders_of,
    reminders_of_break,
)
from service.services.push_outbox.notifications import (
    BID_BODIES,
    bid_created,
    repair_message,
    repair_reminders,
)
from service.services.push_outbox.retention import (
    FINISHED,
    Pruned,
    prune_dead_tokens,
    prune_finished,
)
from service.services.push_outbox.withdrawals import UNSENT, cancel, withdraw_read_messages

__all__ = [
    "BID_BODIES",
    "FINISHED",
    "UNSENT",
    "Pruned",
    "Recipient",
    "bid_created",
    "bid_push_of",
    "break_end",
    "cancel",
    "due_from",
    "follow_quiet_hours",
    "hold",
    "job",
    "message_pushes_of",
    "on_enqueued",
    "prune_dead_tokens",
    "prune_finished",
    "queue",
    "release",
    "reminders_of",
    "reminders_of_break",
    "repair_message",
    "repair_reminders",
    "wake_after_commit",
    "withdraw_read_messages",
]
