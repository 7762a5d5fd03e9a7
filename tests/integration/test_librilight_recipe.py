"""The LibriLight recipe end to end on a tiny slice: prepare, train, crash, resume, bundle, generate."""
import json
import shlex
import sys
from pathlib import Path

import pytest
import torch

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "LibriLight"
sys.path.insert(0, str(RECIPE))

import train  # noqa: E402
from spectron_kit.recipe import overrides_to_yaml  # noqa: E402

# the recipe's own --debug sizes (one tiny configuration), with the folders and epochs left to each test
TINY = [f"--{line}".replace(": ", "=", 1) for line in overrides_to_yaml(
    {k: v for k, v in train.DEBUG_OVERRIDES.items() if k not in ("data_folder", "output_folder", "number_of_epochs")}
).splitlines()] + ["--ckpt_interval_steps=1"]


class Crash(Exception):
    pass


def test_mini_recipe_prepare_train_resume_bundle(tmp_path, monkeypatch, capsys):
    argv = [str(RECIPE / "hparams" / "spectron_mini.yaml"), f"--data_folder={tmp_path}/corpus",
            f"--output_folder={tmp_path}/run", "--number_of_epochs=1", "--snapshot_minutes=[0]",
            "--prenet_dropout=0.5", "--num_workers=2", *TINY]  # loading in 2 worker processes
    # 1) the run dies in the middle of its first epoch, after intra-epoch checkpoints
    original = train.SpectronBrain.fit_batch
    calls = {"n": 0}

    def crashing(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Crash("killed mid-epoch")
        return original(self, batch)

    monkeypatch.setattr(train.SpectronBrain, "fit_batch", crashing)
    with pytest.raises(Crash):
        train.main(argv)
    saved = list((tmp_path / "run" / "save").glob("CKPT+*"))
    assert saved, "no intra-epoch checkpoint was written before the crash"
    step0 = json.loads((tmp_path / "run" / "valid_step0.json").read_text())
    assert {"loss", "ce", "spec", "freq_deriv", "time_deriv"} <= set(step0)

    # 2) rerunning the same command resumes from that checkpoint (not from step 0)
    monkeypatch.setattr(train.SpectronBrain, "fit_batch", original)
    resumed_at = {}
    original_start = train.SpectronBrain.on_stage_start

    def record(self, stage, epoch=None):
        if stage == train.sb.Stage.TRAIN:
            resumed_at.setdefault("step", self.step)
        return original_start(self, stage, epoch)

    monkeypatch.setattr(train.SpectronBrain, "on_stage_start", record)
    summary = train.main(argv)
    assert resumed_at["step"] == 2, resumed_at

    # 3) the run leaves a bundle, samples and a summary
    run = tmp_path / "run"
    assert (run / "bundle" / "spectron_config.json").is_file()
    samples = sorted(p.name for p in (run / "samples").iterdir())
    assert any(n.endswith("_generated.wav") for n in samples) and any(n.endswith(".png") for n in samples)
    assert 0.0 <= summary["test_prompt_transcript_wer"] and summary["valid_final"]["loss"] > 0
    # the command that reruns it (RESULTS.md shows it: tools/results.py)
    assert summary["command"].startswith("python ") and "train.py" in summary["command"]
    assert summary["command"].endswith(" ".join(shlex.quote(a) for a in argv))
    assert "train loss" in (run / "train_log.txt").read_text()
    assert (run / "loss_curves.png").stat().st_size > 10000  # every loss term, train and valid, per epoch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # in the test extra

    board = EventAccumulator(str(run / "tensorboard"))
    board.Reload()
    assert {"loss/train", "loss/valid", "spec/valid", "phone_ce/train", "spec_coarse/train"} <= set(board.Tags()["scalars"])
    # the mini setup's phoneme terms are on; guided attention (weight 0 there) and flux are off
    assert "phone_gate" in summary["valid_final"] and "guided_attention" not in summary["valid_final"]
    assert "flux" not in summary["valid_final"]
    # training time adds up over the crash and the resumed run; the 0-minute snapshot is a loadable bundle
    assert summary["training_minutes"] > 0
    snapshot = run / "snapshots" / "0min"
    assert json.loads((snapshot / "training.json").read_text())["step"] >= 1
    from spectron_kit.model import SpectronModel

    assert SpectronModel.from_pretrained(snapshot).r == SpectronModel.from_pretrained(run / "bundle").r

    # 3b) the resumed run ends where an uninterrupted run ends (RNG, sampler and schedule restored)
    from safetensors.torch import load_file

    straight = [a if not a.startswith("--output_folder") else f"--output_folder={tmp_path}/straight" for a in argv]
    train.main(straight)
    resumed_weights = load_file(run / "bundle" / "model.safetensors")
    straight_weights = load_file(tmp_path / "straight" / "bundle" / "model.safetensors")
    assert resumed_weights.keys() == straight_weights.keys()
    for name, value in resumed_weights.items():
        assert torch.equal(value, straight_weights[name]), name

    # 3c) a run whose weights blow up stops with one line and checkpoints nothing non-finite
    capsys.readouterr()
    diverging = [a if not a.startswith("--output_folder") else f"--output_folder={tmp_path}/diverge" for a in argv]
    with pytest.raises(SystemExit) as err:
        train.main(diverging + ["--lr=1e9", "--warmup_steps=0"])
    assert err.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("error: training diverged at step") and "rerun with a lower --lr" in message
    for folder in (tmp_path / "diverge" / "save").glob("CKPT+*"):
        weights = torch.load(folder / "model.ckpt", map_location="cpu")
        assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point()), folder.name

    # 3d) the mini setup's Whisper encoder was not pre-trained here: no CTC encoder was made; the CTC
    # ablation pre-trains one (recipes/LibriLight/pretrain.py), which is not reused for other features
    pretrained = tmp_path / "corpus" / "pretrained" / "1234"
    assert (pretrained / "text_lm").is_dir() and not (pretrained / "ctc").exists()
    ctc_yaml = str(RECIPE / "hparams" / "spectron_mini_ctc.yaml")
    other = [ctc_yaml if a.endswith("spectron_mini.yaml") else a for a in argv]
    other = [a if not a.startswith("--output_folder") else f"--output_folder={tmp_path}/n_mels" for a in other]
    import pretrain

    parts = pretrain.main(other)
    assert (Path(parts["CTC encoder"]) / "encoder_config.json").is_file()
    capsys.readouterr()
    with pytest.raises(SystemExit) as err:
        train.main(other + ["--n_mels=64"])
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.value.code == 2 and "the pre-trained encoder in" in message, message
    assert "reads 80 mel bins; pass --n_mels=80" in message and "--pretrained_folder=<a new folder>" in message

    # 4) the bundle continues a prompt from the test split through the CLI
    from spectron_kit.cli import main as cli

    prompt = next((tmp_path / "corpus" / "test").rglob("*.flac"))
    out = tmp_path / "continued.wav"
    assert cli(["continue", "--model", str(run / "bundle"), str(prompt), "-o", str(out),
                "--seconds", "0.5", "--plot", str(tmp_path / "c.png")]) == 0
    import soundfile

    audio, rate = soundfile.read(out)
    assert rate == 16000 and len(audio) == (40 - 1) * 200
    assert (tmp_path / "c.png").stat().st_size > 1000
    # streamed: the text as it is written, the file as it grows, the time to first audio
    capsys.readouterr()
    streamed = tmp_path / "streamed.wav"
    assert cli(["continue", "--model", str(run / "bundle"), str(prompt), "-o", str(streamed), "--seconds", "0.5",
                "--stream"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "first audio after" in printed and "as it was generated" in printed
    assert len(soundfile.read(streamed)[0]) == (40 - 1) * 200


def test_paper_config_without_data_says_what_to_pass(capsys):
    with pytest.raises(SystemExit) as err:
        train.main([str(RECIPE / "hparams" / "spectron.yaml")])
    assert err.value.code == 2
    message = capsys.readouterr().err
    assert "--data_folder=..." in message and "spectron_mini.yaml" in message


def test_bad_overrides_fail_with_the_key_named(capsys):
    for flag, expected in (("--lr=fast", "--lr='fast' is a str but lr takes a float"),
                           ("--learning_rate=0.1", "learning_rate")):
        with pytest.raises(SystemExit):
            train.main([str(RECIPE / "hparams" / "spectron_mini.yaml"), flag])
        assert expected in capsys.readouterr().err


def test_ablation_files_resolve_to_their_base():
    from spectron_kit.recipe import resolve_base

    base, overrides = resolve_base(RECIPE / "hparams" / "ablations" / "no_derivative.yaml", "w_spec: 2.0")
    assert Path(base).name == "spectron.yaml"
    assert overrides == {"experiment": "spectron_no_derivative", "w_freq": 0.0, "w_time": 0.0, "w_spec": 2.0}


def test_debug_uses_its_own_folders_resumes_and_leaves_the_main_job_working(tmp_path, monkeypatch):
    """The README's ``--debug``, then the main job's command in the same checkout (issue 23, finding 1)."""
    monkeypatch.chdir(tmp_path)
    mini = str(RECIPE / "hparams" / "spectron_mini.yaml")
    first = train.main([mini, "--debug"])
    debug_run = tmp_path / "results" / "debug" / "spectron_mini"
    assert (tmp_path / "data" / "mini_corpus_debug" / "minicorpus.json").is_file()
    assert not (tmp_path / "data" / "mini_corpus").exists() and not (tmp_path / "results" / "spectron_mini").exists()
    assert first["trainable_parameters"] < 500_000  # the debug sizes won over spectron_mini.yaml's own values (Whisper is frozen)
    # checkpoints live in the run folder, so a longer debug run resumes: it trains epoch 2 only
    assert list((debug_run / "save").glob("CKPT*"))
    train.main([mini, "--debug", "--number_of_epochs=2"])
    epochs = [line.split(",")[0] for line in (debug_run / "train_log.txt").read_text().splitlines()]
    assert epochs == ["epoch: 1", "epoch: 2"]
    stamp = {p: p.stat().st_mtime for p in (tmp_path / "data" / "mini_corpus_debug").rglob("*") if p.is_file()}
    # the main job's code path (its default folders; tiny sizes typed so the test stays fast) is not
    # refused because of the debug corpus, and does not touch the debug run's files
    main_job = train.main([mini, "--mini_corpus_size=tiny", "--number_of_epochs=1", *[
        a for a in TINY if not a.startswith("--mini_corpus_size")]])
    assert (tmp_path / "results" / "spectron_mini" / "1234" / "bundle" / "spectron_config.json").is_file()
    assert (tmp_path / "data" / "mini_corpus" / "minicorpus.json").is_file() and main_job["optimizer_steps"] > 0
    assert {p: p.stat().st_mtime for p in stamp} == stamp


def test_debug_runs_every_stage_at_tiny_sizes(tmp_path):
    summary = train.main([str(RECIPE / "hparams" / "spectron_mini.yaml"), "--debug",
                          f"--data_folder={tmp_path}/corpus", f"--output_folder={tmp_path}/run"])
    assert (tmp_path / "run" / "bundle" / "spectron_config.json").is_file()
    assert (tmp_path / "corpus" / "pretrained" / "1234" / "text_lm" / "config.json").is_file()
    assert summary["seconds"] < 120 and summary["trainable_parameters"] < 500_000  # tiny sizes, not the mini run's 3.7 M


@pytest.mark.parametrize("ablation", sorted(p.name for p in (RECIPE / "hparams" / "ablations").glob("*.yaml")))
def test_every_ablation_file_loads_on_its_base(ablation, tmp_path):
    from hyperpyyaml import load_hyperpyyaml

    from spectron_kit.recipe import check_overrides, overrides_to_yaml, replace_blocks, resolve_base

    given = f"data_folder: {tmp_path}\ntranscripts: t.tsv\nlibrispeech_folder: {tmp_path}\noutput_folder: {tmp_path}/run"
    base, overrides = resolve_base(RECIPE / "hparams" / "ablations" / ablation, given)
    assert Path(base).name == "spectron.yaml"
    check_overrides(base, overrides)
    path, rest = replace_blocks(base, overrides)
    hparams = load_hyperpyyaml(Path(path).read_text(), overrides_to_yaml(rest))
    assert hparams["experiment"].startswith("spectron_") and hparams["experiment"] != "spectron"
    if ablation == "no_pretrained_lm.yaml":  # the LM block now starts from the config alone
        assert "config_dir" in hparams["lm"].keywords and "source" not in hparams["lm"].keywords
    if ablation == "no_pretrained_encoder.yaml":
        assert "config_dir" in hparams["encoder"].keywords and "source" not in hparams["encoder"].keywords
    if ablation == "no_intermediate_text.yaml":
        assert hparams["intermediate_text"] is False and hparams["w_guided_attention"] == 0.0


def test_pretraining_is_a_step_of_its_own(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("librilight_pretrain", RECIPE / "pretrain.py")
    pretrain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pretrain)
    argv = [str(RECIPE / "hparams" / "spectron_mini.yaml"), "--debug", f"--data_folder={tmp_path}/corpus",
            f"--output_folder={tmp_path}/run"]
    parts = pretrain.main(argv)
    lm = Path(parts["text LM"])
    assert (lm / "config.json").is_file() and parts["speech encoder"] == "packaged:tiny.en (Whisper, nothing to pre-train)"
    assert json.loads((lm / "pretrain_settings.json").read_text())["text_lm_steps"] == 20
    assert not (tmp_path / "run").exists()  # no training run was started
    stamp = (lm / "model.safetensors").stat().st_mtime_ns
    pretrain.main(argv)  # done parts are reused
    assert (lm / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(SystemExit):  # other settings for the same folder: refused, with the fix named
        pretrain.main(argv + ["--text_lm_steps=21"])


def test_pretrain_debug_writes_only_into_the_debug_folders(tmp_path, monkeypatch):
    import pretrain

    monkeypatch.chdir(tmp_path)
    pretrain.main([str(RECIPE / "hparams" / "spectron_mini.yaml"), "--debug"])
    assert (tmp_path / "data" / "mini_corpus_debug" / "pretrained" / "1234" / "text_lm" / "config.json").is_file()
    assert not (tmp_path / "data" / "mini_corpus").exists()


def test_a_plugin_loss_term_that_needs_alignments_gets_them_without_recipe_edits(tmp_path):
    """The data pipeline serves what the objective's terms require (``LossTerm.requires``), not a loss name."""
    from spectron_kit.hookspecs import hookimpl
    from spectron_kit.losses import LossTerm
    from spectron_kit.registry import get_registry

    seen = []

    class AlignmentProbe(LossTerm):
        requires = ("pred_frames", "attention_centres", "attention_sigma")

        def compute(self, outputs):
            seen.append(outputs["attention_centres"].detach().clone())
            return outputs["pred_frames"].float().mean() * 0.0

    class Plugin:
        @hookimpl
        def register_losses(self, register):
            register("alignment_probe", AlignmentProbe, description="test term: reads the alignments")

    get_registry().register_plugin(Plugin(), name="test-alignment-probe")
    ablation = tmp_path / "probe.yaml"
    mini = RECIPE / "hparams" / "spectron_mini.yaml"
    ablation.write_text(f"__base__: {mini}\nloss: !name:spectron_kit.build\n    kind: loss\n    name: spectron\n"
                        "    terms: {spec: 1.0, alignment_probe: 1.0}\n")
    summary = train.main([str(ablation), "--debug", f"--data_folder={tmp_path}/corpus",
                          f"--output_folder={tmp_path}/run"])
    assert summary["optimizer_steps"] > 0 and seen  # w_guided_attention is 0: only the term asked for them
    centres = torch.cat([c.flatten() for c in seen])
    assert torch.isfinite(centres).any() and centres[torch.isfinite(centres)].min() >= 0


def test_text_rehearsal_mixes_the_lm_s_own_text_into_training(tmp_path):
    """w_text_rehearsal > 0: text-only batches of the LM's pre-training text reach the LM every step."""
    summary = train.main([str(RECIPE / "hparams" / "spectron_mini.yaml"), "--debug", f"--data_folder={tmp_path}/corpus",
                          f"--output_folder={tmp_path}/run", "--w_text_rehearsal=1.0"])
    assert "text_rehearsal" in summary["valid_step0"] and "text_rehearsal" in summary["valid_final"]
    assert 0 < summary["valid_final"]["text_rehearsal"] < 20
    assert "train text_rehearsal" in (tmp_path / "run" / "train_log.txt").read_text()


def test_a_frozen_component_does_not_move_and_the_groups_are_saved_with_the_run(tmp_path):
    """parameter_groups: lm frozen (lr_scale 0), the pre-net at twice the lr; the rest learns at lr."""
    from transformers import AutoModelForCausalLM

    from spectron_kit.model import SpectronModel

    summary = train.main([str(RECIPE / "hparams" / "spectron_mini.yaml"), "--debug", f"--data_folder={tmp_path}/corpus",
                          f"--output_folder={tmp_path}/run", "--parameter_groups={lm: {lr_scale: 0}, "
                          "prenet: {lr_scale: 2.0, weight_decay: 0.0}}"])
    assert summary["optimizer_steps"] > 0
    groups = {g["group"]: g for g in json.loads((tmp_path / "run" / "parameter_groups.json").read_text())}
    assert groups["lm"]["trainable"] == 0 and groups["lm"]["parameters"] > 0 and groups["lm"]["lr"] == 0.0
    assert groups["prenet"]["lr"] == pytest.approx(2 * groups["postnet"]["lr"]) and groups["prenet"]["weight_decay"] == 0
    trained = SpectronModel.from_pretrained(tmp_path / "run" / "bundle").lm.model.state_dict()
    original = AutoModelForCausalLM.from_pretrained(tmp_path / "corpus" / "pretrained" / "1234" / "text_lm").state_dict()
    layers = [k for k in original if ".layers." in k]
    assert layers and all(torch.equal(trained[k], original[k]) for k in layers)  # the frozen LM did not move
    assert summary["valid_final"]["spec"] < summary["valid_step0"]["spec"]  # the rest learned


def test_parameter_groups_are_written_into_a_folder_not_made_yet(tmp_path):
    # tools/benchmark_training.py builds the optimiser before any run folder exists (seen on a fresh GPU machine)
    folder = tmp_path / "results" / "never_made" / "1234"
    train.report_parameter_groups([("lm", 10, 8, 1e-3, 0.01), ("encoder", 4, 0, 1e-3, None)], folder)
    rows = json.loads((folder / "parameter_groups.json").read_text())
    assert [(r["group"], r["trainable"], r["lr"]) for r in rows] == [("lm", 8, 1e-3), ("encoder", 0, 0.0)]


def test_the_training_benchmark_splits_a_step_and_compares_variants_in_one_run(tmp_path):
    """tools/benchmark_training.py on the debug setup: two variants timed on the same batches; the forward's
    parts add up to it; padding and no-frame-loss shares are read off the batches' layouts."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark_training", RECIPE.parents[1] / "tools" / "benchmark_training.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    results = tool.main([str(RECIPE / "hparams" / "spectron_mini.yaml"), "--debug", f"--data_folder={tmp_path}/corpus", "--steps", "2", "--warmup", "1",
                         "--variant=plain:", "--variant=half lr: --lr=0.0005"])
    assert [name for name, _, _ in results] == ["plain", "half lr"]
    for _, _, r in results:
        assert r["frames_per_s"] > 0 and r["step_s"] == pytest.approx(
            r["data_s"] + r["forward_s"] + r["backward_s"] + r["optimiser_s"])
        parts = r["forward_parts_s"]
        assert set(parts) == {"speech prefix", "LM", "pre-net", "post-net", "losses", "other model code"}
        assert parts["LM"] > 0 and parts["losses"] > 0 and all(v >= 0 for k, v in parts.items()
                                                                if k != "other model code")
        assert sum(parts.values()) == pytest.approx(r["forward_s"], rel=0.05)
        assert 0 <= r["padding_share"] < r["no_frame_loss_share"] < 1 and r["peak_memory_gb"] > 0.1
    assert results[0][2]["mean_loss"] == pytest.approx(results[1][2]["mean_loss"], rel=0.2)  # same batches
