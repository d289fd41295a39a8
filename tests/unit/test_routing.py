"""Route choice and shared pacing (voicecast.dialer.routing) on SQLite: nodes with free
channels, spreading, trunk and campaign CPS slots."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from voicecast.dialer.routing import SEND_LEAD, live_attempts, live_counts, plan_route, reserve
from voicecast.pbx.base import NodeSpec, TrunkSpec
from voicecast.storage.db import make_engine, migrate, session_factory
from voicecast.storage.models import (
    AudioMessage,
    CallAttempt,
    Campaign,
    CampaignContact,
    Contact,
    ContactList,
    PacingSlot,
)

NODES = (
    NodeSpec("a", 2, (TrunkSpec("t1", "PJSIP/{number}@t1", 10.0),)),
    NodeSpec("b", 2, (TrunkSpec("t2", "PJSIP/{number}@t2", None),)),
)


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = make_engine(f"sqlite:///{tmp_path}/r.db")
    migrate(engine)
    return session_factory(engine)


def _campaign(s: Session) -> int:
    clist = ContactList(name="l")
    audio = AudioMessage(
        name="m", file_name="m.wav", sha256="0" * 64, duration_ms=1000, source_name="m.wav"
    )
    s.add_all([clist, audio])
    s.flush()
    c = Campaign(
        name="c",
        list_id=clist.id,
        message_id=audio.id,
        caller_id="+33162000000",
        max_channels=10,
        cps=2.0,
        ring_timeout=10,
        retries=0,
        retry_delay=0.0,
        retry_outcomes=[],
        amd={},
        status="running",
        purpose="informational",
        audience="b2c",
        sender_name="Test Sender",
        on_behalf_of="Test Sender",
        optout_key="9",
        legal_basis="contract",
    )
    s.add(c)
    s.flush()
    return c.id


def _attempt(s: Session, campaign_id: int, node: str, n: int, state: str = "originating") -> None:
    contact = Contact(list_id=1, phone_e164=f"+331990000{n:02d}", fields={}, source_line=n)
    s.add(contact)
    s.flush()
    cc = CampaignContact(
        campaign_id=campaign_id,
        contact_id=contact.id,
        phone_e164=contact.phone_e164,
        state="dialing",
    )
    s.add(cc)
    s.flush()
    s.add(
        CallAttempt(
            id=f"{n:032x}",
            campaign_id=campaign_id,
            campaign_contact_id=cc.id,
            number=contact.phone_e164,
            attempt_no=1,
            state=state,
            pbx_node=node,
        )
    )


def _take(s: Session, cid: int, up: set[str], n: int) -> str | None:
    """Plan and reserve one route, then write its attempt; the node's name, or None."""
    planned = plan_route(s, campaign_id=cid, campaign_cps=1000.0, nodes=NODES, up=up)
    if planned is None:
        return None
    route, moves = planned
    reserve(route, moves)
    _attempt(s, cid, route.node, n)
    return route.node


