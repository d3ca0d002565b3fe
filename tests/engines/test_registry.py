"""Choosing an engine: by name, with one clear error for a wrong name or address."""

from __future__ import annotations

import pytest

from triage.cli import main
from triage.engines import create_engine
from triage.engines.local import LocalEngine
from triage.errors import ConfigError


def test_local_is_the_default_engine():
    engine = create_engine(workers=3)
    assert isinstance(engine, LocalEngine) and engine.workers == 3
    assert engine.describe() == {"engine": "local", "workers": 3}


def test_an_unknown_engine_lists_the_choices():
    with pytest.raises(ConfigError, match=r"Unknown engine 'rya'; choose one of local, ray\. "
                                          r"Did you mean 'ray'\?"):
        create_engine("rya")


def test_a_ray_address_needs_the_ray_engine():
    with pytest.raises(ConfigError, match="--ray-address auto needs --engine ray"):
        create_engine("local", ray_address="auto")


@pytest.mark.parametrize("address", ["http://head:8265", "ray://head", "head node:6379"])
def test_a_bad_ray_address_is_refused_before_connecting(address):
    pytest.importorskip("ray")
    with pytest.raises(ConfigError, match="is not a Ray cluster address"):
        create_engine("ray", ray_address=address)


@pytest.mark.parametrize("address", ["auto", "ray://head:10001", "10.0.0.1:6379"])
def test_good_ray_addresses_are_kept(address):
    pytest.importorskip("ray")
    assert create_engine("ray", ray_address=address).address == address


@pytest.mark.parametrize("command", ["ingest", "run"])
def test_the_cli_refuses_an_unknown_engine_in_one_line(command, tmp_path, capsys):
    extra = ["--model", str(tmp_path / "no-model")] if command == "run" else []
    code = main([command, str(tmp_path), "--out", str(tmp_path / "out"), *extra,
                 "--engine", "spark"])
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Unknown engine 'spark'" in err
    assert not (tmp_path / "out").exists()
