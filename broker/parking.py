"""Queued jobs that wait for one IP, set aside until that IP may take them.

A sell leg stays on its buy leg's IP (``prefer_ip``), a re-send on its own (``require_ip``).
When the policy answers that such a job waits for its IP alone (:attr:`Blocked.pinned`), asking
again at every pump tells nothing new until that wait ends or something happens to the IP, and
costs a question per job and pump.

(:class:`galileo.policy.allocator.FarmPolicy` makes that promise for a cooldown, a worker without
credit and a missing worker, not for a pace: see its ``_pick_pinned``.)

A job whose IP's *pace* (or anything else without that promise) says wait stays in the queue for
that pump, as its bucket's head (:meth:`Parking.pace`): the jobs pinned the same way that come
after it wait in the bucket, out of the queue's scans, and the hub does not ask about the head
again until the wait's ``until`` (at most :data:`RECHECK` away), something happens to the IP, or
one of its jobs goes: until then the policy would say the same to each of them. Asked at every
pump, jobs behind paces cost 29 questions per job sent at 64 addresses on 2 cores (the
coordinator's largest cost), and the scan's 64 questions a pump did not reach every IP's jobs. At
the next pump that finds it still waiting (:meth:`Parking.paced_until`) the head is parked until
then too: left in the queue, every IP's head was popped and pushed back at each pump, a pump's
cost growing with the IPs and the pumps with the jobs (a third of the coordinator's time at 64
addresses and 300 ms).

So the hub parks such a job in its IP's *bucket* (one per upstream, IP and kind of pin), and
asks again only when the bucket is due:

* the policy's ``until`` comes (the IP's cooldown ends, say);
* something happens to that IP (:meth:`Parking.wake_ip`: a result, a worker registering,
  leaving or draining), since a returned credit or a lesson learnt may free it early;
* the bucket's earliest deadline comes, so a parked job expires on time;
* :data:`RECHECK` passes, a bound on how stale an answer gets if the policy changes its mind
  for a reason the hub does not see (an IP unsuspended by its operator).

A job pinned the same way to a parked IP joins its bucket without asking. A due bucket puts its
earliest job (its *head*) back in the upstream's queue, in deadline order with the others; when
that job leaves the queue (dispatched or ended), the next one goes in, so a bucket whose IP takes
several jobs in one pump gives them all, and one that is still waiting costs one question.
"""

from __future__ import annotations

import heapq

from broker.types import Job

__all__ = ["RECHECK", "Entry", "Parking", "pin_of"]

Entry = tuple[float, int, Job]  # (deadline, sequence, job): an upstream queue's heap entry
Key = tuple[str, bool]  # (IP, required): require_ip and prefer_ip jobs wait apart

RECHECK = 0.25  # seconds a bucket waits at most between two questions


def pin_of(job: Job) -> Key | None:
    """The IP ``job`` waits for, and whether it must have it; None when it takes any IP."""
    spec = job.spec
    if spec.require_ip is not None:
        return (spec.require_ip, True)
    if spec.prefer_ip is not None:
        return (spec.prefer_ip, False)
    return None


class _Bucket:
    __slots__ = ("entries", "head", "wake")

    def __init__(self) -> None:
        self.entries: list[Entry] = []  # a heap, by deadline; the head is out of it while queued
        self.head: Job | None = None  # the bucket's job in the queue, None while parked
        self.wake = float("inf")  # when to ask again, while parked


