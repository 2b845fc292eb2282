"""The pure checkpoint logic: when a spout may commit a position, when it must read again,
and when a bolt may acknowledge an epoch (analytics/checkpoint.py)."""
from __future__ import annotations

import pytest

from analytics.checkpoint import BarrierAligner, SpoutCheckpoints

pytestmark = pytest.mark.timeout(10)


def test_a_position_is_committed_only_once_every_bolt_downstream_stored_it():
    cp = SpoutCheckpoints("gamelog", frozenset({"loginhour", "loginday"}), {"at": 0}, timeout=30)
    one = cp.begin({"at": 10}, now=1.0)
    two = cp.begin({"at": 20}, now=2.0)
    cp.ack("loginhour", one[1], one[2])
    assert cp.to_commit(3.0) is None                      # loginday has not stored epoch 1
    cp.ack("loginday", two[1], two[2])                    # an ack covers every earlier epoch
    assert cp.to_commit(3.0) == {"at": 10}                # ... but loginhour is still at 1
    assert cp.to_commit(3.0) is None
    cp.ack("loginhour", two[1], two[2])
    assert cp.to_commit(3.5) == {"at": 20} and cp.committed == {"at": 20} and not cp.open
    assert cp.last_commit_age == pytest.approx(1.5)


def test_acks_of_an_older_generation_do_not_count():
    cp = SpoutCheckpoints("gamelog", frozenset({"loginhour"}), {"at": 0}, timeout=30)
    old = cp.begin({"at": 10}, now=1.0)
    cp.nack(old[1], "gap")
    assert cp.overdue(2.0) == "gap"
    opening = cp.rewind()
    assert opening[2] == 0 and opening[1] != old[1] and not cp.open and cp.committed == {"at": 0}
    new = cp.begin({"at": 5}, now=2.0)
    cp.ack("loginhour", old[1], 99)                       # late ack of the abandoned generation
    assert cp.to_commit(3.0) is None
    cp.ack("loginhour", new[1], new[2])
    assert cp.to_commit(3.0) == {"at": 5}


def test_an_epoch_not_stored_in_time_makes_the_spout_read_again():
    cp = SpoutCheckpoints("gamelog", frozenset({"loginday"}), {"at": 0}, timeout=5)
    cp.begin({"at": 10}, now=1.0)
    assert cp.overdue(5.9) == ""
    assert "not stored by loginday within 5s" in cp.overdue(6.1)


def test_without_bolts_downstream_every_epoch_commits_at_once():
    cp = SpoutCheckpoints("payment", frozenset(), {}, timeout=5)
    cp.begin({"at": 1}, now=0.0)
    assert cp.to_commit(0.0) == {"at": 1}


def test_barriers_in_sequence_with_every_tuple_received():
    al = BarrierAligner({"gamelog": frozenset({("gamelog", "t")})})
    link = ("gamelog", "t")
    assert al.in_sequence(link, "inc1", 1, sent=5, got=5)
    assert al.in_sequence(link, "inc1", 2, sent=9, got=9)
    assert not al.in_sequence(link, "inc1", 3, sent=12, got=11)    # one tuple lost
    assert al.in_sequence(link, "inc1", 4, sent=14, got=13)         # counted from the last barrier
    assert not al.in_sequence(link, "inc1", 6, sent=20, got=19)     # barrier 5 lost
    assert al.gaps == 2


def test_a_restarted_bolt_cannot_vouch_for_what_came_before_it():
    al = BarrierAligner({"gamelog": frozenset({("gamelog", "t")})})
    assert not al.in_sequence(("gamelog", "t"), "inc1", 7, sent=70, got=3)


def test_a_restarted_producer_starts_a_new_sequence():
    al = BarrierAligner({})
    link = ("loginhour", "login.hour")
    assert al.in_sequence(link, "a", 1, sent=4, got=4)
    assert al.in_sequence(link, "b", 1, sent=2, got=6)              # new incarnation: counts from its start
    assert not al.in_sequence(link, "c", 1, sent=2, got=9)          # its predecessor's tail arrived too


