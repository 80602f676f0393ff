"""One memory budget for the ingest port: ``ingest.max_inflight_bytes``.

It counts the bytes of request bodies being read or inflated and of events awaiting Kafka,
across all requests of the process. Each request holds a :class:`Hold` that grows as its body
arrives and inflates (so a chunked body or a gzip bomb is charged as it goes, not by its
``Content-Length``) and is released when the response is ready. A request that cannot grow its
hold gets 429 with ``Retry-After`` — at once when the budget is already spent, before a byte of
its body is read.
"""

from __future__ import annotations

from gateway.ingest.errors import Overloaded
from gateway.metrics import Metrics


class ByteBudget:
    def __init__(self, limit_bytes: int, metrics: Metrics) -> None:
        self.limit_bytes = limit_bytes
        self.used_bytes = 0
        self._gauge = metrics.inflight_bytes

    def hold(self) -> Hold:
        return Hold(self)

    def _take(self, hold: Hold, n: int) -> None:
        # A request alone is always admitted (config keeps its size within the budget): otherwise
        # a request larger than what others leave could starve for ever.
        others = self.used_bytes - hold.bytes
        if others and self.used_bytes + n > self.limit_bytes:
            raise Overloaded(
                f"the gateway holds {self.used_bytes} bytes of requests in flight "
                f"(limit {self.limit_bytes}); retry shortly"
            )
        self.used_bytes += n
        hold.bytes += n
        self._gauge.set(self.used_bytes)

    def _give(self, hold: Hold, n: int) -> None:
        n = min(n, hold.bytes)
        self.used_bytes -= n
        hold.bytes -= n
        self._gauge.set(self.used_bytes)


class Hold:
    """One request's share of the budget; release it when the request is done."""

    def __init__(self, budget: ByteBudget) -> None:
        self.budget = budget
        self.bytes = 0

    def grow(self, n: int) -> None:
        """Charge ``n`` more bytes; raises :class:`Overloaded` (429) when the budget is spent."""
        if n > 0:
            self.budget._take(self, n)

    def shrink(self, n: int) -> None:
        self.budget._give(self, n)

    def release(self) -> None:
        self.budget._give(self, self.bytes)

    def check_room(self, n: int = 1) -> None:
        """Fail at once, taking nothing, when ``n`` more bytes would not fit the budget."""
        self.grow(n)
        self.shrink(n)
