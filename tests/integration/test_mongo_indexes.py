"""Indexes and query plans on SecantusDB (MongoDB wire protocol), or on $ANALYTICS_TEST_MONGO_URL.

After a replay of the data/ samples, every collection has the indexes docs/collections.md
promises, and every query the dashboard and the read API send (captured off the wire
while they run, then put to `explain`) is answered from an index: IXSCAN, never COLLSCAN.
SecantusDB's explain has mongod's shape (queryPlanner.winningPlan with stage/inputStage);
unlike mongod it puts an in-memory SORT above an index scan even where the index order
already gives the sort, so the check here is on the scan, not on the absence of SORT.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pymongo
import pytest
from falcon import testing
from pymongo import monitoring

from analytics.config import GameSettings, load_settings
from analytics.sample import DEFAULT_GAMES
from analytics.schema import all_collections
from analytics.store.base import FIRST_DAYS
from analytics.store.mongo import MongoStore
from analytics.web.app import create_app
from tests.integration.test_split_replay import SOURCES, _replay
from tests.mongo_server import drop_database, mongo_database_url

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

KEY_FIELDS = ("game", "area", "plat", "ts")
DL_AREA = "549140c8dbdb67794fc0fa3b"


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """A database holding the sample replay: (settings, database URL)."""
    url = mongo_database_url()
    settings = load_settings(env={}, data_dir=str(tmp_path_factory.mktemp("idx") / "data"), store=url)
    settings.games = {g: GameSettings(g, tz) for g, tz in DEFAULT_GAMES.items()}
    try:
        _replay(settings, SOURCES)
        yield settings, url
    finally:
        drop_database(url)


def _db(url: str, **client_options) -> tuple[pymongo.MongoClient, str]:
    parts = urlsplit(url)
    return pymongo.MongoClient(url, serverSelectionTimeoutMS=3000, **client_options), parts.path.lstrip("/")


def test_every_collection_has_the_documented_indexes(replayed):
    _, url = replayed
    client, name = _db(url)
    with client:
        db = client[name]
        for coll, info in all_collections().items():
            if coll in FIRST_DAYS:
                continue                # derived from the day bitmaps by the store: never written
            indexes = {tuple(f for f, _ in ix["key"]): ix for ix in db[coll].index_information().values()}
            assert indexes, f"{coll}: no indexes (did the replay write it?)"
            # the unique key index: game, area, plat, ts (those in the key), then the rest of the key
            head = tuple(f for f in KEY_FIELDS if f in info.key)
            key_ix = [k for k, ix in indexes.items() if ix.get("unique") and set(k) == set(info.key)]
            assert key_ix and key_ix[0][:len(head)] == head, f"{coll}: no unique key index in {list(indexes)}"
            # (game, area, plat, ts): the key index itself where it begins so, else an index of its own
            assert any(k[:4] == KEY_FIELDS for k in indexes), f"{coll}: nothing serves game/area/plat/ts"
            for query_ix in (("ts",), ("game", "ts"), ("game", "area", "ts")):
                assert query_ix in indexes, f"{coll}: no {query_ix} index in {list(indexes)}"
        bitmaps = {tuple(f for f, _ in ix["key"]): ix for ix in db.bitmaps.index_information().values()}
        assert bitmaps[("set", "game", "area", "plat", "ts", "sub", "part")].get("unique")
        assert ("set", "ts") in bitmaps
        uid_map = {tuple(f for f, _ in ix["key"]): ix for ix in db.uid_map.index_information().values()}
        assert uid_map[("game", "uid")].get("unique") and uid_map[("game", "n")].get("unique")
        seen = {tuple(f for f, _ in ix["key"]): ix for ix in db.seen.index_information().values()}
        assert seen[("scope", "id")].get("unique")
        assert seen[("seen_at",)].get("expireAfterSeconds", 0) > 0


class _Finds(monitoring.CommandListener):
    """Every find command a client sends: (collection, filter, sort)."""

    def __init__(self) -> None:
        self.finds: list[tuple[str, dict, dict | None]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            c = event.command
            self.finds.append((c["find"], dict(c.get("filter", {})), c.get("sort")))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _scans(plan: dict) -> list[str]:
    """The leaf stages of a winning plan (IXSCAN, COLLSCAN, ...), through inputStage(s)."""
    children = [plan["inputStage"]] if "inputStage" in plan else plan.get("inputStages", [])
    return [s for c in children for s in _scans(c)] if children else [plan["stage"]]


def _dashboard_and_api_requests(client: testing.TestClient) -> None:
    """What the dashboard page asks for one game (all areas, then one area) and the CRM endpoints."""
    days = {"from": "2015-01-01", "to": "2015-01-31"}
    wide = {"from": "2014-12-01", "to": "2015-01-31"}
    assert client.simulate_get("/api/v1/games").status_code == 200
    for base in ({"game": "dl"}, {"game": "dl", "area": DL_AREA}):
        for coll, rng in (("activeday", days), ("activeweek", wide), ("activemonth", wide), ("signupday", days),
                          ("createroleday", days), ("payorderuser", days), ("coinday", days), ("cointype", days),
                          ("userlevel", {}), ("loginretention", days)):
            r = client.simulate_get(f"/api/v1/stats/{coll}", params={**base, **rng})
            assert r.status_code == 200, r.text
    r = client.simulate_get("/api/v1/stats/loginday", params={"game": "dl", "area": DL_AREA, "plat": "2001",
                                                               **days, "userlist": "1"})
    assert r.status_code == 200 and r.json["count"] > 0, r.text
    assert client.simulate_get("/api/v1/stats/server", params=days).status_code == 200   # all servers of days
    assert client.simulate_get("/api/v1/crm/user-stat/total-user", params={"game": "dl"}).json["total_user"] > 0
    r = client.simulate_get("/api/v1/crm/daily-stat/active-user", params={"date": "2015-01-08", "game": "dl"})
    assert r.status_code == 200 and r.json["distinct_user"] > 0, r.text


def test_the_dashboard_and_api_queries_are_answered_from_indexes(replayed):
    settings, url = replayed
    finds = _Finds()
    client, name = _db(url, event_listeners=[finds])
    store = MongoStore(client, name, url=url)
    try:
        _dashboard_and_api_requests(testing.TestClient(create_app(settings, store)))
        checked, plans = 0, []
        for coll, flt, sort in finds.finds:
            if not flt:                      # the games list reads every serverstarttime document
                assert coll == "serverstarttime", (coll, sort)
                continue
            if coll in FIRST_DAYS:
                # Derived from the day bitmaps; the store also reads documents an older version
                # wrote there, and this store has none: the collection does not exist.
                assert coll not in client[name].list_collection_names(), coll
                continue
            cmd = {"find": coll, "filter": flt, **({"sort": sort} if sort else {})}
            plan = client[name].command("explain", cmd, verbosity="queryPlanner")["queryPlanner"]["winningPlan"]
            scans = _scans(plan)
            plans.append((coll, sorted(flt), scans))
            assert "COLLSCAN" not in scans and "IXSCAN" in scans, (coll, flt, sort, plan)
            checked += 1
    finally:
        store.close()
    touched = {c for c, _, _ in plans}
    assert checked >= 25 and {"activeday", "loginday", "bitmaps", "server"} <= touched, plans
    print(f"{checked} queries over {len(touched)} collections, every one an index scan")
