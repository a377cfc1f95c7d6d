"""The benchmark runs end to end on a tiny size (its timings are measured, never asserted)."""

import json
import subprocess
import sys

import pytest

from recipelab.benchmark.plain import steady_rates
from tests.conftest import ROOT


def test_steady_rates_skip_warmup_and_epoch_boundaries():
    record = {  # seconds per step of each contender, pair by pair
        "plain_s": [9.0, 1.0, 1.0, 7.0, 2.0],
        "template_s": [9.0, 2.0, 2.0, 50.0, 4.0],
        "crosses_epoch": [False, False, False, True, False],  # the 4th template step ran a validation
    }
    # left: pairs 2, 3 and 5 (1 warm-up pair, the crossing pair out) → 3 steps of 4 images in 4 s and 8 s
    assert steady_rates(record, batch_size=4, warmup=1) == (3.0, 1.5)


def test_bench_writes_every_measure_and_keeps_the_races(tmp_path):
    out = tmp_path / "bench.json"
    race = {"fashion_fast": {"test_acc": {"mean": 0.94}}}
    out.write_text(json.dumps({"overhead": {"ratio": 0.5}, "race": race}))
    cmd = [
        sys.executable,
        "-m",
        "recipelab.bench",
        "--steps",
        "8",
        "--rounds",
        "1",
        "--warmup",
        "2",
        "--out",
        str(out),
        "data.train_size=1024",
        "data.val_size=500",
    ]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True, timeout=300)
    result = json.loads(out.read_text())
    assert result["race"] == race and result["overhead"]["ratio"] != 0.5
    for section, key in [("overhead", "ratio"), ("pipeline", "ratio"), ("startup", "to_first_step_s")]:
        assert result[section][key] > 0
    assert (
        result["overhead"]["ratio"]
        == result["overhead"]["template_img_s"] / result["overhead"]["plain_img_s"]
    )
    # the floor: each round's extra milliseconds a step recomputed from its two rates, the median taken
    for rounds, key in [(result["rounds"], "cnn"), (result["rounds_tiny"], "tiny")]:
        extra = [
            1000 * result["batch_size"] * (1 / r["template_img_s"] - 1 / r["plain_img_s"]) for r in rounds
        ]
        assert result["overhead_floor_ms"][key] == pytest.approx(sorted(extra)[len(extra) // 2])
    assert "model.hidden=[16]" in result["overhead_floor_ms"]["tiny_network"]
    floor, bare = result["overhead_floor_ms"], result["rounds_lightning"]
    assert len(bare) == 1 and floor["lightning"] == pytest.approx(
        1000 * result["batch_size"] * (1 / bare[0]["template_img_s"] - 1 / bare[0]["plain_img_s"])
    )
    assert floor["beyond_lightning"] == pytest.approx(floor["tiny"] - floor["lightning"])
    startup = result["startup"]
    launches = [r["startup_s"] for r in [*result["rounds"], *result["rounds_tiny"]]]
    assert len(launches) == 2 and startup["to_first_step_s"] == pytest.approx(sum(launches) / 2)
    assert 0 < startup["torch_lightning_import_s"] < startup["to_first_step_s"]
    assert startup["beyond_torch_lightning_s"] == pytest.approx(
        startup["to_first_step_s"] - startup["torch_lightning_import_s"]
    )


def _record(seed, acc, vals, step_s):
    history = [{"epoch": e, "val/acc": v, "time_s": step_s * (e + 1)} for e, v in enumerate(vals)]
    return {
        "seed": seed,
        "metrics": {"test/acc": acc},
        "train_time_s": step_s * len(vals),
        "history": history,
    }


def test_race_summary_is_the_distribution_and_the_mean_curve_crossing():
    from recipelab.benchmark.race import summarize

    records = [_record(1, 0.90, [0.92, 0.935, 0.95], 10.0), _record(2, 0.94, [0.90, 0.93, 0.93], 12.0)]
    result = summarize(records, targets=(0.93, 0.94), budget_s=35)
    assert result["test_acc"]["mean"] == pytest.approx(0.92)
    assert result["test_acc"]["std"] == pytest.approx(0.04 / 2**0.5)  # the sample std of two values
    assert result["test_acc"]["min"] == 0.90
    # mean val/acc by epoch: 0.91, 0.9325, 0.94 at mean times 11, 22, 33 s
    assert result["mean_val_acc_reaches"] == {
        "0.93": {"epoch": 2, "seconds": 22.0},
        "0.94": {"epoch": 3, "seconds": 33.0},
    }
    assert result["all_within_budget"] is False  # the second seed trained 36 s
    assert "compile_s" not in result
    records[1]["compile_s"] = 2.5  # compiled: the budget is held to the training seconds without compiling
    result = summarize(records, targets=(0.93, 0.94), budget_s=35)
    assert result["train_time_less_compile_s"]["each"] == [30.0, 33.5]
    assert result["all_within_budget"] is True


def test_bench_race_trains_the_seeds_and_keeps_the_other_figures(tmp_path):
    out = tmp_path / "bench.json"
    out.write_text(json.dumps({"overhead": {"ratio": 0.97}}))
    cmd = [
        sys.executable,
        "-m",
        "recipelab.bench",
        "--race",
        "--seeds",
        "2",
        "--out",
        str(out),
        f"paths.log_dir={tmp_path}",
        "trainer.max_epochs=2",
        "data.train_size=1000",
        "data.val_size=500",
        "logger=none",
    ]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True, timeout=300)
    result = json.loads(out.read_text())
    race = result["race"]["default"]
    assert result["overhead"] == {"ratio": 0.97} and race["seeds"] == [1, 2]
    accs = [json.loads(p.read_text())["metrics"]["test/acc"] for p in sorted(tmp_path.rglob("metrics.json"))]
    assert race["test_acc"]["each"] == accs and len(race["curve"]) == 2


def test_bench_fused_times_a_chunk_against_separate_jobs(tmp_path):
    """Both ways train the same seeds: in fp32 without dropout the same test accuracies come out."""
    out = tmp_path / "bench.json"
    out.write_text(json.dumps({"overhead": {"ratio": 0.97}}))
    recipe = ["trainer.precision=32-true", "model=mlp", "data.train_size=600", "data.val_size=200"]
    cmd = [
        sys.executable,
        "-m",
        "recipelab.bench",
        "--fused",
        "2",
        "--epochs",
        "1",
        "--out",
        str(out),
        *recipe,
    ]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True, timeout=300)
    result = json.loads(out.read_text())
    fused = result["fused_seeds"]
    assert result["overhead"] == {"ratio": 0.97} and (fused["seeds"], fused["epochs"]) == (2, 1)
    assert fused["fused"]["test_acc"] == pytest.approx(fused["separate"]["test_acc"], abs=1e-3)
    assert fused["wall_ratio"] == pytest.approx(
        fused["fused"]["wall_s"] / fused["separate"]["wall_s"], abs=0.01
    )
    separate = fused["separate"]
    assert fused["bound_wall_ratio_same_training"] == pytest.approx(
        separate["train_s"] / separate["wall_s"], abs=0.01
    )
    assert 0 < fused["bound_wall_ratio_same_training"] < 1


