"""The sweep dashboard spec, built and written offline, then read back: no network."""

import json

import pytest
import wandb_workspaces.workspaces as ws

from recipelab.results.dashboard import config_key, dashboard_spec, load_spec, publish

GROUP = "2025-01-02_03-04-05_ablate_optimizer"


@pytest.fixture
def no_login(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    empty = tmp_path / "netrc"
    empty.write_text("")
    monkeypatch.setenv("NETRC", str(empty))


def panels(view: dict) -> dict:
    """viewType -> config of every panel of every section."""
    sections = view["spec"]["section"]["panelBankConfig"]["sections"]
    return {p["viewType"]: p["config"] for s in sections for p in s["panels"]}


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_spec_written_offline_and_read_back(tmp_path, monkeypatch, no_login, mode):
    monkeypatch.setenv("WANDB_MODE", mode)  # online without a login writes the spec too
    spec = dashboard_spec("recipelab", GROUP, ["optimizer", "optimizer.lr", "seed"], entity="")
    message = publish(spec, tmp_path)
    path = tmp_path / "dashboard.json"
    assert str(path) in message and "WANDB_MODE=online make dashboard" in message and "wandb login" in message
    assert "\n" not in message

    view = json.loads(path.read_text())
    assert view["project"] == "recipelab"
    [runset] = view["spec"]["section"]["runSets"]
    assert runset["filters"]["filters"] == [
        {"key": {"section": "run", "name": "group"}, "op": "=", "value": GROUP, "disabled": False}
    ]
    # a config group is grouped by the option name it records in `choices`; seed is never a grouping key
    assert runset["grouping"] == [
        {"section": "config", "name": "choices.value.optimizer"},
        {"section": "config", "name": "optimizer.value.lr"},
    ]
    p = panels(view)
    assert p["Run History Line Plot"]["metrics"] == ["val/acc"]
    assert p["Run History Line Plot"]["xAxis"] == "epoch"
    assert p["Bar Chart"]["metrics"] == ["test/acc"]
    assert [c["accessor"] for c in p["Parallel Coordinates Plot"]["columns"]] == [
        "config:choices.value.optimizer",
        "config:optimizer.value.lr",
        "summary:test/acc",
    ]
    assert "Weave" in p and "Run Comparer" in p
    assert '"report"' in json.dumps(p["Weave"])  # the report table's name

    back = load_spec(path)
    assert [g.name for g in back.runset_settings.groupby] == ["choices.optimizer", "optimizer.lr"]
    assert GROUP in back.runset_settings.filters
    assert [s.name for s in back.sections] == [s.name for s in spec.sections]


def test_config_key_maps_groups_to_their_recorded_choice():
    assert config_key("optimizer") == "choices.optimizer"  # conf/optimizer/ is a config group
    assert config_key("optimizer.lr") == "optimizer.lr"
    assert config_key("trainer.max_epochs") == "trainer.max_epochs"
    assert config_key("channels_last") == "channels_last"


def test_publish_saves_where_logged_in(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_MODE", "online")
    saved = []
    monkeypatch.setattr(ws.Workspace, "save", lambda self: saved.append(self) or self)
    monkeypatch.setattr(ws.Workspace, "url", property(lambda self: f"https://wandb.test/{self.entity}"))
    spec = dashboard_spec("recipelab", GROUP, ["optimizer"], entity="me")
    assert publish(spec, tmp_path) == "https://wandb.test/me"
    assert saved == [spec]
    assert not (tmp_path / "dashboard.json").exists()
