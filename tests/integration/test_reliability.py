"""Bad inputs a user may give: each gets one line naming the value and the fix, exit code 2, nothing lost."""
import os
import sys
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "LibriLight"
sys.path.insert(0, str(RECIPE))
MINI = str(RECIPE / "hparams" / "spectron_mini.yaml")
PAPER = str(RECIPE / "hparams" / "spectron.yaml")


def run_train(args, capsys):
    import train

    with pytest.raises(SystemExit) as err:
        train.main(args)
    lines = capsys.readouterr().err.strip().splitlines()
    return err.value.code, lines[-1] if lines else ""


def save_tiny_text_lm(folder):
    """A one-layer text LM with its tokenizer saved in ``folder`` (the evaluation's LM scorer)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
    from test_lm import train_sentencepiece

    from spectron_kit.lm import HFCausalLM

    HFCausalLM(config={"model_type": "llama", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "num_key_value_heads": 2},
               tokenizer=str(train_sentencepiece(Path(folder).parent / "sp.model"))).save_pretrained(folder)


def folder_held_by_another_process(folder, what="training run"):
    """A process holding ``folder``'s run lock, as a running run does (kill it when done)."""
    import subprocess

    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from spectron_kit.recipe import lock_run_folder; "
         f"lock_run_folder({str(folder)!r}, what={what!r}); print('held', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.parametrize("args, expected", [
    ([MINI, "--lr=fast"], "error: --lr='fast' is a str but lr takes a float"),
    ([MINI, "--learning_rate=0.1"], "error: unknown override --learning_rate; keys of spectron_mini.yaml: seed,"),
    ([MINI, "--encoder_name=nope"], "error: no encoder named 'nope'; available encoder names: conformer, hf, whisper."),
    ([MINI, "--vocoder_name=hifigan"], "error: no vocoder named 'hifigan'"),
    ([MINI, "--batch_size=0"], "error: --batch_size=0: must be a whole number of at least 1"),
    ([MINI, "--number_of_epochs=-1"], "error: --number_of_epochs=-1: must be a whole number of at least 1"),
    ([MINI, "--num_workers=-2"], "error: --num_workers=-2: give 0 (load in the training process) or a number"),
    ([MINI, "--n_mels=0"], "error: n_mels=0 must be a positive integer, e.g. n_mels=80"),
    ([MINI, "--schedule_clock=minutes"], "error: --schedule_clock=minutes needs a time budget: "
                                         "--max_training_minutes=None; pass e.g. --max_training_minutes=80"),
    ([MINI, "--schedule_clock=hours"], "error: --schedule_clock=hours: use steps"),
    ([MINI, "--best_checkpoint_key=spek"], "error: --best_checkpoint_key=spek: not a logged valid term; use loss, last "
                                           "(the newest checkpoint: a fine-tune) or one of ce,"),
    ([MINI, "--w_text_rehearsal=1.0", "--rehearsal_text=null"], "error: --w_text_rehearsal=1.0 needs its text: "
                                                                 "--rehearsal_text=<a text file"),
    ([MINI, "--lm_adapter={name: lorra, r: 4}"], "error: no adapter named 'lorra'"),
    ([MINI, "--lm_adapter={r: 4}"], "error: --lm_adapter={'r': 4}: name the adapter"),
    ([MINI, "--parameter_groups={lmm: {lr_scale: 0}}"], "error: --parameter_groups: no group 'lmm'; the groups are "
                                                       "encoder, projection, lm, prenet, postnet, heads"),
    ([MINI, "--parameter_groups={lm: {lr_scale: -1}}"], "error: --parameter_groups: lm.lr_scale=-1; use 0 (frozen)"),
    ([MINI, "--parameter_groups={lm: {lr: 0.1}}"], "error: --parameter_groups: lm={'lr': 0.1}; give lr_scale"),
    ([PAPER, "--data_folder=/no/such/librilight", "--transcripts=t.tsv", "--librispeech_folder=/x"],
     "error: --data_folder=/no/such/librilight: no such folder"),
])
def test_bad_training_inputs_stop_before_anything_is_written(tmp_path, capsys, args, expected):
    code, line = run_train([*args, f"--output_folder={tmp_path}/run", f"--data_folder={tmp_path}/corpus"]
                           if args[0] == MINI else [*args, f"--output_folder={tmp_path}/run"], capsys)
    assert code == 2 and line.startswith(expected), line
    assert not (tmp_path / "run").exists() and not (tmp_path / "corpus").exists()  # nothing written


