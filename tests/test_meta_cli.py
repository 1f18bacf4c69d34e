"""The `jaxrl meta` commands end to end on tiny budgets: every output file, resume equality (candidates and their
validation included), same key same result, saved objectives that reload to the same drift, configs that `jaxrl
train` accepts, PPO-clip scoring exactly 1 against itself in `meta evaluate`, one-line errors."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from jaxrl import objectives
from jaxrl.checkpoints import restore_tree
from jaxrl.cli import main
from jaxrl.meta import baselines
from jaxrl.meta.tune import Dimension, parse_search

# 4 envs x 16 steps x 4 updates: a few seconds of compile, well under a second per generation. One device: fewer
# dispatches per call, and results do not depend on the device count (tests/test_runner.py).
INNER = ["--inner-steps", "256", "--set", "num_steps=16", "--set", "eval_episodes=2", "--baseline-seeds", "2", "--quiet", "--devices", "1"]
# A pool of 3 (+ the search mean) = one population of 4: validation on 2 seeds is one call of the search's program.
TINY = ["--population", "4", "--seeds", "2", "--candidate-pool", "3", "--validation-seeds", "2", *INNER]


@pytest.fixture(scope="module", autouse=True)
def baseline_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("JAXRL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def discovered(tmp_path_factory):
    """A 3-generation search in one go, and the same search stopped after 2 and resumed to 3."""
    root = tmp_path_factory.mktemp("discover")
    args = ["meta", "discover", "--objective", "ta_lpo", "--envs", "CartPole-v1", "--sigma", "0.5", "--set", "lr=0.01", *TINY]
    assert main([*args, "--generations", "3", "--out", str(root / "straight")]) == 0
    assert main([*args, "--generations", "2", "--out", str(root / "resumed")]) == 0
    first_two = json.loads((root / "resumed" / "meta_summary.json").read_text())["generations"]
    assert main(["meta", "discover", "--resume", str(root / "resumed"), "--generations", "3", "--quiet"]) == 0
    return root, first_two


def _fitness(folder):
    return [(g["best"], g["mean"], g["returns"]) for g in json.loads((folder / "meta_summary.json").read_text())["generations"]]


def test_discover_writes_every_file(discovered):
    root, _ = discovered
    out = root / "straight"
    for name in ("meta.json", "meta_summary.json", "fitness.png", "drift.png", "best_objective.npz", "mean_objective.npz"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "meta_summary.json").read_text())
    assert summary["status"] == "finished" and len(summary["generations"]) == 3
    for g in summary["generations"]:
        assert {"best", "mean", "returns", "time_s"} <= set(g) and g["best"] >= g["mean"]
    assert summary["envs"][0]["baseline"].keys() == {"ppo", "init"}
    assert {"jax", "evosax"} <= set(summary["versions"]) and summary["timing"]["seconds_per_generation"] > 0


def test_discover_selects_by_validation_score_on_new_seeds(discovered):
    root, _ = discovered
    summary = json.loads((root / "straight" / "meta_summary.json").read_text())
    rows = summary["candidates"]
    assert summary["validation"]["seeds"] == [2_000_000, 2_000_001]  # apart from the baselines' 1_000_000 + i
    assert summary["validation"]["candidates_per_generation"] == 2 and summary["validation"]["candidate_pool"] == 3
    # The pool: the 3 best of the 3 generations' top 2 by training fitness, highest first; then the search mean.
    members = rows[:-1]
    assert len(members) == 3 and [r["candidate"] for r in rows] == ["member"] * 3 + ["mean"]
    fitness = [r["training_fitness"] for r in members]
    assert fitness == sorted(fitness, reverse=True) and fitness[0] == pytest.approx(max(g["best"] for g in summary["generations"]), rel=1e-6)
    assert rows[-1]["generation"] == 2 and rows[-1]["training_fitness"] is None
    for r in rows:
        assert r["validation_ci_low"] <= r["validation_score"] <= r["validation_ci_high"]
        assert r["validation_per_env"]["CartPole-v1"] == pytest.approx(r["validation_score"])
    scores = [r["validation_score"] for r in rows]
    selected = summary["selected"]
    assert selected["index"] == scores.index(max(scores)) and selected == {"index": selected["index"], **rows[selected["index"]]}
    assert summary["best_training"] == rows[0]
    assert len(set(scores)) > 1  # the candidates really differed on the validation seeds


def test_resumed_search_equals_uninterrupted_and_same_key_same_result(discovered):
    root, first_two = discovered
    straight, resumed = _fitness(root / "straight"), _fitness(root / "resumed")
    assert straight == resumed  # exact floats: a resumed search continues bit for bit
    assert [(g["best"], g["mean"], g["returns"]) for g in first_two] == straight[:2]  # two processes, same key
    # The candidate pool lives in the checkpoint: the same candidates, validated to the same scores, the same pick.
    a, b = (json.loads((root / run / "meta_summary.json").read_text()) for run in ("straight", "resumed"))
    assert a["candidates"] == b["candidates"] and a["selected"] == b["selected"]
    assert any(r["generation"] < 2 for r in a["candidates"][:-1])  # entries from before the resume point
    for name in ("best_objective.npz", "mean_objective.npz"):
        a, b = np.load(root / "straight" / name), np.load(root / "resumed" / name)
        assert all(np.array_equal(a[k], b[k]) for k in a.files if k.startswith("param/")), name
    assert len({g[0] for g in straight}) > 1  # the population really differed (else equality proves little)


def test_saved_objective_reloads_to_the_same_drift(discovered):
    root, _ = discovered
    objective, params = objectives.load(root / "straight" / "best_objective.npz")
    assert objective.name == "ta_lpo" and objective.options == {"ppo_init": True}
    # The selected candidate as the search kept it in its checkpoint: a pool entry, or the ES mean.
    from jaxrl.meta.candidates import empty_pool
    from jaxrl.meta.es import make_es

    es = make_es("open_es", 4, params, sigma=0.5, lr=0.03)
    abstract = {"es": jax.eval_shape(es.init, jax.random.key(0), params), "pool": jax.eval_shape(lambda: empty_pool(params, 3))}
    state = restore_tree(root / "straight" / "checkpoints" / "tree", abstract)
    selected = json.loads((root / "straight" / "meta_summary.json").read_text())["selected"]
    if selected["candidate"] == "mean":
        kept = es.mean(state["es"])
    else:
        kept = jax.tree.map(lambda x: x[selected["index"]], state["pool"]["members"])
        assert int(state["pool"]["generation"][selected["index"]]) == selected["generation"]
    l, a = jnp.meshgrid(jnp.linspace(-0.5, 0.5, 21), jnp.linspace(-2.0, 2.0, 21))
    for progress in (0.0, 0.5, 1.0):
        d_file = objective.drift(params, l, a, progress)
        d_kept = objective.drift(kept, l, a, progress)
        np.testing.assert_array_equal(np.asarray(d_file), np.asarray(d_kept))
    assert float(jnp.abs(objective.drift(params, l, a, 0.5)).max()) > 0


def test_discovered_objective_trains_with_jaxrl_train(discovered, tmp_path):
    root, _ = discovered
    out = tmp_path / "train"
    assert main(["train", "ppo", "--env", "CartPole-v1", "--steps", "256", "--set", "num_steps=16", "--set", "eval_episodes=2",
                 "--objective", str(root / "straight" / "best_objective.npz"), "--out", str(out), "--quiet", "--devices", "1"]) == 0
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"


def test_tune_writes_a_config_that_jaxrl_train_runs(tmp_path):
    out = tmp_path / "tune"
    assert main(["meta", "tune", "ppo", "--env", "CartPole-v1", "--search", "lr=1e-4:1e-1:log", "--search", "ent_coef=0:0.05",
                 "--generations", "2", *TINY, "--out", str(out)]) == 0
    for name in ("meta.json", "meta_summary.json", "fitness.png", "best_config.yaml", "mean_config.yaml"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "meta_summary.json").read_text())
    best = yaml.safe_load((out / "best_config.yaml").read_text())
    assert summary["best_hparams"] == summary["selected"]["hparams"] and len(summary["candidates"]) == 4
    assert best["lr"] == pytest.approx(summary["best_hparams"]["lr"]) and 1e-4 <= best["lr"] <= 1e-1
    assert 0.0 <= best["ent_coef"] <= 0.05 and best["env_id"] == "CartPole-v1" and best["algorithm"] == "ppo"
    assert main(["train", "--config", str(out / "best_config.yaml"), "--out", str(tmp_path / "train"), "--quiet", "--devices", "1"]) == 0
    trained = json.loads((tmp_path / "train" / "summary.json").read_text())
    assert trained["config"]["total_timesteps"] == 256


def test_evaluate_writes_results_with_intervals_and_ppo_clip_scores_1_against_itself(discovered, tmp_path):
    root, _ = discovered
    out = tmp_path / "eval"
    objective_file = str(root / "straight" / "mean_objective.npz")
    # lr=0.01 (as the objective was found with): PPO-clip learns something in 256 steps, so its unit is not floored.
    assert main(["meta", "evaluate", "--objective", "ppo_clip", objective_file, "--envs", "CartPole-v1", "--seeds", "2", "--steps", "256",
                 "--set", "num_steps=16", "--set", "eval_episodes=2", "--set", "lr=0.01", "--out", str(out), "--quiet", "--devices", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for label in ("ppo_clip", "mean_objective"):
        cell = summary["results"][label]["CartPole-v1"]
        assert cell["returns"]["ci_low"] <= cell["returns"]["iqm"] <= cell["returns"]["ci_high"]
        assert (out / cell["folder"] / "summary.json").exists() and (out / cell["folder"] / "curves.png").exists()
    assert (out / "scores.png").stat().st_size > 0 and "mean_objective" in (out / "report.md").read_text()
    # The unit is PPO-clip on the evaluated seeds: the ppo_clip runs themselves, so they score 1 in the mean.
    ppo = summary["results"]["ppo_clip"]["CartPole-v1"]
    base = summary["baselines"]["CartPole-v1"]
    assert not baselines.degenerate(base), base  # else the floored unit would put PPO-clip below 1 by design
    assert base["ppo"] == ppo["returns"]["mean"] and ppo["normalised"]["mean"] == pytest.approx(1.0, abs=1e-12)
    assert summary["results"]["mean_objective"]["CartPole-v1"]["baseline"] == ppo["baseline"]
    # Its untrained-policy return is cached under the evaluated seeds, not the searches' baseline seeds.
    cached = [json.loads(p.read_text()) for p in baselines.cache_dir().glob("CartPole-v1-*.json")]
    assert [c["seeds"] for c in cached if c["seeds"] == [0, 1]] == [[0, 1]]
    assert "PPO-clip under the same settings" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["meta", "discover", "--objective", "dpo"], "unknown learned objective 'dpo'"),
        (["meta", "discover", "--envs", "CartPol-v1"], "unknown environment 'CartPol-v1'"),
        (["meta", "discover", "--init", "random"], "unknown init 'random'"),
        (["meta", "tune", "ppo", "--env", "CartPole-v1", "--search", "lr=1:0"], "LOW must be below HIGH"),
        (["meta", "tune", "ppo", "--env", "CartPole-v1", "--search", "lr=0:1:log"], "a log range needs LOW > 0"),
        (["meta", "tune", "ppo", "--env", "CartPole-v1", "--search", "num_envs=1:8"], "cannot search 'num_envs': it is a static setting"),
        (["meta", "tune", "ppo", "--env", "CartPole-v1", "--search", "learning_rate=0:1"], "unknown setting 'learning_rate'"),
        (["meta", "tune", "ppo", "--env", "CartPole-v1"], "name at least one hyperparameter"),
        (["meta", "tune", "ppo", "--env", "CartPole-v1", "--search", "lr=1e-4:1e-2", "--es", "open-es"], "unknown evolution strategy 'open-es'"),
        (["meta", "discover", "--resume", "/nonexistent/folder"], "cannot resume from '/nonexistent/folder'"),
        (["meta", "discover", "--shaping", "rank"], "unknown fitness shaping 'rank'"),
        (["meta", "discover", "--population", "5"], "--population 5 is odd"),
        (["meta", "discover", "--population", "4", "--candidates", "6"], "--candidates 6 is more than the --population 4"),
        (["meta", "discover", "--candidates", "4", "--candidate-pool", "3"], "--candidate-pool 3 cannot hold the --candidates 4"),
        (["meta", "evaluate", "--objective", "dpo", "--envs", "CartPole-v1", "--baseline-seeds", "2"], "--baseline-seeds is for discover and tune"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "out")] if "--resume" not in argv else argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out" / "meta.json").exists()


def test_resume_refuses_changed_settings(discovered, capsys):
    root, _ = discovered
    assert main(["meta", "discover", "--resume", str(root / "straight"), "--population", "8"]) == 2
    assert "only --generations may change" in capsys.readouterr().err


def test_normalised_score_is_0_untrained_1_ppo_and_floored():
    base = {"ppo": 480.0, "init": 20.0}
    np.testing.assert_allclose(baselines.normalise(np.array([20.0, 480.0, 250.0]), base), [0.0, 1.0, 0.5])
    flat = {"ppo": -500.0, "init": -500.0}  # a budget too short for PPO to learn anything
    assert baselines.degenerate(flat) and baselines.span(flat) == pytest.approx(25.0)
    assert float(baselines.normalise(np.array([-475.0]), flat)[0]) == pytest.approx(1.0)


def test_search_dimensions_round_trip():
    d = parse_search("lr=1e-4:1e-2:log")
    assert d == Dimension("lr", 1e-4, 1e-2, True)
    assert d.encode(1e-3) == pytest.approx(0.5)
    assert float(d.decode(jnp.float32(0.5))) == pytest.approx(1e-3, rel=1e-5)
    assert float(d.decode(jnp.float32(7.0))) == pytest.approx(1e-2, rel=1e-5)  # positions are clipped into the range
    lin = parse_search("ent_coef=0:0.1")
    assert float(lin.decode(jnp.float32(lin.encode(0.03)))) == pytest.approx(0.03, rel=1e-5)


def test_sigterm_finishes_the_generation_checkpoints_and_resumes_bit_identically(tmp_path):
    import os
    import signal

    from jaxrl.meta.es import make_es
    from jaxrl.meta.search import Task, search
    from jaxrl.meta.tasks import inner
    from jaxrl.meta.population import PopulationEvaluator

    item = inner("ppo", {"env_id": "CartPole-v1", "total_timesteps": 256, "num_steps": 16, "eval_episodes": 2})
    to_hparams = lambda u, base: base.replace(lr=10.0 ** u[0])
    tasks = [Task("CartPole-v1", PopulationEvaluator(item.agent, item.hparams, to_hparams, 4, 2, max_devices=1), {"ppo": 30.0, "init": 20.0})]
    es = make_es("open_es", 4, jnp.array([-3.0]), sigma=0.5, lr=0.1)
    common = dict(es=es, solution=jnp.array([-3.0]), tasks=tasks, key=jax.random.key(7), generations=4, num_seeds=2, progress=False, candidate_pool=5)

    straight = search(**common, out=tmp_path / "a")

    def kill_at_generation_1(u, calls=[]):  # noqa: B006 - counts calls
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives during generation 1: it finishes, then checkpoints
        return {}

    stopped = search(**common, out=tmp_path / "b", describe=kill_at_generation_1)
    assert stopped.status == "interrupted" and len(stopped.history) == 2
    assert json.loads((tmp_path / "b" / "checkpoints" / "state.json").read_text())["generation"] == 2
    resumed = search(**common, out=tmp_path / "b", resume=True)
    assert resumed.status == "finished"
    key = lambda h: [(g["best"], g["mean"], g["returns"]) for g in h]
    assert key(resumed.history) == key(straight.history)
    np.testing.assert_array_equal(np.asarray(resumed.mean), np.asarray(straight.mean))
    for name in ("members", "fitness", "generation", "member"):  # the candidate pool came through the checkpoint
        np.testing.assert_array_equal(np.asarray(resumed.pool[name]), np.asarray(straight.pool[name]))
    generations = np.asarray(straight.pool["generation"])  # 5 slots for 4 x 2: at least one from before the stop
    assert (generations >= 0).all() and generations.min() < 2
    assert len({g["best"] for g in straight.history}) > 1


def test_evaluate_labels_files_by_stem_and_folder_when_stems_collide():
    from jaxrl.meta.evaluate import objective_labels

    assert objective_labels(["ppo_clip", "r/lpo/best.npz", "r/ta_lpo/best.npz", "x/mine.npz"]) == ["ppo_clip", "lpo-best", "ta_lpo-best", "mine"]
