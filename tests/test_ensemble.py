"""Checkpoint ensembles: members from a seed sweep, combination, weight averaging and safe loading."""

import json
import math
import subprocess
import sys

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from recipelab.data.fashion_mnist import load
from recipelab.errors import UserError
from recipelab.records.wandb_file import read_run, run_files
from recipelab.results.checkpoint import load_checkpoint, load_member
from recipelab.results.ensemble import average_weights, member_recipes, resolve_source
from recipelab.results.ensemble_output import mixed_recipes
from tests.conftest import ROOT, printed_numbers, standardize, train_cli


def ensemble_cli(*overrides):
    cmd = [sys.executable, "-m", "recipelab.ensemble", *overrides]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def seed_sweep(tmp_path_factory):
    run = train_cli(
        tmp_path_factory.mktemp("seeds"), "-m", "seed=1,2,3", "data.train_size=600", "data.val_size=300"
    )
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    (sweep,) = {d.parent for d in run.run_dirs}
    return sweep


def member_probs(path):
    """A member's test-set probabilities, computed on its own (no ensemble code)."""
    member = load_member(path)
    data = load()
    images, labels = data.test_images, data.test_labels
    with torch.no_grad():
        x = standardize(images)
        probs = member.model(x).softmax(-1)
        if member.config.tta_flip:
            probs = (probs + member.model(x.flip(-1)).softmax(-1)) / 2
    return probs, labels


def test_seed_sweep_gives_one_member_per_job(seed_sweep):
    members, out = resolve_source(str(seed_sweep))
    assert out == seed_sweep and len(members) == 3
    assert {json.loads((m.parent.parent / "metrics.json").read_text())["seed"] for m in members} == {1, 2, 3}