def test_a_misspelled_key_in_a_full_yaml_is_named(tmp_path, capsys):
    text = Path(PAPER).read_text()
    assert "\nlr: 0.0003" in text
    full = tmp_path / "mine.yaml"
    full.write_text(text.replace("\nlr: 0.0003", "\nlerning_rate: 0.0003"))
    code, line = run_train([str(full), f"--output_folder={tmp_path}/run", f"--data_folder={tmp_path}/corpus",
                            "--transcripts=t.tsv", f"--librispeech_folder={tmp_path}"], capsys)
    assert code == 2 and line.startswith("error: the YAML has no lr (it has 'lerning_rate', which the recipe does not "
                                         "read: a misspelling?)"), line
    assert not (tmp_path / "run").exists()


def test_a_vocoder_for_other_features_is_refused_before_anything_is_written(tmp_path, capsys):
    ablation = tmp_path / "vocoder64.yaml"
    ablation.write_text(f"__base__: {MINI}\nvocoder: !name:spectron_kit.build\n    kind: vocoder\n"
                        "    name: griffin_lim\n    spec: {n_mels: 64}\n")
    code, line = run_train([str(ablation), f"--output_folder={tmp_path}/run", f"--data_folder={tmp_path}/corpus"],
                           capsys)
    assert code == 2 and line.startswith("error: frontend and vocoder use different features (n_mels: frontend=80 "
                                         "vs vocoder=64"), line
    assert not (tmp_path / "run").exists() and not (tmp_path / "corpus").exists()


def test_missing_transcripts_file_is_named(tmp_path, capsys):
    (tmp_path / "ll").mkdir(), (tmp_path / "ls").mkdir()
    code, line = run_train([PAPER, f"--data_folder={tmp_path}/ll", f"--librispeech_folder={tmp_path}/ls",
                            "--transcripts=missing.tsv", f"--output_folder={tmp_path}/run"], capsys)
    assert code == 2 and line.startswith("error: --transcripts=missing.tsv: no such file or folder; make it with")


def test_numbers_as_users_write_them_are_accepted(tmp_path, capsys):
    # --lr=3e-4 (the README's own example) used to be refused as a string; a bad size still stops the
    # run before anything is written, which shows the override itself was accepted
    code, line = run_train([MINI, "--lr=3e-4", "--batch_size=0", f"--output_folder={tmp_path}/run"], capsys)
    assert code == 2 and "--batch_size=0" in line


def test_evaluation_of_a_missing_bundle_is_one_line(tmp_path, capsys):
    import evaluate

    (tmp_path / "test").mkdir()
    with pytest.raises(SystemExit) as err:
        evaluate.main([str(RECIPE / "hparams" / "evaluate.yaml"), f"--model_dir={tmp_path}/no_bundle",
                       f"--test_folder={tmp_path}/test", "--lm_scorer_source=gpt2",
                       f"--output_folder={tmp_path}/eval"])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.value.code == 2 and line.startswith(f"error: no such bundle folder: {tmp_path}/no_bundle"), line


def test_cli_with_a_missing_bundle_is_one_line(tmp_path, capsys):
    import numpy as np
    import soundfile

    from spectron_kit.cli import main as cli

    prompt = tmp_path / "p.wav"
    soundfile.write(prompt, np.zeros(16000, dtype="float32"), 16000)
    assert cli(["continue", "--model", "results/nope/bundle", str(prompt), "-o", str(tmp_path / "o.wav")]) == 2
    out = capsys.readouterr().out
    assert "error: no such bundle folder: results/nope/bundle" in out and "Traceback" not in out
    assert not (tmp_path / "o.wav").exists()