def test_calls_spread_over_the_nodes_up_to_their_capacity(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as s, s.begin():
        cid = _campaign(s)
        taken = [_take(s, cid, {"a", "b"}, n) for n in range(5)]
    assert sorted(t for t in taken[:4] if t) == ["a", "a", "b", "b"]
    assert taken[4] is None  # both nodes full (2 channels each)


def test_a_node_that_is_down_or_full_is_not_used(sessions: sessionmaker[Session]) -> None:
    with sessions() as s, s.begin():
        cid = _campaign(s)
        assert [_take(s, cid, {"b"}, n) for n in range(3)] == ["b", "b", None]
        assert _take(s, cid, set(), 9) is None  # no node up
        assert _take(s, cid, {"a", "b"}, 10) == "a"


def test_ended_attempts_free_their_channel(sessions: sessionmaker[Session]) -> None:
    with sessions() as s, s.begin():
        cid = _campaign(s)
        _attempt(s, cid, "a", 1, state="ended")
        _attempt(s, cid, "a", 2, state="answered")
        assert live_attempts(s) == {"a": 1}
        assert live_attempts(s, campaign_id=cid + 1) == {}


def test_live_counts_gives_the_nodes_and_the_campaign_in_one_query(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as s, s.begin():
        cid = _campaign(s)
        _attempt(s, cid, "a", 1)
        _attempt(s, cid, "b", 2, state="answered")
        _attempt(s, cid, "b", 3, state="ended")
        s.flush()
        assert live_counts(s, cid) == ({"a": 1, "b": 1}, 2)
        assert live_counts(s, cid + 1) == ({"a": 1, "b": 1}, 0)


def test_pacing_rows_lost_with_a_rolled_back_claim_are_created_again(
    sessions: sessionmaker[Session],
) -> None:
    """The rows are inserted once per engine, then only locked: when the transaction that
    created them rolls back, the next plan notices they are missing and creates them."""
    with sessions() as s:
        s.begin()
        cid = _campaign(s)
        s.commit()
        s.begin()
        assert plan_route(s, campaign_id=cid, campaign_cps=5.0, nodes=NODES, up={"a"})
        assert s.query(PacingSlot).count() == 3  # campaign, trunk t1, node a
        s.rollback()
        assert s.query(PacingSlot).count() == 0
    with sessions() as s, s.begin():
        planned = plan_route(s, campaign_id=cid, campaign_cps=5.0, nodes=NODES, up={"a"})
        assert planned is not None
        reserve(*planned)
    with sessions() as s:
        keys = sorted(row.key for row in s.query(PacingSlot))
    assert keys == [f"campaign:{cid}", "node:a", "trunk:a/t1"]


def test_each_limit_gets_its_own_interval(sessions: sessionmaker[Session]) -> None:
    """The campaign (2 cps) and trunk t1 (10 cps) slots: the campaign's interval rules."""
    nodes = (NODES[0],)
    with sessions() as s, s.begin():
        cid = _campaign(s)
        instants = []
        for _ in range(4):
            planned = plan_route(s, campaign_id=cid, campaign_cps=2.0, nodes=nodes, up={"a"})
            assert planned is not None
            route, moves = planned
            reserve(route, moves)
            instants.append(route.at)
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(instants)]
        assert gaps == pytest.approx([0.5, 0.5, 0.5])
        trunk = s.get(PacingSlot, "trunk:a/t1")
        assert trunk is not None and trunk.next_at == instants[-1] + timedelta(seconds=0.1)
        assert route.delay == pytest.approx(SEND_LEAD + 1.5, abs=0.05)


def test_the_trunk_interval_rules_when_it_is_the_slower(sessions: sessionmaker[Session]) -> None:
    nodes = (NodeSpec("a", None, (TrunkSpec("slow", None, 4.0),)),)
    with sessions() as s, s.begin():
        cid = _campaign(s)
        instants = []
        for _ in range(3):
            planned = plan_route(s, campaign_id=cid, campaign_cps=100.0, nodes=nodes, up={"a"})
            assert planned is not None
            reserve(*planned)
            instants.append(planned[0].at)
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(instants)]
        assert gaps == pytest.approx([0.25, 0.25])
        assert planned[0].delay == pytest.approx(SEND_LEAD + 0.5, abs=0.05)


def test_the_faster_free_trunk_wins(sessions: sessionmaker[Session]) -> None:
    """Two trunks: once the 1-cps trunk is reserved, the next call takes the other one."""
    nodes = (NodeSpec("a", None, (TrunkSpec("x", None, 1.0), TrunkSpec("y", None, 1.0))),)
    with sessions() as s, s.begin():
        cid = _campaign(s)
        trunks = []
        for _ in range(4):
            planned = plan_route(s, campaign_id=cid, campaign_cps=100.0, nodes=nodes, up={"a"})
            assert planned is not None
            reserve(*planned)
            trunks.append(planned[0].trunk)
        assert trunks == ["x", "y", "x", "y"]


def test_calls_alternate_between_idle_nodes(sessions: sessionmaker[Session]) -> None:
    """Each call ends before the next one starts (no live attempt anywhere): the nodes
    still take turns, the least recently used first."""
    nodes = (NodeSpec("a", 5), NodeSpec("b", 5))
    with sessions() as s, s.begin():
        cid = _campaign(s)
        used = []
        for _ in range(4):
            planned = plan_route(
                s, campaign_id=cid, campaign_cps=1000.0, nodes=nodes, up={"a", "b"}
            )
            assert planned is not None
            reserve(*planned)
            used.append(planned[0].node)
        assert used == ["a", "b", "a", "b"]
