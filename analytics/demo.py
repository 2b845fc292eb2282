"""`analytics demo`: replay the sample logs through the whole topology and print the stats."""
from __future__ import annotations

import re
import sys
import tomllib
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from analytics.app import replay, source_spec
from analytics.config import GameSettings, Settings, redact
from analytics.periods import zone
from analytics.store import open_store

__all__ = ["run_demo", "sample_sources", "print_summary"]

_GAMELOG = re.compile(r"gamelog_(?P<game>[A-Za-z0-9-]+)_sample\.txt$")


def sample_sources(settings: Settings, data_dir: str | Path) -> list[Any]:
    """One finite spout per sample file; the games' zones come from samples.toml unless configured."""
    data_dir = Path(data_dir)
    manifest = data_dir / "samples.toml"
    if manifest.is_file():
        for name, g in tomllib.loads(manifest.read_text()).get("games", {}).items():
            settings.games.setdefault(name, GameSettings(name, g.get("tz", settings.default_tz)))
    specs = []
    for path in sorted(data_dir.glob("gamelog_*_sample.txt")):
        game = _GAMELOG.search(path.name).group("game")
        spec = source_spec(settings, "gamelog", [str(path)], game)
        spec.name = f"replay_gamelog_{game}"
        specs.append(spec)
    for source in ("payment", "syncuser"):
        path = data_dir / f"{source}_sample.txt"
        if path.is_file():
            specs.append(source_spec(settings, source, [str(path)], None))
    if not specs:
        raise FileNotFoundError(f"no sample logs (*_sample.txt) in {data_dir}")
    return specs


def run_demo(settings: Settings, data_dir: str | Path = "data", out: TextIO = sys.stdout) -> int:
    """Replay the samples into a fresh store (unless one was given) and print a summary."""
    if settings.store == f"sqlite:///{settings.data_path('analytics.db')}":  # the default: keep the demo apart
        path = settings.data_path("demo.db")
        path.parent.mkdir(parents=True, exist_ok=True)
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)
        settings.store = f"sqlite:///{path}"
    specs = sample_sources(settings, data_dir)
    report = replay(settings, specs)
    problems = report.problems()
    t = report.totals()
    print(f"Replayed {t['read']} sample records through {len(report.bolts)} bolts in {report.seconds:.1f}s: "
          f"{t['accepted']} accepted, {t['rejected']} rejected (see {settings.data_dir}/deadletter/), "
          f"{t['ignored']} ignored, {t['deduplicated']} duplicates dropped.", file=out)
    for p in problems:
        print(f"PROBLEM: {p}", file=out)
    with open_store(settings.store) as store:
        print_summary(store, settings, out)
    store_url = redact(settings.store)
    print(f"\nStore: {store_url}   (try: analytics query loginday --store {store_url} --json)", file=out)
    return 1 if problems else 0


def _day(ts: int, tz: str) -> str:
    return datetime.fromtimestamp(ts, zone(tz)).strftime("%Y-%m-%d")


def _table(rows: list[list[Any]], head: list[str], out: TextIO) -> None:
    cells = [head] + [[f"{c:,.2f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    for n, r in enumerate(cells):
        print("  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))), file=out)
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths), file=out)


def print_summary(store: Any, settings: Settings, out: TextIO = sys.stdout) -> None:
    """Per game: a daily table (actives, new/old, sign-ups, roles, payers, revenue, D1 retention),
    then levels, currency and shop."""
    by_game: dict[str, list[dict]] = defaultdict(list)
    for d in store.find("server"):
        by_game[d["game"]].append(d)
    # servers by the name their logs give them (server_name_at: '<ts>\t<name>'), else the id's end
    names = {(d["game"], d["area"]): str(d.get("server_name_at") or "").partition("\t")[2]
             for d in store.find("serverstarttime")}
    for game in sorted(by_game):
        tz = settings.tz_of(game)
        print(f"\n== {game} (days in {tz}) ==", file=out)
        active = {(d["area"], d["plat"], d["ts"]): d for d in store.find("activeday", {"game": game})}
        ret = {(d["area"], d["plat"], d["ts"]): d for d in store.find("loginretention", {"game": game})}
        rows = []
        # D1 retention of the game's last day is not known yet (nobody could come back the next day)
        last_day = max(d["ts"] for d in by_game[game])
        for d in sorted(by_game[game], key=lambda d: (d["area"], d["plat"], d["ts"])):
            a = active.get((d["area"], d["plat"], d["ts"]), {})
            r = ret.get((d["area"], d["plat"], d["ts"]), {})
            rows.append([_day(d["ts"], tz), names.get((game, d["area"])) or d["area"][-6:], d["plat"], d.get("active", 0), a.get("new_ac_user", 0),
                         a.get("old_ac_user", 0), d.get("reg", 0), d.get("create_role", 0), d.get("pay_user", 0),
                         float(d.get("pay_amount", 0)),
                         f"{r['d1_rate']:.1f}%" if r.get("cohort") and d["ts"] < last_day else "-"])
        _table(rows, ["day", "server", "plat", "active", "new", "old", "sign-ups", "roles", "payers", "revenue",
                      "D1 ret."], out)
        levels: dict[int, int] = defaultdict(int)
        for d in store.find("userlevel", {"game": game}):
            levels[int(d["grade"])] += int(d.get("count", 0))
        if levels:
            print("  levels: " + ", ".join(f"L{g}: {n}" for g, n in sorted(levels.items()) if n), file=out)
        coin = store.find("coinday", {"game": game})
        if coin:
            print(f"  yuanbao consumed {sum(d.get('consumed', 0) for d in coin):,}, "
                  f"gained {sum(d.get('gained', 0) for d in coin):,}", file=out)
        items: dict[str, list] = defaultdict(lambda: [0, 0])
        for d in store.find("shop", {"game": game}):
            items[d.get("item_name") or d["item"]][0] += d.get("count", 0)
            items[d.get("item_name") or d["item"]][1] += d.get("cost", 0)
        if items:
            top = sorted(items.items(), key=lambda kv: -kv[1][1])[:3]
            print("  top items: " + ", ".join(f"{k} x{n} ({c:,} yuanbao)" for k, (n, c) in top), file=out)
