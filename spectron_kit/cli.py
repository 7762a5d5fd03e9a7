"""The ``spectron-kit`` command line.

    spectron-kit plugins [--json]
    spectron-kit continue --model DIR prompt.wav -o out.wav [--plot out.png]
    spectron-kit qa --model DIR question.wav -o answer.wav [--plot answer.png]
    spectron-kit new-plugin KIND NAME [--dir DIR]
"""
import argparse
import json
import logging
import sys

from rich.console import Console
from rich.table import Table

console = Console()
MIN_PROMPT_SECONDS = 0.5   # shorter input is refused (CLI and the demo server)
SILENT_PEAK = 1e-3         # a prompt whose peak amplitude is below this has no speech to continue


def cmd_plugins(args):
    """List every registered component with its provider."""
    from spectron_kit.registry import get_registry

    registry = get_registry()
    rows = [{"kind": e.kind, "name": e.name, "provider": e.provider, "version": e.version,
             "status": e.status, "description": e.description} for e in registry.entries()]
    plugins = [{"distribution": p.distribution, "version": p.version, "entry_point": p.entry_point,
                "hooks": p.hooks, "status": p.status} for p in registry.plugins]
    if args.json:
        print(json.dumps({"components": rows, "plugins": plugins}, indent=2))
        return 0
    table = Table(title="spectron-kit components")
    for column in ("kind", "name", "provider", "version", "status", "description"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(row[c] for c in ("kind", "name", "provider", "version", "status", "description")))
    console.print(table)
    if plugins:
        ptable = Table(title="third-party plugins")
        for column in ("distribution", "version", "entry point", "hooks", "status"):
            ptable.add_column(column, overflow="fold")
        for p in plugins:
            ptable.add_row(p["distribution"], p["version"], p["entry_point"], ", ".join(p["hooks"]), p["status"])
        console.print(ptable)
    return 0


def _load_model_and_audio(args, path):
    """The bundle of a generating command and its input audio, at the bundle's sample rate."""
    from spectron_kit.audio import load_audio
    from spectron_kit.model import SpectronModel

    model = SpectronModel.from_pretrained(args.model, map_location=args.device)
    rate = model.frontend.spec.sample_rate
    return model, load_audio(path, rate), rate


def _check_length(audio, rate, path, what):
    """At least ``MIN_PROMPT_SECONDS`` of input, or one line (exit 2)."""
    if len(audio) < int(MIN_PROMPT_SECONDS * rate):
        raise ValueError(f"{what} {path} is {len(audio) / rate:.2f} s long; give at least {MIN_PROMPT_SECONDS:g} s "
                         "of speech")



def _warn(notes):
    """Print each note as a warning."""
    for note in notes:
        console.print(f"[yellow]warning:[/yellow] {note}")


def _generate(model, audio, args, **kwargs):
    """One generation from the input audio, seeded as asked; a bundle without a vocoder is one line."""
    import torch

    if args.seed is not None:
        torch.manual_seed(args.seed)
    out = model.generate(audio, torch.tensor([len(audio)]), do_sample=args.sample, **kwargs)
    if out.waveforms is None:
        raise ValueError("the bundle has no vocoder; rebuild it with a vocoder to write audio")
    return out


def _plot(model, audio, label, out, generated_label, path):
    """The input's spectrogram above the generated one, on one colour scale."""
    from spectron_kit.plotting import plot_spectrograms

    feats, _ = model.frontend(audio[None].to(model.device))
    plot_spectrograms([(label, feats[0]), (generated_label, out.frames[0])], path, frame_rate=model.frame_rate,
                      title=out.text[0][:100])
    console.print(f"wrote {path}")


def cmd_continue(args):
    """Continue a spoken prompt with a trained bundle."""
    import torch

    from spectron_kit.audio import save_audio, to_samples

    model, wav, rate = _load_model_and_audio(args, args.prompt)
    prompt_seconds = args.prompt_seconds if args.prompt_seconds is not None else model.prompt_seconds
    prompt = wav[: to_samples(prompt_seconds, rate)]
    _check_length(prompt, rate, args.prompt, "prompt")
    _warn(prompt_warnings(args.prompt, prompt, rate, prompt_seconds))
    if args.stream:
        return _continue_streaming(model, prompt, args)
    out = _generate(model, prompt, args, max_seconds=args.seconds, stop=args.stop, temperature=args.temperature,
                    top_k=args.top_k, top_p=args.top_p)
    audio = out.waveforms[0]
    if args.with_prompt:
        audio = torch.cat([prompt.cpu(), audio])
    save_audio(args.output, audio, out.sample_rate)
    console.print(f"[bold]text[/bold] (prompt transcript + continuation): {out.text[0]}")
    _print_heard(out)
    t = out.timing
    console.print(f"wrote {args.output}: {len(out.waveforms[0]) / out.sample_rate:.2f} s of continuation "
                  f"({t['frames']} frames, stopped by {out.stopped_by[0]}, "
                  f"{t['frames_per_second']:.0f} frames/s, real-time factor {t['real_time_factor']:.3f})")
    if args.plot:
        _plot(model, prompt, "prompt", out, "generated continuation", args.plot)
    return 0