@pytest.mark.parametrize("make, expected", [
    (lambda tmp: (tmp / "taken").write_text("x") and tmp / "taken", "taken is a file; choose a folder path"),
    (lambda tmp: (tmp / "f").write_text("x") and tmp / "f" / "run", "lies under the file"),
])
def test_an_output_folder_that_cannot_be_made_is_one_line(tmp_path, capsys, make, expected):
    folder = make(tmp_path)
    code, last = run_train([MINI, f"--output_folder={folder}", f"--data_folder={tmp_path}/corpus"], capsys)
    assert code == 2 and expected in last and last.startswith("error: --output_folder=")
    assert not (tmp_path / "corpus").exists()  # refused before anything was prepared


def test_ctrl_c_says_where_the_checkpoint_is_and_exits_130(tmp_path, capsys, monkeypatch):
    import train

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train.SpectronBrain, "fit", interrupted)
    with pytest.raises(SystemExit) as err:
        train.main([MINI, "--debug", f"--data_folder={tmp_path}/corpus", f"--output_folder={tmp_path}/run"])
    assert err.value.code == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (f"interrupted: the last checkpoint is in {tmp_path}/run/save; rerun the same command to "
                    "resume from it")


def test_a_second_run_on_a_busy_output_folder_stops_at_once_and_a_dead_run_s_lock_is_taken_over(tmp_path, capsys):
    from spectron_kit.recipe import lock_run_folder, release_run_folder

    run = tmp_path / "run"
    holder = folder_held_by_another_process(run)
    try:
        code, last = run_train([MINI, "--debug", f"--data_folder={tmp_path}/corpus", f"--output_folder={run}"], capsys)
        assert code == 2 and f"--output_folder={run} is in use by a running training run (pid {holder.pid} " in last
        assert "wait for it to end or choose another --output_folder" in last
        assert not (run / "hyperparams.yaml").exists() and not (tmp_path / "corpus").exists()
    finally:
        holder.kill()
        holder.wait()
    lock_run_folder(run)  # the killed holder's lock is free again (released with its process)
    release_run_folder(run)


def test_a_second_evaluation_into_a_busy_folder_stops_before_it_writes(tmp_path, capsys):
    """Two evaluations into one --output_folder used to both exit 0, leaving one's hyperparams.yaml beside the
    other's results: the second now stops at once, naming the first, and writes nothing."""
    import evaluate

    save_tiny_text_lm(tmp_path / "lm")
    out = tmp_path / "eval"
    holder = folder_held_by_another_process(out, what="evaluation")
    try:
        before = sorted(p.name for p in out.iterdir())
        with pytest.raises(SystemExit) as err:
            evaluate.main([str(RECIPE / "hparams" / "evaluate.yaml"), f"--model_dir={tmp_path}",
                           f"--test_folder={tmp_path}", f"--lm_scorer_source={tmp_path}/lm",
                           f"--output_folder={out}", "--scorers=[frame_distance]"])
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.value.code == 2
        assert f"--output_folder={out} is in use by a running evaluation (pid {holder.pid} " in last
        assert sorted(p.name for p in out.iterdir()) == before  # no hyperparams.yaml, no log of its own
    finally:
        holder.kill()
        holder.wait()


def test_resuming_with_another_model_shape_names_the_changed_settings_and_keeps_the_old_record(tmp_path, capsys):
    import train

    args = [MINI, "--debug", f"--data_folder={tmp_path}/corpus", f"--output_folder={tmp_path}/run"]
    train.main(args)
    record = (tmp_path / "run" / "hyperparams.yaml").read_text()
    code, last = run_train(args + ["--postnet_hidden=16", "--prenet_bottleneck=8"], capsys)
    assert code == 2 and f"{tmp_path}/run holds checkpoints of a run with other model settings" in last
    assert "prenet_bottleneck: 32 -> 8; postnet_hidden: 32 -> 16" in last and "choose another --output_folder" in last
    assert (tmp_path / "run" / "hyperparams.yaml").read_text() == record
    train.main(args + ["--lr=0.002"])  # a setting that does not shape the model resumes


