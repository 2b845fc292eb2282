"""A configuration's typos are errors naming them with the closest known name; the known
names come from the code that reads them (analytics.options)."""
from __future__ import annotations

from typing import Any, ClassVar

import pytest

from analytics.cli import main
from analytics.component import Bolt
from analytics.config import ConfigError, load_settings
from analytics.options import component_options, table_keys

pytestmark = pytest.mark.timeout(30)


def load(tmp_path, text: str):
    cfg = tmp_path / "a.toml"
    cfg.write_text(text)
    return load_settings(cfg, env={})


@pytest.mark.parametrize("text, message", [
    ('[analytcs]\nstore = "sqlite:///x.db"\n', "unknown table [analytcs] (did you mean [analytics]?)"),
    ("[components.loginhour]\nflush_evry = 3\n",
     "[components.loginhour]: unknown option 'flush_evry' (did you mean 'flush_every'?)"),
    ('[sources.payment]\nfile = ["x"]\n', "[sources.payment]: unknown option 'file' (did you mean 'files'?)"),
    ("[sources.gamelgo]\n", "unknown source [sources.gamelgo] (did you mean 'gamelog'?)"),
    ("[components.loginhours]\n", "unknown component [components.loginhours] (did you mean 'loginhour'?)"),
    ("[service]\nstart_timout = 3\n", "[service]: unknown key 'start_timout' (did you mean 'start_timeout'?)"),
    ("[cluster]\nlease_tll = 3\n", "[cluster]: unknown key 'lease_tll' (did you mean 'lease_ttl'?)"),
    ("[http]\nprot = 1\n", "[http]: unknown key 'prot' (did you mean 'port'?)"),
    ("[broker]\nbatchsize = 1\n", "[broker]: unknown setting 'batchsize' (did you mean 'batch_size'?)"),
    ('[games.dl]\nzone = "UTC"\n', "[games.dl]: unknown setting 'zone'"),
])
def test_unknown_tables_and_keys_are_named_with_the_closest_known_name(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    assert message in str(err.value)


def test_every_mistake_is_named_on_one_line_and_the_cli_exits_2(tmp_path, capsys):
    cfg = tmp_path / "a.toml"
    cfg.write_text('[analytcs]\n[components.loginhour]\nflush_evry = 3\n[sources.payment]\nfile = ["x"]\n')
    assert main(["query", "loginday", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "[analytcs]" in err and "flush_evry" in err and "file" in err, err


def test_known_options_are_what_the_components_read():
    from spouts.gamelog import GamelogSpout
    assert {"flush_every", "flush_seconds", "tick_seconds", "instances"} <= component_options(Bolt)
    assert {"game", "files", "http", "follow", "poll_seconds", "pack_users"} <= component_options(GamelogSpout)
    assert {"lease_ttl", "discover", "discover_timeout", "assign_timeout"} <= table_keys("cluster")
    assert {"host", "port"} <= table_keys("http")


def test_a_new_option_is_known_once_a_component_reads_it_or_declares_it():
    class Checkpointing(Bolt):
        #: An option read in a helper, declared on the class.
        config_options: ClassVar[tuple[str, ...]] = ("checkpoint_timeout",)

        def __init__(self, ctx: Any, name: str | None = None, **options: Any) -> None:
            super().__init__(ctx, name, **options)
            self.every = float(self.option("checkpoint_seconds", 5.0))
    known = component_options(Checkpointing)
    assert {"checkpoint_seconds", "checkpoint_timeout", "flush_every"} <= known
    assert "checkpoint_seconds" not in component_options(Bolt)