class Parking:
    """Every upstream's parked buckets. The hub keeps parked jobs in its count of queued ones."""

    def __init__(self) -> None:
        self._buckets: dict[str, dict[Key, _Bucket]] = {}
        self._wake: dict[str, float] = {}  # per upstream: no parked bucket is due before then
        self._paced: dict[str, dict[Key, float]] = {}  # per upstream: IPs whose pace said wait, until when

    def __contains__(self, upstream: object) -> bool:
        return upstream in self._buckets

    def upstreams(self) -> list[str]:
        return list(self._buckets)

    def wake(self, upstream: str) -> float:
        """When the earliest of ``upstream``'s parked buckets is due (inf: none is parked)."""
        return self._wake.get(upstream, float("inf"))

    def count(self, upstream: str) -> int:
        """Jobs of ``upstream`` set aside (not counting heads in the queue)."""
        return sum(len(b.entries) for b in self._buckets.get(upstream, {}).values())

    def release_due(self, upstream: str, queue: list[Entry], now: float) -> None:
        """Put the head of each of ``upstream``'s due buckets back in ``queue``."""
        buckets = self._buckets.get(upstream)
        if buckets is None or self._wake.get(upstream, float("inf")) > now:
            return
        soonest = float("inf")
        for bucket in buckets.values():
            if bucket.head is not None:
                continue
            if bucket.wake <= now:
                self._put_head(bucket, queue)
            elif bucket.wake < soonest:
                soonest = bucket.wake
        self._wake[upstream] = soonest

    def joins(self, upstream: str, key: Key, entry: Entry) -> bool:
        """True when ``entry``'s IP already waits (its bucket is parked, or its head is queued and is
        not this job): the job joins the bucket and the policy is not asked."""
        buckets = self._buckets.get(upstream)
        if buckets is None:
            return False
        bucket = buckets.get(key)
        if bucket is None or bucket.head is entry[2]:
            return False
        heapq.heappush(bucket.entries, entry)
        if bucket.head is None:
            self._wake_at(upstream, bucket, min(bucket.wake, bucket.entries[0][0]))
        return True

    def park(self, upstream: str, key: Key, entry: Entry, until: float | None, now: float) -> None:
        """The policy says ``entry``'s job waits for its IP alone, until ``until`` (None: a change)."""
        buckets = self._buckets.setdefault(upstream, {})
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = _Bucket()
        heapq.heappush(bucket.entries, entry)
        bucket.head = None
        wake = now + RECHECK
        if until is not None and until < wake:
            wake = until
        self._wake_at(upstream, bucket, min(wake, bucket.entries[0][0]))

    def left(self, upstream: str, key: Key, job: Job, queue: list[Entry]) -> None:
        """``job`` left ``queue`` (dispatched or ended): if it was its bucket's head, the next job of
        the bucket takes its place in the queue."""
        buckets = self._buckets.get(upstream)
        if buckets is None:
            return
        bucket = buckets.get(key)
        if bucket is None or bucket.head is not job:
            return
        if bucket.entries:
            self._put_head(bucket, queue)
            return
        del buckets[key]
        if not buckets:
            del self._buckets[upstream]
            self._wake.pop(upstream, None)

    def paced_until(self, upstream: str, key: Key, now: float) -> float | None:
        """When ``key``'s IP may take the next of its jobs, if its pace said so and that is still to
        come: until then the policy would say the same to any of them, and is not asked (the hub
        parks the job until then)."""
        paced = self._paced.get(upstream)
        until = None if paced is None else paced.get(key)
        return until if until is not None and now < until else None

    def pace(self, upstream: str, key: Key, job: Job, until: float | None, now: float) -> None:
        """The policy said ``job``, in the queue and pinned to ``key``, waits for its IP's pace, until
        ``until`` (None: a change, such as an answer freeing a slot under a concurrency cap).

        It stays in the queue as its bucket's head (until the next pump parks it: :meth:`paced_until`),
        and the jobs pinned the same way that come after it wait in the bucket behind it, out of the
        queue's scans, each taking its place there when the one before it leaves (:meth:`left`). It
        is asked about again at ``until``, after :data:`RECHECK` at most, or as soon as something
        happens to the IP (:meth:`wake_ip`) or a job pinned the same way leaves the queue
        (:meth:`went`)."""
        wake = now + RECHECK
        self._paced.setdefault(upstream, {})[key] = wake if until is None or until > wake else until
        buckets = self._buckets.setdefault(upstream, {})
        if key not in buckets:
            bucket = buckets[key] = _Bucket()
            bucket.head = job

    def went(self, upstream: str, key: Key) -> None:
        """A job pinned to ``key`` left the queue (dispatched or ended): the next one is asked about."""
        paced = self._paced.get(upstream)
        if paced is not None:
            paced.pop(key, None)

    def wake_ip(self, ip: str) -> None:
        """Something happened to ``ip`` (an answer came, its worker came, went or drains): its
        buckets are due at the next pump, and its paced jobs are asked about again."""
        for paced in self._paced.values():
            paced.pop((ip, True), None)
            paced.pop((ip, False), None)
        for upstream, buckets in self._buckets.items():
            for key in ((ip, True), (ip, False)):
                bucket = buckets.get(key)
                if bucket is not None and bucket.head is None:
                    bucket.wake = float("-inf")
                    self._wake[upstream] = float("-inf")

    def drain(self) -> list[Job]:
        """Every parked job (heads in a queue excepted), forgotten here."""
        jobs = [entry[2] for buckets in self._buckets.values() for b in buckets.values() for entry in b.entries]
        self._buckets.clear()
        self._wake.clear()
        self._paced.clear()
        return jobs

    def _put_head(self, bucket: _Bucket, queue: list[Entry]) -> None:
        entry = heapq.heappop(bucket.entries)
        bucket.head = entry[2]
        bucket.wake = float("inf")
        heapq.heappush(queue, entry)

    def _wake_at(self, upstream: str, bucket: _Bucket, wake: float) -> None:
        bucket.wake = wake
        if wake < self._wake.get(upstream, float("inf")):
            self._wake[upstream] = wake