def test_bare_lightning_loop_takes_the_plain_loops_steps(tmp_path):
    """The floor's reference (Lightning's loop alone) trains what the plain loop trains, step for step:
    in fp32 both end at the same weights, so their time difference is the loop's and nothing else."""
    import torch

    from recipelab.benchmark.bare import BareModule, bare_trainer
    from recipelab.benchmark.plain import PlainLoop
    from recipelab.benchmark.runs import compose_cfg
    from recipelab.build import build_datamodule

    cfg = compose_cfg(["trainer=cpu", "model=mlp", "data.train_size=1024", "data.val_size=200"])
    data = build_datamodule(cfg)
    data.prepare_data()
    data.setup("fit")
    plain = PlainLoop(cfg, *data.splits["train"], data.batch_size, data.stats)
    for _ in range(3):
        plain.step()
    bare = BareModule(cfg, data)
    bare_trainer(max_epochs=1, limit_train_batches=3, default_root_dir=tmp_path).fit(bare)
    moved = bare.model.state_dict()
    assert plain.sched.get_last_lr() == bare.lr_schedulers().get_last_lr()
    for name, weight in plain.model.state_dict().items():
        assert torch.equal(weight, moved[name]), name
    first = BareModule(cfg, data).model.state_dict()  # the steps moved the weights
    assert not all(torch.equal(first[name], moved[name]) for name in first)