def test_ensemble_is_the_mean_of_member_probabilities(seed_sweep):
    proc = ensemble_cli(f"source={seed_sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((seed_sweep / "ensemble.json").read_text())
    assert result["n_members"] == 3 and (seed_sweep / "ensemble.md").is_file()
    # one recipe: the jobs' overrides without their seeds, and no line about mixed recipes
    job_overrides = yaml.safe_load((seed_sweep / "0" / ".hydra" / "overrides.yaml").read_text())
    assert result["recipes"] == [
        {"overrides": [o for o in job_overrides if not o.startswith("seed=")], "members": 3}
    ]
    assert "recipes" not in (seed_sweep / "ensemble.md").read_text()
    probs = [member_probs(m["checkpoint"]) for m in result["members"]]
    labels = probs[0][1]
    mean = torch.stack([p for p, _ in probs]).mean(0)
    acc = (mean.argmax(-1) == labels).float().mean().item()
    nll = torch.nn.functional.nll_loss(mean.log(), labels).item()
    assert result["ensemble"]["acc"] == pytest.approx(acc, abs=1e-6)
    assert result["ensemble"]["nll"] == pytest.approx(nll, abs=1e-5)
    accs = [(p.argmax(-1) == labels).float().mean().item() for p, _ in probs]
    assert [m["acc"] for m in result["members"]] == pytest.approx(accs, abs=1e-6)
    assert result["gain_over_best_member"] == pytest.approx(acc - max(accs), abs=1e-6)
    assert result["acc_by_members"][-1] == pytest.approx(acc, abs=1e-6)
    preds = [p.argmax(-1) for p, _ in probs]
    pairs = [(0, 1), (0, 2), (1, 2)]
    disagreement = sum((preds[i] != preds[j]).float().mean().item() for i, j in pairs) / 3
    assert result["disagreement"] == pytest.approx(disagreement, abs=1e-6)
    # one W&B run, job_type=ensemble, in the sweep's group
    (wandb_file,) = run_files(seed_sweep)
    run = read_run(wandb_file)
    train_group = json.loads((seed_sweep / "0" / "metrics.json").read_text())["group"]
    assert run.job_type == "ensemble" and run.group == train_group
    assert run.summary["ensemble/acc"] == pytest.approx(acc, abs=1e-6)
    # it ends with the numbers of ensemble.json and the files it wrote
    found, scaled, wrote = proc.stdout.splitlines()[-3:]
    e = result["ensemble"]
    assert found.startswith("ensemble of 3 members (mean): test acc ")
    scores = {"acc": e["acc"], "NLL": e["nll"], "ECE": e["ece"], "Brier": e["brier"]}
    assert printed_numbers(found) == pytest.approx(scores, abs=5e-5)
    gain = float(found.split("; ")[1].removesuffix(" acc over the best member"))
    assert gain == pytest.approx(result["gain_over_best_member"], abs=5e-5)
    ts = {k: e[f"ts/{k.lower()}"] for k in ("acc", "NLL", "ECE", "Brier")}
    assert printed_numbers(scaled) == pytest.approx({"T": e["temperature"], **ts}, abs=5e-5)
    assert wrote == f"wrote ensemble.json, ensemble.md, ensemble_curve.png in {seed_sweep}"


def test_weight_averaging_averages_the_weights(seed_sweep):
    members = [load_member(p) for p in resolve_source(str(seed_sweep))[0]]
    averaged = average_weights(members, torch.device("cpu"))
    for name, param in averaged.named_parameters():
        expected = torch.stack([dict(m.model.named_parameters())[name] for m in members]).mean(0)
        assert torch.allclose(param, expected, atol=1e-7), name
    # batch-norm statistics are recomputed on the training data, not averaged
    bn = "features.0.0.1"
    dm_train = load().train_images[:1000]
    with torch.no_grad():
        first_conv = averaged.features[0][0][0](standardize(dm_train))
    running = dict(averaged.named_buffers())[f"{bn}.running_mean"]
    mean_of_members = torch.stack(
        [dict(m.model.named_buffers())[f"{bn}.running_mean"] for m in members]
    ).mean(0)
    assert not torch.allclose(running, mean_of_members, atol=1e-4)
    assert torch.allclose(running, first_conv.mean((0, 2, 3)), atol=0.05)


def test_members_of_several_recipes_are_counted_and_said(tmp_path):
    """An ensemble over a sweep of two arms mixes them: each recipe (overrides, seed and fold aside) is
    counted in the members' order, a checkpoint outside a run folder apart, and the markdown says so."""
    jobs = [["optimizer=sgd", "seed=1"], ["seed=2", "optimizer=sgd"], ["optimizer=adam", "data.fold=1"]]
    paths = []
    for job, overrides in enumerate(jobs):
        (tmp_path / str(job) / ".hydra").mkdir(parents=True)
        (tmp_path / str(job) / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        paths.append(tmp_path / str(job) / "checkpoints" / "best.ckpt")
    recipes = member_recipes([*paths, tmp_path / "elsewhere.ckpt"])
    assert recipes == [
        {"overrides": ["optimizer=sgd"], "members": 2},
        {"overrides": ["optimizer=adam"], "members": 1},
        {"overrides": None, "members": 1},
    ]
    (line,) = mixed_recipes(recipes)
    assert "3 recipes" in line and "`optimizer=sgd` (2), `optimizer=adam` (1)" in line
    assert "outside a run folder` (1)" in line
    assert mixed_recipes(recipes[:1]) == []


@pytest.fixture(scope="module")
def other_architecture(seed_sweep, tmp_path_factory):
    """A checkpoint of a narrower network, with its own config."""
    from recipelab.build import build_model

    config = OmegaConf.to_container(load_member(resolve_source(str(seed_sweep))[0][0]).config)
    config["model"]["widths"] = [8, 16, 32]
    other = build_model(OmegaConf.create(config))
    path = tmp_path_factory.mktemp("other") / "other.ckpt"
    state = {f"model.{k}": v for k, v in other.state_dict().items()}
    torch.save({"hyper_parameters": {"config": config}, "state_dict": state}, path)
    return path


def test_other_architectures_combine_by_probabilities_not_weights(seed_sweep, other_architecture):
    from recipelab.results.ensemble import evaluate

    first = resolve_source(str(seed_sweep))[0][0]
    cfg = OmegaConf.create(
        {
            "source": [str(first), str(other_architecture)],
            "combine": "mean",
            "tta_flip": False,
            "batch_size": 2000,
            "device": "cpu",
        }
    )
    result = evaluate(cfg)
    assert result["n_members"] == 2 and 0 <= result["ensemble"]["acc"] <= 1
    cfg.combine = "weights"
    with pytest.raises(UserError, match="another architecture"):
        evaluate(cfg)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # would create the marker file if it ran


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker, evil = tmp_path / "pwned", tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": _Payload(marker)}, evil)
    with pytest.raises(UserError, match=r"evil\.ckpt: refused, loading it would run code \(io\.open\)$"):
        load_checkpoint(evil)
    assert not marker.exists()
    proc = ensemble_cli(f"source=[{evil}]", "log_wandb=false")
    assert proc.returncode == 2 and not marker.exists()
    assert (
        proc.stderr.strip().splitlines()[-1].startswith("error: checkpoint")
        and "would run code" in proc.stderr
    )


def test_corrupt_checkpoint_is_named(seed_sweep, tmp_path):
    good = resolve_source(str(seed_sweep))[0][0]
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(UserError, match=r"broken\.ckpt: corrupt or truncated"):
        load_checkpoint(broken)
    json = tmp_path / "metrics.json"  # not a checkpoint: named so, not as a file that would run code
    json.write_text('{"status": "completed"}')
    with pytest.raises(
        UserError, match=r"metrics\.json: corrupt or not a checkpoint \(Unsupported operand 123\)$"
    ):
        load_checkpoint(json)


def test_snapshot_training_keeps_one_checkpoint_per_cycle_at_its_lowest_rate(tmp_path):
    cycles, steps_per_epoch = 3, 4
    run = train_cli(
        tmp_path,
        "experiment=snapshot_ensemble",
        "data.train_size=400",
        "data.batch_size=100",
        "scheduler.build.cycle_epochs=1",
        f"trainer.max_epochs={cycles}",
        "trainer.log_every_n_steps=1",
    )
    assert run.proc.returncode == 0, run.proc.stderr[-3000:]
    snapshots = sorted((run.run_dir / "checkpoints" / "members").glob("*.ckpt"))
    assert len(snapshots) == cycles
    steps = [load_checkpoint(p)["global_step"] for p in snapshots]
    assert steps == [steps_per_epoch * (c + 1) for c in range(cycles)]
    history = read_run(run_files(run.run_dir)[0]).history
    lr = {h["trainer/global_step"]: h["lr/decay"] for h in history if "lr/decay" in h}  # each step's rate
    peak = 0.1  # the default optimizer's lr; cosine to eta_min=0 over each 4-step cycle
    for c in range(cycles):
        cycle = [lr[c * steps_per_epoch + t] for t in range(steps_per_epoch)]
        expected = [peak * (1 + math.cos(math.pi * t / steps_per_epoch)) / 2 for t in range(steps_per_epoch)]
        assert cycle == pytest.approx(expected, rel=1e-6)
        assert cycle[-1] == min(cycle)  # the snapshot follows the cycle's lowest rate