def test_an_epoch_is_acknowledged_once_aligned_over_every_link_of_its_source():
    links = frozenset({("loginday", "login.day"), ("signupday", "signup.day")})
    al = BarrierAligner({"gamelog": links})
    aligned, new_gens, nacks = al.on_barrier(("loginday", "login.day"), [["gamelog", "g1", 3]], ok=True)
    assert aligned == [] and new_gens == [("gamelog", "g1", 0)] and nacks == []
    aligned, new_gens, _ = al.on_barrier(("signupday", "signup.day"), [["gamelog", "g1", 2]], ok=True)
    assert aligned == [("gamelog", "g1", 2)] and new_gens == []      # the slower link decides
    aligned, _, _ = al.on_barrier(("signupday", "signup.day"), [["gamelog", "g1", 3]], ok=True)
    assert aligned == [("gamelog", "g1", 3)]
    aligned, _, _ = al.on_barrier(("signupday", "signup.day"), [["payment", "p", 1]], ok=True)
    assert aligned == []                                               # not a source of this bolt


def test_a_gap_is_reported_for_the_sources_of_the_barrier_and_a_new_generation_resets():
    link = ("gamelog", "gamelog.login_logcount")
    al = BarrierAligner({"gamelog": frozenset({link})})
    al.on_barrier(link, [["gamelog", "g1", 1]], ok=True)
    aligned, _, nacks = al.on_barrier(link, [["http", "h1", 2]], ok=False)
    assert aligned == [] and nacks == [("gamelog", "g1", 0)]   # every source through the link
    aligned, new_gens, _ = al.on_barrier(link, [["gamelog", "g2", 0]], ok=True)
    assert aligned == [] and new_gens == [("gamelog", "g2", 0)]
    aligned, _, _ = al.on_barrier(link, [["gamelog", "g2", 3]], ok=True)
    assert aligned == [("gamelog", "g2", 3)]


def test_a_bolt_that_saw_no_generation_yet_nacks_whichever_is_current():
    link = ("loginhour", "login.hour")
    al = BarrierAligner({"gamelog": frozenset({link}), "http": frozenset({link})})
    _, _, nacks = al.on_barrier(link, [["http", "h1", 4]], ok=False)
    assert nacks == [("gamelog", "*", 0), ("http", "*", 0)]
    cp = SpoutCheckpoints("gamelog", frozenset({"loginday"}), {}, timeout=30)
    cp.nack("*", "gap")
    assert cp.overdue(0.0) == "gap"


def test_after_a_gap_nothing_of_that_source_is_acknowledged_until_it_reads_again():
    link = ("gamelog", "gamelog.login_logcount")
    al = BarrierAligner({"gamelog": frozenset({link})})
    al.on_barrier(link, [["gamelog", "g1", 1]], ok=True)
    al.on_barrier(link, [["gamelog", "g1", 2]], ok=False)
    aligned, _, _ = al.on_barrier(link, [["gamelog", "g1", 3]], ok=True)   # in sequence again, same generation
    assert aligned == []                                                   # ... but epoch 2 lost tuples
    aligned, _, _ = al.on_barrier(link, [["gamelog", "g2", 0]], ok=True)
    aligned, _, _ = al.on_barrier(link, [["gamelog", "g2", 4]], ok=True)
    assert aligned == [("gamelog", "g2", 4)]


def test_a_spout_commits_nothing_between_a_nack_and_its_rewind():
    cp = SpoutCheckpoints("gamelog", frozenset({"a", "b"}), {"at": 0}, timeout=30)
    one = cp.begin({"at": 1}, now=0.0)
    cp.nack(one[1], "b lost tuples")
    cp.ack("a", one[1], 1)
    cp.ack("b", one[1], 1)
    assert cp.to_commit(1.0) is None and cp.committed == {"at": 0}