def _print_heard(out):
    """The model's text split into what it heard and what it continues with (models with a phoneme list)."""
    from spectron_kit.phonemes import split_heard

    heard, continued = split_heard(out.text[0], out.listed[0] if out.listed else [])
    if heard is not None:
        console.print(f"[bold]heard[/bold]: {heard}\n[bold]continues[/bold]: {continued}", markup=True,
                      highlight=False)


def _continue_streaming(model, prompt, args):
    """``continue --stream``: the text as it is written, the WAV growing chunk by chunk (a valid file at every
    moment), then the time to first audio."""
    import time

    import torch

    from spectron_kit.audio import ProgressiveWav

    if args.seed is not None:
        torch.manual_seed(args.seed)
    started = time.perf_counter()
    first_audio = speech_start = None
    with ProgressiveWav(args.output, model.frontend.spec.sample_rate) as wav:
        if args.with_prompt:
            wav.write(prompt)
        console.print("[bold]text[/bold] (prompt transcript + continuation): ", end="")
        for event in model.stream(prompt, max_seconds=args.seconds, stop=args.stop, do_sample=args.sample,
                                  temperature=args.temperature, top_k=args.top_k, top_p=args.top_p):
            if event.kind == "text":
                console.print(event.text, end="", markup=False, highlight=False)
            elif event.kind == "speech":
                speech_start = time.perf_counter() - started
                console.print("")
            elif event.kind == "audio" and len(event.audio):
                wav.write(event.audio)
                if first_audio is None:
                    first_audio = time.perf_counter() - started
            elif event.kind == "end":
                out = event.output
    total = time.perf_counter() - started
    _print_heard(out)
    seconds = len(out.waveforms[0]) / out.sample_rate
    console.print(f"wrote {args.output} as it was generated: {seconds:.2f} s of continuation "
                  f"({len(out.frames[0])} frames, stopped by {out.stopped_by[0]}); first audio after "
                  f"{first_audio if first_audio is not None else float('nan'):.2f} s "
                  f"({(first_audio or 0) - (speech_start or 0):.2f} s after the text), all in {total:.2f} s",
                  soft_wrap=True)
    if args.plot:
        _plot(model, prompt, "prompt", out, "generated continuation", args.plot)
    return 0


def cmd_serve(args):
    """A local web page: record or upload a prompt, read the text and hear the continuation as it is made."""
    from spectron_kit.serve import serve

    return serve(args.model, host=args.host, port=args.port, seconds=args.seconds, device=args.device,
                 allowed_origins=args.allow_origin, api_docs=args.api_docs)


def cmd_new_plugin(args):
    """Write a plugin package that passes its own tests."""
    from spectron_kit.scaffold import new_plugin

    root = new_plugin(args.kind, args.name, args.dir)
    console.print(f"wrote {root}: pip install -e {root} (then `spectron-kit plugins` lists {args.kind} / "
                  f"{args.name}); its tests: pytest {root}/tests")
    return 0


def cmd_qa(args):
    """Hear a spoken question; print the model's transcript and answer; write the spoken answer."""
    from spectron_kit.audio import save_audio, to_samples

    model, question, rate = _load_model_and_audio(args, args.question)
    _check_length(question, rate, args.question, "question")
    _warn(prompt_warnings(args.question, question, rate))  # a question is used whole: no length note
    if len(question) > to_samples(model.prompt_seconds, rate) + rate // 10:
        _warn([f"the question is {len(question) / rate:.2f} s, longer than the {model.prompt_seconds:g} s prompts "
               "the model was trained on"])
    out = _generate(model, question, args, max_seconds=args.seconds)
    save_audio(args.output, out.waveforms[0], out.sample_rate)
    console.print(f"[bold]text[/bold] (question transcript + answer): {out.text[0]}")
    console.print(f"wrote {args.output}: {len(out.waveforms[0]) / out.sample_rate:.2f} s of spoken answer")
    if args.plot:
        _plot(model, question, "question", out, "spoken answer", args.plot)
    return 0