@pytest.mark.parametrize("text, expected", [
    ('{"components": {"encoder": ', "is not valid JSON ("),
    ("{}", "has no 'components' or 'model' entry: it is not a spectron-kit bundle config"),
])
def test_a_damaged_bundle_config_names_the_file(tmp_path, capsys, text, expected):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
    from test_model import tiny_model

    from spectron_kit.cli import main as cli

    bundle = tiny_model().save_pretrained(tmp_path / "bundle")
    (bundle / "spectron_config.json").write_text(text)
    assert cli(["continue", "--model", str(bundle), str(bundle / "none.wav"), "-o", str(tmp_path / "o.wav")]) == 2
    out = capsys.readouterr().out
    assert f"{bundle}/spectron_config.json" in out.replace("\n", "") and expected in out.replace("\n", "")
    assert "save it again" in out and out.count("\n") == 1


def test_duplicate_ids_are_named_with_both_places(tmp_path):
    from spectron_kit.data.manifest import ManifestError, read_manifest, write_manifest
    from spectron_kit.data.transcripts import read_transcripts

    labels = tmp_path / "labels.tsv"
    labels.write_text("a\tthe cat sat\nb\ta dog ran\na\ta bird flew\n")
    with pytest.raises(ValueError, match=rf"utterance id 'a' has two different texts \({labels}:1 and {labels}:3\)"):
        read_transcripts(labels)
    labels.write_text("a\tthe cat sat\nb\ta dog ran\na\tThe cat sat.\n")  # the same text again is harmless
    assert read_transcripts(labels) == {"a": "the cat sat", "b": "a dog ran"}
    rows = [{"id": "u1", "path": str(tmp_path / "x.flac"), "start": 0, "end": -1, "duration": 5.0},
            {"id": "u2", "path": str(tmp_path / "y.flac"), "start": 0, "end": -1, "duration": 5.0}]
    write_manifest(rows, tmp_path / "m.csv")
    text = (tmp_path / "m.csv").read_text().replace("u2,", "u1,")
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(ManifestError, match=r"utterance id 'u1' on line 2 \(.*x.flac\) and line 3 \(.*y.flac\)"):
        read_manifest(tmp_path / "m.csv")


def test_prompt_wer_over_no_aligned_utterance_is_not_a_number():
    import run_summary

    rows = [{"id": f"u{i}", "prompt_text": ""} for i in range(77)]
    assert run_summary.prompt_transcript_wer(None, rows, {"sample_rate": 16000, "prompt_seconds": 3.0}) == (None, [], 77)


