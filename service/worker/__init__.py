"""The worker: expires bids, sends pushes from the outbox, fires scheduled reminders."""