def prompt_warnings(path, prompt, rate, prompt_seconds=None, name=None):
    """What about a prompt may surprise the user: resampled, mixed down, silent, and (with
    ``prompt_seconds``, the length trained on) shorter than trained on. ``name``: how the notes call the file
    (default its path)."""
    import soundfile

    from spectron_kit.audio import to_samples

    info = soundfile.info(str(path))
    name = path if name is None else name
    notes = []
    if info.samplerate != rate:
        notes.append(f"{name} is {info.samplerate} Hz; resampled to the model's {rate} Hz")
    if info.channels > 1:
        notes.append(f"{name} has {info.channels} channels; mixed down to mono")
    if prompt_seconds is not None and len(prompt) < to_samples(prompt_seconds, rate):
        notes.append(f"the prompt is {len(prompt) / rate:.2f} s, shorter than the {prompt_seconds:g} s the model "
                     "was trained on: expect a worse transcript and continuation")
    peak = float(prompt.abs().max()) if len(prompt) else 0.0
    if peak < SILENT_PEAK:
        notes.append(f"the prompt is silent (peak amplitude {peak:.1e}): the model has no speech to continue")
    return notes


def _generation_arguments(p, output_help):
    """The options every generating command shares: the bundle, the output, the plot, sampling, device."""
    p.add_argument("--model", required=True, help="bundle directory (save_pretrained) or hub id")
    p.add_argument("-o", "--output", required=True, help=output_help)
    p.add_argument("--plot", help="also write a spectrogram PNG here")
    p.add_argument("--sample", action="store_true", help="sample the text instead of greedy decoding")
    p.add_argument("--seed", type=int, help="random seed (sampling, pre-net dropout)")
    p.add_argument("--device", default="cpu")


def build_parser():
    parser = argparse.ArgumentParser(prog="spectron-kit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plugins", help="list registered components and plugins")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("continue", help="continue a spoken prompt with a trained model")
    p.add_argument("prompt", help="prompt audio file (its first --prompt-seconds are used)")
    _generation_arguments(p, "output audio file (.wav/.flac)")
    p.add_argument("--prompt-seconds", type=float, help="prompt length (default: the model's)")
    p.add_argument("--seconds", type=float, help="continuation budget in seconds (default: the model's)")
    p.add_argument("--stop", choices=["budget", "stop_head"], help="stop rule (default: the model's)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--with-prompt", action="store_true", help="write prompt + continuation")
    p.add_argument("--stream", action="store_true",
                   help="print the text as it is written and write the WAV as the audio is made")
    p.set_defaults(func=cmd_continue)

    p = sub.add_parser("new-plugin", help="write a plugin package (pyproject, module, README, tests) to start from")
    p.add_argument("kind", help="vocoder, prenet, postnet or loss")
    p.add_argument("name", help="component name, lower-case with _ (e.g. my_vocoder)")
    p.add_argument("--dir", default=".", help="where the package folder goes (default: here)")
    p.set_defaults(func=cmd_new_plugin)

    p = sub.add_parser("qa", help="answer a spoken question: its transcript, the answer text and the answer audio")
    p.add_argument("question", help="question audio file (used whole)")
    _generation_arguments(p, "spoken answer audio file (.wav/.flac)")
    p.add_argument("--seconds", type=float, default=3.0, help="length of the spoken answer (default 3 s)")
    p.set_defaults(func=cmd_qa)

    p = sub.add_parser("serve", help="a local demo page: record or upload a prompt, hear the continuation stream")
    p.add_argument("--model", required=True, help="bundle directory (save_pretrained) or hub id")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--seconds", type=float, help="continuation length in seconds (default: the model's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="also accept the pages of this origin (e.g. http://192.168.1.5:7860 when serving on "
                        "--host 0.0.0.0; repeatable); other sites' pages are refused")
    p.add_argument("--api-docs", action="store_true", help="also serve FastAPI's /docs and /openapi.json")
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=Console(stderr=True), show_path=False)])
    from spectron_kit.errors import one_line, traceback_wanted
    from spectron_kit.registry import RegistryError

    try:
        return args.func(args)
    except (RegistryError, ValueError, FileNotFoundError, FileExistsError, KeyError, TypeError) as err:
        if args.verbose or traceback_wanted():
            raise
        console.print(f"[red]error:[/red] {one_line(err)} (--verbose shows the traceback)", soft_wrap=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
