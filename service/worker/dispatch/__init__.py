"""Push dispatch: claim due jobs from the outbox, send to every active device, record it all.

A pass issues the same few statements whatever the number of jobs it takes (Core, not ORM
objects: the unit of work was most of the worker's CPU):

1. one transaction: claim the jobs (`UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED
   LIMIT n) RETURNING`); add the missing deliveries for every recipient's active devices (one
   `INSERT ... SELECT ... ON CONFLICT DO NOTHING`); read every delivery of the jobs with its
   device (one SELECT); mark expired jobs, and skip the deliveries whose device was disabled or
   moved meanwhile (one UPDATE each, only if any); COMMIT -- the deliveries exist before
   anything leaves the process (the claim is committed on its own first when some of its jobs
   have expired: `Dispatcher.run`);
2. the batch goes out, each send started only while the lease leaves room for its answer
   (`service/push/timing.py`): what the pass could not start in time stays pending, untried;
3. one transaction: the jobs still held with the pass's lease (one SELECT ... FOR NO KEY
   UPDATE SKIP LOCKED: only their results are recorded, not over those of a worker that took
   one over; only if it passed over some, one SELECT more tells those another transaction
   holds, whose deliveries' results are written without waiting for them),
   the jobs by outcome (one UPDATE for the done, one for the dead, one
   executemany for those that wait to be retried, one UPDATE for those none of whose pushes
   could be started, one executemany for those whose recipient is in quiet hours now, each only
   if any), then dead tokens (one UPDATE, and one INSERT remembering those dead for good, only
   if any), then the held jobs' deliveries' results (one executemany UPDATE) and every
   attempt (one INSERT); COMMIT. The pushes have left by then: a
   connection the database dropped meanwhile does not lose their results (the transaction is
   tried again while the lease lasts), or they would go out again.
"""

from service.worker.dispatch.dispatcher import Dispatcher
from service.worker.dispatch.policy import MAX_PAUSE_SECONDS, RetryPolicy
from service.worker.dispatch.record import RECORD_PAUSE_MAX_SECONDS, RECORD_PAUSE_SECONDS
from service.worker.dispatch.statements import TERMINAL

__all__ = [
    "MAX_PAUSE_SECONDS",
    "RECORD_PAUSE_MAX_SECONDS",
    "RECORD_PAUSE_SECONDS",
    "TERMINAL",
    "Dispatcher",
    "RetryPolicy",
]
