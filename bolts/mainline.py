"""The mainline bolt: main-line (trunk) tasks accepted and finished per server, day and task.

Input ``gamelog.trunk_task_accept`` and ``gamelog.trunk_task_finish``: data has
task_id and task_name. accepted/finished are distinct users (sets
'task_accept_day' / 'task_finish_day' with sub = task id), so replays and
duplicates change nothing: no dedupe needed.
"""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple

from analytics.aggregate import Keyed
from analytics.component import Bolt, Context
from analytics.periods import day_start
from analytics.schema import Collection
from analytics.store.base import Batch, MemberKey
from analytics.tuples import Tuple
from bolts.common import ServerKey, gamelog_event, need_str

__all__ = ["SET_OF_CODE", "TaskEvent", "parse_task", "TaskUsers", "MainlineBolt", "COLLECTIONS"]


# -- pure aggregation --------------------------------------------------------------------

#: op code -> (membership set, mainline field).
SET_OF_CODE = {"trunk_task_accept": ("task_accept_day", "accepted"),
               "trunk_task_finish": ("task_finish_day", "finished")}


class TaskEvent(NamedTuple):
    server: ServerKey
    uid: str
    ts: int
    task: str
    task_name: str
    code: str


def parse_task(body: Mapping[str, Any]) -> TaskEvent:
    ev = gamelog_event(body)
    code = need_str(body, "code")
    if code not in SET_OF_CODE:
        raise ValueError(f"body.code must be one of {sorted(SET_OF_CODE)}, got {code!r}")
    name = ev.data.get("task_name")
    return TaskEvent(ev.server, ev.uid, ev.ts, need_str(ev.data, "task_id", "body.data"),
                     name if isinstance(name, str) else "", code)


class TaskUsers(Keyed[tuple[str, str, str, int, str, str], set[str]]):
    """Users per (game, area, plat, day, task, code) and task names, since the last take."""

    def __init__(self) -> None:
        super().__init__(set)
        self._names: dict[tuple[str, str, str, int, str], str] = {}

    def add(self, e: TaskEvent, tz: str) -> None:
        doc = (*e.server, day_start(e.ts, tz), e.task)
        self.slot((*doc, e.code)).add(e.uid)
        if e.task_name or doc not in self._names:
            self._names[doc] = e.task_name

    def take(self) -> tuple[dict[tuple[str, str, str, int, str], str],  # type: ignore[override]
                            dict[tuple[str, str, str, int, str, str], set[str]]]:
        """(task names per document, users per document and code) since the last take."""
        names, self._names = self._names, {}
        return names, super().take()


COLLECTIONS = [
    Collection("mainline", ("game", "area", "plat", "ts", "task"), {
        "ts": "start of the day in the game's zone",
        "task": "main-line task id (data.task_id)",
        "task_name": "task name (latest seen)",
        "accepted": "distinct users who accepted the task that day (size of set 'task_accept_day', sub = task)",
        "finished": "distinct users who finished the task that day (size of set 'task_finish_day', sub = task)",
    }, userlist_set="task_finish_day", userlist_sub="task",
        doc="one main-line task's progress on one server on one day (userlist: who finished it)",
        writer="mainline"),
]


# -- bolt --------------------------------------------------------------------------------

class MainlineBolt(Bolt):
    name = "mainline"
    topics = ["gamelog.trunk_task_accept", "gamelog.trunk_task_finish"]

    def __init__(self, ctx: Context, name: str | None = None, **options: Any) -> None:
        super().__init__(ctx, name, **options)
        self.tasks = TaskUsers()

    def process(self, tup: Tuple) -> None:
        e = parse_task(tup.body)
        self.tasks.add(e, self.settings.tz_of(e.server.game))

    def flush(self, batch: Batch) -> None:
        names, users = self.tasks.take()
        for (game, area, plat, ts, task), name in sorted(names.items()):
            key = {"game": game, "area": area, "plat": plat, "ts": ts, "task": task}
            batch.upsert("mainline", key, set={"task_name": name} if name else None,
                         set_on_insert={"accepted": 0, "finished": 0})
            for code, (member_set, fld) in SET_OF_CODE.items():
                uids = users.get((game, area, plat, ts, task, code))
                if uids:
                    batch.add_members(MemberKey(member_set, game, area, plat, ts, task), uids,
                                      count_into=("mainline", key, fld))
