"""Checkpoints: a source position is committed only once everything read before it is stored.

The guarantee (docs/operations.md): after a crash of any process at any moment, a restart
alone brings every figure back to exact. It rests on two things the rest of the runtime
already gives: aggregation is idempotent (sets are unions, sums drop record ids already
counted, snapshots are kept with $max), and a spout can read its source again from a
saved position. What is left is to never save a position too early. This module holds
the pure logic of that, with no sockets and no clock of its own:

* `SpoutCheckpoints` (the spout side, as a Flink source's checkpoint coordinator): every
  `checkpoint_seconds` the spout opens an epoch with the reader's position and sends a
  checkpoint barrier behind the tuples it read before it. The position of epoch N is
  committed once every bolt downstream of the spout has acknowledged N. A bolt that
  reports a gap (a nack), or an epoch not acknowledged within `timeout`, makes the spout
  rewind: it reads again from the last committed position under a new generation, and
  the idempotent bolts absorb what they see twice.
* `BarrierAligner` (the bolt side): checks that a barrier follows the previous one of the
  same link (producer, topic) with every tuple in between received (`seq` and counts),
  and aligns the barriers of one source over every link that carries it into the bolt.
  Once aligned, the bolt stores what it holds, forwards the barrier on its own topics
  (behind the tuples it derived) and acknowledges the epoch.

Barriers are not blocking (no Flink alignment buffer): tuples after a barrier are
processed at once, which is safe because what they change is idempotent.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["SpoutCheckpoints", "BarrierAligner", "Epoch", "Link", "Origin"]

#: (producer, topic): one stream of tuples into a bolt.
Link = tuple[str, str]
#: [spout, generation, epoch] as carried by a barrier; epoch 0 opens a generation (no ack implied).
Origin = tuple[str, str, int]


@dataclass
class Epoch:
    """One open checkpoint of a spout: the source position after everything sent before it."""
    n: int
    position: Any
    opened_at: float
    acked: set[str] = field(default_factory=set)


class SpoutCheckpoints:
    """Which epochs of a spout are open, which bolts have stored each, and what to commit.

    `ackers` are the bolts downstream of the spout (every bolt one of whose inputs
    carries its tuples, directly or through other bolts). With none, every epoch is
    committed as soon as it is opened.
    """

    def __init__(self, spout: str, ackers: frozenset[str], position: Any, *, timeout: float = 30.0) -> None:
        self.spout = spout
        self.ackers = frozenset(ackers)
        self.timeout = timeout
        #: The last committed position (what a restart or a rewind reads from).
        self.committed = position
        self.inc = os.urandom(4).hex()
        self.rewinds = 0
        self.gen = f"{self.inc}.0"
        self.n = 0
        self.open: list[Epoch] = []
        self.failed: str = ""
        #: Epochs committed and their total age at commit (for status and the recovery figure).
        self.commits = 0
        self.last_commit_age = 0.0

    def begin(self, position: Any, now: float) -> Origin:
        """Open the next epoch at `position`; the origin to put in the barrier that follows the tuples."""
        self.n += 1
        self.open.append(Epoch(self.n, position, now))
        return (self.spout, self.gen, self.n)

    def ack(self, bolt: str, gen: str, n: int) -> None:
        """`bolt` stored everything up to epoch `n` of generation `gen` (older generations are ignored)."""
        if gen != self.gen:
            return
        for e in self.open:
            if e.n <= n:
                e.acked.add(bolt)

    def nack(self, gen: str, reason: str) -> None:
        """A bolt found a gap in what it received of generation `gen` ('*': whichever is current,
        from a bolt that has not seen one yet): rewind at the next chance."""
        if gen in (self.gen, "*") and not self.failed:
            self.failed = reason

    def to_commit(self, now: float) -> Any | None:
        """The newest position that every acker has stored, or None; closes the epochs up to it.

        Nothing is committed once a gap was reported: the rewind comes first.
        """
        if self.failed:
            return None
        done = None
        while self.open and self.ackers <= self.open[0].acked:
            e = self.open.pop(0)
            done = e
        if done is None:
            return None
        self.committed = done.position
        self.commits += 1
        self.last_commit_age = now - done.opened_at
        return done.position

    def overdue(self, now: float) -> str:
        """Why the spout must rewind now ('' if it need not): a nack, or the oldest epoch timed out."""
        if self.failed:
            return self.failed
        if self.open and now - self.open[0].opened_at > self.timeout:
            missing = sorted(self.ackers - self.open[0].acked)
            return (f"epoch {self.open[0].n} not stored by {', '.join(missing[:5])} "
                    f"within {self.timeout:g}s")
        return ""

    def rewind(self) -> Origin:
        """Forget the open epochs and start a new generation; the spout reads again from `committed`.

        Returns the origin of the generation-opening barrier (epoch 0) the spout sends
        before anything it reads again, so bolts drop their in-memory "already seen"
        caches before the records come back.
        """
        self.rewinds += 1
        self.gen = f"{self.inc}.{self.rewinds}"
        self.open.clear()
        self.failed = ""
        return (self.spout, self.gen, 0)


@dataclass
class _LinkState:
    inc: str
    seq: int
    sent: int
    got: int


class BarrierAligner:
    """A bolt's view of the checkpoint barriers it receives.

    `origin_links` says, for each spout, the links (producer, topic) into this bolt
    that carry its tuples: an epoch is aligned when a barrier of it (or a later one)
    has arrived on each of them, each in sequence with all its tuples received.
    """

    def __init__(self, origin_links: Mapping[str, frozenset[Link]]) -> None:
        self.origin_links = {s: frozenset(links) for s, links in origin_links.items()}
        self._links: dict[Link, _LinkState] = {}
        #: spout -> link -> (gen, epoch) of the newest in-sequence barrier on that link.
        self._at: dict[str, dict[Link, tuple[str, int]]] = {}
        #: spout -> (gen, epoch) acknowledged last.
        self.acked: dict[str, tuple[str, int]] = {}
        #: spout -> the generation last seen (a new one means the spout rewound).
        self.gens: dict[str, str] = {}
        #: spout -> links where tuples of it were lost: nothing of it is acknowledged until each has
        #: carried a generation-opening barrier (epoch 0: the spout read again from a committed position).
        self.blocked: dict[str, set[Link]] = {}
        self.gaps = 0

    def in_sequence(self, link: Link, inc: str, seq: int, sent: int, got: int) -> bool:
        """Whether this barrier follows the link's previous one with every tuple between them received.

        `sent` is what the producer says it sent on the link in its incarnation `inc`
        (cumulative), `got` what this bolt received on the link since it started
        (cumulative). A producer's first barrier (seq 1) counts from its start.
        """
        st = self._links.get(link)
        if st is not None and st.inc == inc and seq == st.seq + 1:
            ok = got - st.got == sent - st.sent
        elif seq == 1:
            ok = got - (st.got if st is not None else 0) == sent
        else:
            ok = False
        self._links[link] = _LinkState(inc, seq, sent, got)
        if not ok:
            self.gaps += 1
        return ok

    def on_barrier(self, link: Link, origins: list[Any], ok: bool) -> tuple[list[Origin], list[Origin], list[Origin]]:
        """Take one barrier's origins; returns (aligned epochs to store and acknowledge,
        generations that are new here (forget caches, forward), sources to nack).

        A barrier out of sequence (`ok` False) nacks every source whose tuples flow through
        `link`, at the generation last seen here ('*' if none). Origins of spouts this bolt
        does not expect on `link` are ignored.
        """
        aligned: list[Origin] = []
        new_gens: list[Origin] = []
        nacks: list[Origin] = []
        if not ok:
            # Whatever was lost on this link may have come from any source that flows through it.
            for spout, links in sorted(self.origin_links.items()):
                if link in links:
                    nacks.append((spout, self.gens.get(spout, "*"), 0))
                    self._at.get(spout, {}).pop(link, None)
                    self.blocked.setdefault(spout, set()).add(link)
            return aligned, new_gens, nacks
        for item in origins:
            try:
                spout, gen, n = str(item[0]), str(item[1]), int(item[2])
            except (TypeError, ValueError, IndexError):
                continue
            links = self.origin_links.get(spout)
            if not links or link not in links:
                continue
            if self.gens.get(spout) != gen:
                self.gens[spout] = gen
                new_gens.append((spout, gen, 0))
            at = self._at.setdefault(spout, {})
            at[link] = (gen, n)
            blocked = self.blocked.get(spout)
            if blocked and n == 0:
                blocked.discard(link)
            if blocked or n == 0 or len(at) < len(links) or any(g != gen for g, _ in at.values()):
                continue
            epoch = min(e for _, e in at.values())
            last_gen, last_epoch = self.acked.get(spout, ("", 0))
            if epoch > 0 and (last_gen != gen or last_epoch < epoch):
                self.acked[spout] = (gen, epoch)
                aligned.append((spout, gen, epoch))
        return aligned, new_gens, nacks
