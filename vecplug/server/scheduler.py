"""Which tokenized texts the engine runs next: small and query requests first, bulk shared fairly.

The batcher (``batching``) owns the threads and the queue's bound; this
module only decides, under the batcher's lock, what goes into a pass.

- A request is *express* when it is small (at most a quarter of a pass's
  token budget) or is a query (``input_type=query`` / TEI's query prompt)
  of at most one pass. Express texts get a pass of their own, in arrival
  order, at the next pass boundary: a one-word query waits for the pass in
  progress, not for the bulk queued before it.
- *Bulk* requests share pools of ``POOL_BUDGETS`` token budgets by deficit
  round robin: each round, every bulk request in the rotation earns
  ``budget / POOL_BUDGETS`` tokens of credit and puts in texts while its
  credit lasts, so eight clients' 2,048-text requests advance together and
  a later bulk request starts at the next pool instead of after all of
  them. A pool is sorted by length and planned into passes (``plan_batches``)
  as before: similar lengths are what the attention runs fast.
- The engine runs one pass at a time and, at each boundary, takes turns
  between express passes, engine calls (late chunking, ``/embed_all``) and
  the next bulk pass, in that order of preference, never the same kind
  twice in a row while another kind waits: express cannot starve bulk, and
  calls keep their turns.
"""
from __future__ import annotations

from collections import deque

from ..token_budget import plan_batches

# The engine takes up to this many budgets of bulk texts at once, sorts them
# by length and runs one forward pass per budget. Similar lengths are what the
# CPU attention batches well: one budget of arrival-ordered texts ran at 0.82x
# of the same texts sorted as a whole (ModernBERT-base, bf16, 2-core CPU); four
# budgets sorted together ran at 1.0x.
POOL_BUDGETS = 4

# Express: a request of at most a quarter of one pass's tokens, or a query
# request of at most one pass.
SMALL_SHARE = 4

EXPRESS, CALL, BULK = "express", "call", "bulk"
PREFERENCE = (EXPRESS, CALL, BULK)


def next_turn(waiting: set[str], last: str | None) -> str | None:
    """The kind of work to run next: the first waiting kind by preference, the one run last only if alone."""
    order = [kind for kind in PREFERENCE if kind != last] + ([last] if last in PREFERENCE else [])
    return next((kind for kind in order if kind in waiting), None)


class ReadyQueues:
    """Tokenized jobs waiting for the engine, express and bulk (the caller holds the batcher's lock).

    Work items are ``(job, index)`` pairs; taking one advances ``job.next_index``.
    ``lengths(job, index)`` gives a text's cost: its tokens on the token path,
    1 on the text path.
    """

    def __init__(self, token_budget: int, fast: bool, batch_texts: int | None):
        self.token_budget = token_budget
        self.fast = fast
        self.batch_texts = batch_texts
        self.express: deque = deque()
        self.bulk: deque = deque()  # the rotation; a job's credit is in job.credit
        self.pending_passes: deque[list] = deque()  # the current bulk pool's passes not run yet
        self.taken = 0  # texts taken off the queue so far (into a pass or a pool)

    # -- classifying ---------------------------------------------------------
    def is_express(self, job) -> bool:
        if not self.fast:
            return job.query or len(job.texts) <= max(1, self.batch_texts // SMALL_SHARE)
        if job.tokens <= self.token_budget // SMALL_SHARE:
            return True
        return job.query and job.tokens <= self.token_budget

    def add(self, job) -> None:
        job.credit = 0
        (self.express if self.is_express(job) else self.bulk).append(job)

    def cost(self, job, index: int) -> int:
        return len(job.token_ids[index]) if self.fast else 1

    # -- what waits --------------------------------------------------------------
    def waiting(self) -> set[str]:
        kinds = set()
        if _first_live(self.express) is not None:
            kinds.add(EXPRESS)
        if self.pending_passes or _first_live(self.bulk) is not None:
            kinds.add(BULK)
        return kinds

    def empty(self) -> bool:
        return not self.express and not self.bulk and not self.pending_passes

    def drop_dead(self, forget) -> None:
        """Take cancelled and failed jobs out; ``forget(job)`` takes their untaken texts off the count."""
        for queue in (self.express, self.bulk):
            for job in [job for job in queue if job.cancelled or job.error is not None]:
                queue.remove(job)
                forget(job)

    # -- taking work ---------------------------------------------------------------
    def take_express(self) -> list:
        """Express texts in arrival order, up to one pass (at least one text)."""
        taken, used = [], 0
        limit = self.token_budget if self.fast else self.batch_texts
        while self.express:
            job = self.express[0]
            cost = self.cost(job, job.next_index)
            if taken and used + cost > limit:
                break
            taken.append((job, job.next_index))
            used += cost
            job.next_index += 1
            if job.next_index == len(job.texts):
                self.express.popleft()
        self.taken += len(taken)
        return taken

    def take_bulk_pass(self) -> list:
        """The next bulk pass: of the current pool, or of a new pool taken by deficit round robin."""
        if not self.pending_passes:
            pool = self._take_pool()
            if not pool:
                return []
            if self.fast:
                for rows in plan_batches([self.cost(job, index) for job, index in pool], self.token_budget):
                    self.pending_passes.append([pool[row] for row in rows])
            else:
                self.pending_passes.append(pool)
        return self.pending_passes.popleft()

    def _take_pool(self) -> list:
        """Up to ``POOL_BUDGETS`` budgets of bulk texts (one batch on the text path), shared by deficit round robin."""
        capacity = self.token_budget * POOL_BUDGETS if self.fast else self.batch_texts
        quantum = max(1, capacity // POOL_BUDGETS // max(1, len(self.bulk))) if self.fast else 1
        pool, used = [], 0
        while self.bulk and used < capacity:
            job = self.bulk[0]
            job.credit += quantum
            while job.next_index < len(job.texts):
                cost = self.cost(job, job.next_index)
                if cost > job.credit:  # spent for this round (credit carries over)
                    break
                if pool and used + cost > capacity:
                    used = capacity  # full; the job keeps its credit for the next pool
                    break
                pool.append((job, job.next_index))
                used += cost
                job.credit -= cost
                job.next_index += 1
            if job.next_index == len(job.texts):
                self.bulk.popleft()
            else:
                self.bulk.rotate(-1)
        self.taken += len(pool)
        return pool


def _first_live(queue: deque):
    return next((job for job in queue if not job.cancelled and job.error is None), None)