def test_evaluating_audio_without_transcripts_says_so(tmp_path, capsys):
    import numpy as np
    import soundfile

    import evaluate

    save_tiny_text_lm(tmp_path / "lm")
    folder = tmp_path / "mine" / "test-mine" / "7" / "1"
    folder.mkdir(parents=True)
    for i in range(3):
        soundfile.write(folder / f"7-1-000{i}.flac", 0.1 * np.random.default_rng(i).standard_normal(16000 * 6), 16000)
    with pytest.raises(SystemExit) as err:
        evaluate.main([str(RECIPE / "hparams" / "evaluate.yaml"), f"--model_dir={tmp_path}",
                       f"--test_folder={tmp_path}/mine/test-mine", f"--output_folder={tmp_path}/eval",
                       f"--lm_scorer_source={tmp_path}/lm", "--scorers=[frame_distance]"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.value.code == 2
    assert last.startswith(f"error: --test_folder={tmp_path}/mine/test-mine: none of its 3 audio files has a transcript")


@pytest.mark.parametrize("kind, source, override", [
    ("lm", "no-such-org/no-such-model", "--lm_source"),
    ("lm_scorer", "results/no_such_text_lm", "--lm_scorer_source"),
    ("encoder", "no-such-org/no-such-encoder", "--encoder_source"),
])
def test_a_model_source_that_cannot_be_loaded_names_its_override(monkeypatch, kind, source, override):
    from spectron_kit import build

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as on a machine without internet
    with pytest.raises(FileNotFoundError) as err:
        build(kind, "hf", source=source)
    message = str(err.value)
    assert f"{source!r} cannot be loaded: it is not a local folder" in message
    assert message.endswith(f"pass {override}=<a local folder or a cached hub id>") and "\n" not in message


def test_n_mels_that_the_pretrained_encoder_cannot_read_is_named_before_any_data(tmp_path, capsys):
    import json

    encoder = tmp_path / "encoder"
    encoder.mkdir()
    (encoder / "encoder_config.json").write_text(json.dumps({"n_mels": 80, "d_model": 96}))
    code, last = run_train([MINI, "--n_mels=64", f"--encoder_source={encoder}", f"--data_folder={tmp_path}/corpus",
                            f"--output_folder={tmp_path}/run"], capsys)
    assert code == 2
    assert last.startswith(f"error: --n_mels=64: the pre-trained encoder in {encoder} reads 80 mel bins; "
                           "pass --n_mels=80, or --encoder_source=<an encoder trained on 64 bins>")
    assert not (tmp_path / "corpus").exists() and not (tmp_path / "run").exists()


def test_pseudo_labels_with_a_hub_model_offline_are_one_line(tmp_path):
    import os
    import subprocess

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,path,start,end,duration\n")
    proc = subprocess.run([sys.executable, str(RECIPE.parents[1] / "tools" / "pseudo_label.py"), str(manifest),
                           str(tmp_path / "labels.tsv"), "--transcriber", "hf_asr",
                           "--transcriber-arg", "source=no-such-org/no-such-asr"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: cannot build transcriber 'hf_asr': ASR model 'no-such-org/no-such-asr' cannot be loaded")


def test_a_real_sigint_to_a_training_process_ends_in_one_line_and_the_rerun_resumes(tmp_path):
    """Ctrl-C as a terminal sends it: SIGINT to the running recipe process, mid-training."""
    import signal
    import subprocess
    import time

    run = tmp_path / "run"
    cmd = [sys.executable, str(RECIPE / "train.py"), MINI, "--debug", "--number_of_epochs=400",
           f"--data_folder={tmp_path}/corpus", f"--output_folder={run}"]
    # faulthandler: if the process does not end after Ctrl-C, SIGABRT makes it print every thread's stack,
    # so a failure says where it hung
    env = dict(os.environ, PYTHONFAULTHANDLER="1")

    def as_a_terminal_starts_it():
        # a test suite started in the background (`cmd &`, nohup) runs with SIGINT ignored, and an ignored
        # signal stays ignored in children: Python then never raises KeyboardInterrupt (this test hung
        # 120 s in such runs). A terminal's foreground process has the default action.
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=as_a_terminal_starts_it)
    try:
        deadline = time.monotonic() + 300
        while not list((run / "save").glob("CKPT+*")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert proc.poll() is None and list((run / "save").glob("CKPT+*")), "no checkpoint appeared"
        time.sleep(1.0)  # mid-epoch, after the first checkpoint
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            _, err = proc.communicate(timeout=60)
            pytest.fail(f"the run did not end within 120 s of SIGINT; its stacks:\n{err[-6000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == (f"interrupted: the last checkpoint is in {run}/save; rerun the same "
                                            "command to resume from it")
    done = len((run / "train_log.txt").read_text().splitlines())
    assert 1 <= done < 400
    # the same command (fewer epochs, so it ends) resumes from the checkpoint, not from epoch 1 (an epoch
    # logged but interrupted before its checkpoint was written is trained again)
    rerun = subprocess.run(cmd[:4] + [f"--number_of_epochs={done + 1}"] + cmd[5:], capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    epochs = [line.split(",")[0] for line in (run / "train_log.txt").read_text().splitlines()]
    assert epochs[:done] == [f"epoch: {i}" for i in range(1, done + 1)] and epochs[-1] == f"epoch: {done + 1}"
    assert len(epochs) <= done + 2


def test_a_resumed_run_writes_only_the_snapshots_it_reaches_itself():
    """A run resumed at 94 training minutes must not label its weights "20min" (the minute it started after)."""
    from types import SimpleNamespace

    import train
    from spectron_kit.recipe.checkpoints import TrainingClock

    written = []
    clock = TrainingClock()
    clock.seconds = 94 * 60.0
    brain = SimpleNamespace(clock=clock, hparams=SimpleNamespace(snapshot_minutes=[20, 40, 100]),
                            resumed_minutes=94.0, save_snapshot=written.append)
    train.SpectronBrain.save_due_snapshots(brain)
    assert written == []
    clock.seconds = 100.5 * 60.0
    train.SpectronBrain.save_due_snapshots(brain)
    assert written == ["100min"]
    fresh = SimpleNamespace(clock=clock, hparams=SimpleNamespace(snapshot_minutes=[0, 20]), resumed_minutes=0.0,
                            save_snapshot=written.append)
    train.SpectronBrain.save_due_snapshots(fresh)  # a fresh run writes every minute it passes
    assert written == ["100min", "0min", "20min"]


def test_self_feeding_waits_for_its_minute_and_stays_on_after_a_resume():
    """--self_feeding_from_minutes: no self-fed inputs before that training minute, the fraction after it
    (a resumed run past the minute self-feeds from its first step)."""
    from types import SimpleNamespace

    import train
    from spectron_kit.recipe.checkpoints import TrainingClock

    clock = TrainingClock()
    model = SimpleNamespace(self_feeding=0.5)  # what the config says, before the first step
    brain = SimpleNamespace(clock=clock, model=model,
                            hparams=SimpleNamespace(self_feeding=0.5, self_feeding_from_minutes=89.0))
    clock.seconds = 10 * 60.0
    train.SpectronBrain.on_fit_batch_start(brain, None, True)
    assert model.self_feeding == 0.0
    clock.seconds = 89.5 * 60.0
    train.SpectronBrain.on_fit_batch_start(brain, None, True)
    assert model.self_feeding == 0.5
    resumed = SimpleNamespace(self_feeding=0.5)
    train.SpectronBrain.on_fit_batch_start(SimpleNamespace(clock=clock, model=resumed, hparams=brain.hparams),
                                           None, True)
    assert resumed.self_feeding == 0.5
    always = SimpleNamespace(self_feeding=0.5)  # 0 (the default): the config's fraction from the start
    train.SpectronBrain.on_fit_batch_start(
        SimpleNamespace(clock=TrainingClock(), model=always,
                        hparams=SimpleNamespace(self_feeding=0.5, self_feeding_from_minutes=0.0)), None, True)
    assert always.self_feeding == 0.5


def test_a_checkpoint_with_other_parameter_groups_resumes_with_fresh_moments(tmp_path, capsys):
    """Runs from before parameter_groups (two groups) still resume: weights and schedule load, moments restart."""
    import torch

    import train

    params = [torch.nn.Parameter(torch.ones(3)) for _ in range(3)]
    old = torch.optim.AdamW([{"params": params[:2]}, {"params": params[2:]}])
    sum(p.sum() for p in params).backward()
    old.step()
    torch.save(old.state_dict(), tmp_path / "optimizer.ckpt")
    new = torch.optim.AdamW([{"params": [p]} for p in params])
    train.load_optimizer_state(new, tmp_path / "optimizer.ckpt")
    assert "2 parameter groups, this run 3" in capsys.readouterr().out and not new.state
    same = torch.optim.AdamW([{"params": params[:2]}, {"params": params[2:]}])
    train.load_optimizer_state(same, tmp_path / "optimizer.ckpt")
    assert torch.equal(same.state[params[0]]["exp_avg"], old.state[params[0]]["exp_avg"])


def test_a_ctrl_c_inside_the_end_of_an_epoch_waits_for_it():
    """interrupts_deferred: the epoch's checkpoint and log line are written whole, then the interrupt ends the run."""
    import signal

    from spectron_kit.recipe import interrupts_deferred

    # Python's own Ctrl-C handler, as in a terminal (a suite started in the background ignores SIGINT)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        done = []
        with pytest.raises(KeyboardInterrupt):
            with interrupts_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                done.append("checkpoint")
                done.append("log line")
        assert done == ["checkpoint", "log line"]
        with interrupts_deferred():  # no interrupt: nothing raised, the handler is back
            done.append("again")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, outer)
