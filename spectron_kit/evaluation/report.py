"""Reports of a speech-continuation evaluation: JSON, Markdown and a samples page.

:func:`write_report` takes the result of
:func:`spectron_kit.evaluation.continuation.evaluate_continuation` and writes
into one folder:

- ``results.json``: configuration, per-utterance records, aggregates with
  95% bootstrap intervals, counts, hardware and date;
- ``results.md``: a metric table (value, 95% CI, n), the paper's Spectron
  numbers side by side (SPECTRON.md section 5) and what differs in the setup;
- ``samples.html``: a static page (relative links, opens from disk) with, per
  utterance, players for the prompt, the reference and the generated
  continuation, the spectrogram image and the three texts (reference
  transcript, the model's transcript + continuation, ASR of the generated
  audio). After loading, the page checks that every audio file and image
  loaded, shows a warning listing those that did not, and records the outcome
  in ``<html data-media-status='{"ok": n, "failed": [...], "pending": [...]}'
  data-media-done="1">`` (the browser test reads it).

Example:
    >>> fmt_value("prompt_wer", 0.1234)
    '12.3%'
    >>> fmt_value("perplexity", 126.084)
    '126.08'
"""
import datetime
import html
import json
import math
import os
import platform
from pathlib import Path
from urllib.parse import quote

from spectron_kit.jsonable import to_jsonable

__all__ = ["PAPER", "write_report", "write_results_json", "markdown_report", "speech_table", "samples_html",
           "print_summary", "fmt_value", "hardware_info"]

#: the paper's speech-continuation numbers (SPECTRON.md section 5)
PAPER = {
    "perplexity": {"spectron": 126.08,
                   "others": {"GSLM": 296.99, "TWIST-7B": 170.81, "SpeechGPT": 136.42}},
    "speaker_sim_generated": {"spectron": 0.42,
                              "others": {"AudioLM": 0.37, "TWIST-7B": 0.23, "SpeechGPT": 0.05}},
    "mos_generated": {"spectron": 3.68, "others": {}},
}
PAPER_SETUP = ("LibriSpeech test-clean, 3 s prompts, ASR transcripts scored with GPT-2, "
               "a 350M-parameter LM and a 600M-parameter speech encoder, human N-MOS ratings")

RESULTS_JSON, RESULTS_MD, SAMPLES_HTML = "results.json", "results.md", "samples.html"

_PERCENT = ("prompt_wer", "text_speech_wer", "text_speech_wer_whole")
_DECIMALS = {"perplexity": 2, "mean_perplexity": 2, "log_perplexity": 3, "mean_log_perplexity": 3,
             "frames_per_second": 1, "real_time_factor": 3}


def fmt_value(key, value):
    """Format one metric value for tables (WER as a percentage).

    Arguments:
        key: metric key (e.g. ``"prompt_wer"``).
        value: the number (None or NaN gives ``"-"``).

    Returns:
        str.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key in _PERCENT:
        return f"{100 * value:.1f}%"
    return f"{value:.{_DECIMALS.get(key, 3)}f}"


def _ci(key, entry):
    return f"[{fmt_value(key, entry['low'])}, {fmt_value(key, entry['high'])}]"


def hardware_info():
    """Where the evaluation ran: platform, CPU count, Python, torch, accelerator.

    Returns:
        dict of strings and numbers.
    """
    info = {"platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["accelerator"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU)"
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    return info


def checkout_commit(folder=None):
    """The short commit hash of the git checkout at ``folder`` (default: the one this package runs from);
    None outside a git checkout."""
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=30,
                              cwd=folder or Path(__file__).resolve().parents[2]).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_results_json(result, path, setup=None):
    """Write the whole evaluation (config, records, aggregates) as JSON.

    Arguments:
        result: dict from ``evaluate_continuation``.
        path: output file.
        setup: extra description of the run (model bundle, test set, ...),
            stored under ``setup``.

    Returns:
        The path written.
    """
    payload = {"date": result.get("date") or _now(), "hardware": result.get("hardware") or hardware_info(),
               "setup": setup or {}, "config": result.get("config", {}), "counts": result.get("counts", {}),
               "aggregates": result.get("aggregates", {}), "speech": result.get("speech", {}),
               "batches": result.get("batches", []),
               "records": result.get("records", [])}
    path = Path(path)
    text = json.dumps(to_jsonable(payload, nonfinite_to_none=True), indent=2, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _metric_rows(aggregates):
    return [(key, e["label"], fmt_value(key, e["value"]), _ci(key, e), str(e["n"]),
             {"lower": "lower is better", "higher": "higher is better"}.get(e.get("better"), "reference")
             + (f"; {e['note']}" if e.get("note") else ""))
            for key, e in aggregates.items()]


def _setup_difference(result, setup):
    cfg, counts = result.get("config", {}), result.get("counts", {})
    comps = cfg.get("components", {})
    test = (setup or {}).get("test_set", "the given test set")
    return (f"Setup difference: the paper used {PAPER_SETUP}. This run: {counts.get('evaluated', '?')} "
            f"utterances of {test}, {cfg.get('prompt_seconds', '?')} s prompts, length rule "
            f"'{cfg.get('length_rule', '?')}', transcriber {comps.get('transcriber', '?')}, LM scorer "
            f"{comps.get('lm_scorer', '?')}, speaker encoder {comps.get('speaker_encoder', '?')}, "
            f"{cfg.get('mos_label', 'predicted MOS')} instead of human ratings. Absolute values depend on "
            "the ASR, scoring LM and speaker encoder, so compare with the paper only in direction and "
            "against the baselines in the table above, which were computed the same way.")


def _cell(entry, percent):
    if entry is None:
        return "-"
    if percent:
        return f"{100 * entry['value']:.1f}% [{100 * entry['low']:.1f}, {100 * entry['high']:.1f}]"
    return f"{_num(entry['value'])} [{_num(entry['low'])}, {_num(entry['high'])}]"


def _num(x):
    """Numbers of any scale in a table: one decimal from 100 up (perplexities), three below."""
    return f"{x:.1f}" if abs(x) >= 100 else f"{x:.3f}"


def _scorer_columns(result):
    """``[(key, heading, percent)]`` of the scorers in the result, in the YAML's order."""
    speech = result.get("speech") or {}
    cols = []
    for info in (result.get("config") or {}).get("scorers") or ():
        if any(info["key"] in entries for entries in speech.values()):
            better = {"lower": " (lower is better)", "higher": " (higher is better)"}.get(info.get("better"), "")
            cols.append((info["key"], f"{info['label']}{better}", bool(info.get("percent"))))
    return cols


def speech_table(result):
    """Markdown lines: every scorer on the ceilings, the generation and the floors.

    Arguments:
        result: dict from ``evaluate_continuation`` (uses ``result["speech"]``
            and the scorer descriptions in ``result["config"]["scorers"]``).

    Returns:
        list of str (empty when the result has no per-condition metrics).
    """
    from spectron_kit.evaluation.continuation import CONDITION_LABELS

    speech, cfg = result.get("speech") or {}, result.get("config", {})
    cols = _scorer_columns(result)
    if not speech or not cols:
        return []
    lines = ["## Speech: ceilings, generation and floors (same utterances)", "",
             "| audio | " + " | ".join(f"{head} [95% CI]" for _, head, _ in cols) + " | n |",
             "| --- | " + " | ".join("---:" for _ in cols) + " | ---: |"]
    for cond, entries in speech.items():
        n = max((e["n"] for e in entries.values()), default=0)
        cells = " | ".join(_cell(entries.get(key), percent) for key, _, percent in cols)
        lines.append(f"| {CONDITION_LABELS.get(cond, cond)} | {cells} | {n} |")
    limit = cfg.get("continuation_limit_seconds")
    lines += ["", "One column per scorer (`scorers` in evaluate.yaml); a blank cell is a metric that does not "
              "apply to that audio. ASR WER is measured against the words the audio should say: the "
              "reference continuation's words for (a), (b), (c) and the flat floor; the model's own text "
              "continuation for (d). (c) vs (d) separates alignment from exposure bias; (b) vs (d) is what "
              "the model still loses; the flat floor is a model that says the average spectrum at every step; "
              "the other-speaker floor compares each prompt with another speaker's continuation."]
    if limit:
        lines += ["", f"Continuations are cut at {limit:g} s"
                  + (" (the length the model was trained to speak)"
                     if cfg.get("max_continuation_seconds") is None else "")
                  + "; a cut reference keeps the words spoken before the cut (a word counts when its middle "
                  "lies before it), and so does a generation cut by its frame budget when the model wrote its "
                  "speech as phonemes (a word counts when the phonemes it spoke reach the middle of the word's "
                  "phonemes). The WER against the model's whole text is in the results table."]
    return lines + [""]


def markdown_report(result, setup=None, title="Speech continuation evaluation"):
    """The Markdown report: metric table, paper comparison, setup difference, notes.

    Arguments:
        result: dict from ``evaluate_continuation``.
        setup: dict describing the run (``model``, ``test_set``, ``command``...).
        title: heading.

    Returns:
        str (Markdown).
    """
    setup = setup or {}
    agg, cfg, counts = result.get("aggregates", {}), result.get("config", {}), result.get("counts", {})
    hw = result.get("hardware") or hardware_info()
    lines = [f"# {title}", ""]
    for key in ("model", "test_set", "command"):
        if setup.get(key):
            lines.append(f"- {key.replace('_', ' ')}: `{setup[key]}`")
    lines += [f"- date: {result.get('date') or _now()}",
              f"- hardware: {hw.get('accelerator', '?')}, {hw.get('cpu_count', '?')} CPUs, {hw.get('platform', '?')}, "
              f"torch {hw.get('torch', '?')}",
              f"- protocol: prompt {cfg.get('prompt_seconds')} s, length rule `{cfg.get('length_rule')}`, "
              f"{'sampling' if cfg.get('do_sample') else 'greedy'} text decoding, seed {cfg.get('seed')}, "
              f"batch size {cfg.get('batch_size')}",
              f"- utterances: {counts.get('evaluated', 0)} evaluated of {counts.get('rows', 0)} "
              f"({counts.get('too_short', 0)} shorter than prompt + {cfg.get('min_continuation_seconds', 0.5)} s "
              "skipped)", ""]
    lines += ["## Results", "", "| metric | value | 95% CI | n | |", "| --- | ---: | --- | ---: | --- |"]
    for key, label, value, ci, n, note in _metric_rows(agg):
        lines.append(f"| {label} | {value} | {ci} | {n} | {note} |")
    lines += ["", "Intervals: percentile bootstrap over utterances (speed: over batches), "
              f"{cfg.get('n_resamples', 1000)} resamples, seed {cfg.get('seed')}.", ""]
    lines += speech_table(result)

    lines += _paper_comparison(result, setup, agg, cfg)
    notes = _notes(counts, cfg)
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += [f"Samples: [{SAMPLES_HTML}]({SAMPLES_HTML}); every number: [{RESULTS_JSON}]({RESULTS_JSON}).", ""]
    return "\n".join(lines)


def _paper_comparison(result, setup, agg, cfg):
    """The report's paper comparison: this run's Table 1 values beside the paper's, and the setup difference."""
    lines = ["## Paper comparison", "",
              "| metric | this run | paper: Spectron | paper: other systems |", "| --- | ---: | ---: | --- |"]
    rows = (("perplexity", "perplexity of the ASR transcript (the paper's \"log-perplexity\" column)"),
            ("speaker_sim_generated", "speaker similarity, prompt vs continuation"),
            ("mos_generated", "naturalness MOS"))
    for key, label in rows:
        paper = PAPER[key]
        ours = fmt_value(key, agg[key]["value"]) if key in agg else "-"
        if key in agg and agg[key].get("note"):  # e.g. empty ASR transcripts, left out: say so beside the value
            ours += f" ({agg[key]['note']})"
        elif key == "perplexity" and key not in agg:
            ours = "- (no ASR transcript had words: no perplexity to compare)"
        spectron = f"{paper['spectron']:g}"
        if key == "mos_generated":
            ours = f"{ours} ({cfg.get('mos_label', 'predicted MOS')})"
            spectron += " (human N-MOS)"
        others = ", ".join(f"{k} {v:g}" for k, v in paper["others"].items()) or "-"
        lines.append(f"| {label} | {ours} | {spectron} | {others} |")
    lines += ["", "The paper's \"log-perplexity\" values (e.g. 126.08) are on the scale of a perplexity, so "
              "they are set against this run's corpus perplexity; the mean NLL per token is in the table above.",
              "", _setup_difference(result, setup), ""]
    return lines


def _notes(counts, cfg):
    """The report's notes: what was approximated, cut, skipped or left out, with counts."""
    notes = []
    n_align = counts.get("prompt_text_from_alignments", 0)
    n_eval = counts.get("evaluated", 0)
    if n_align < n_eval:
        notes.append(f"The prompt WER reference came from word alignments for {n_align} of {n_eval} utterances; "
                     "for the others it is approximated by the first round(n_words x prompt_seconds / duration) "
                     "words of the transcript (constant speaking rate).")
    if counts.get("truncated"):
        seconds = cfg.get("continuation_limit_seconds") or cfg.get("max_continuation_seconds")
        where = (f"the {seconds:g} s limit (max_continuation_seconds, or the length the model was trained on)"
                 if seconds else "the frame budget")
        notes.append(f"{counts['truncated']} reference continuations were longer than {where}, or than what fits "
                     f"in the LM context of {cfg.get('lm_context')} positions after the prompt and a full text "
                     "budget, and were cut there, so reference and generated audio have the same length; the "
                     "words spoken before the cut are their reference text.")
    if counts.get("generation_cut"):
        notes.append(f"{counts['generation_cut']} generations were cut by their frame budget before the model "
                     "had spoken its whole text; their WER is measured against the words spoken before the cut "
                     "(from the phonemes the model wrote), and against the whole text in its own row.")
    if counts.get("no_other_speaker"):
        notes.append(f"{counts['no_other_speaker']} utterances had no other speaker to draw the "
                     "other-speaker baseline from.")
    if counts.get("empty_generation"):
        notes.append(f"{counts['empty_generation']} generations were shorter than 0.1 s; their speaker "
                     "similarity and MOS are left out.")
    return notes


# ---------------------------------------------------------------------------
# samples page

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0} td,th{border:1px solid #ccc;padding:4px 8px;font-size:.9em}
th{background:#f3f3f3} td.num{text-align:right}
section.utt{border-top:2px solid #ddd;padding:1em 0}
.players{display:grid;grid-template-columns:repeat(3,1fr);gap:1em}
.players div{background:#fafafa;padding:.5em;border-radius:4px}
.players audio{width:100%}
img.spec{max-width:100%;margin-top:.5em}
dl{display:grid;grid-template-columns:14em 1fr;gap:.3em 1em} dt{font-weight:600} dd{margin:0}
.prompt-part{background:#e6f0ff} .meta{color:#666;font-size:.9em}
#media-warning{display:none;background:#fee;border:1px solid #c00;padding:.5em 1em}
"""

# Checks every <audio> (metadata loaded, duration > 0, no error) and <img>
# (decoded, naturalWidth > 0) after load; writes the outcome on <html> and
# shows a warning listing what failed.
_MEDIA_CHECK = """
(function () {
  var started = Date.now();
  function status() {
    var s = {ok: 0, failed: [], pending: []};
    document.querySelectorAll("audio").forEach(function (a) {
      var src = a.getAttribute("src");
      if (a.error) s.failed.push(src);
      else if (a.readyState >= 1 && a.duration > 0) s.ok++;
      else s.pending.push(src);
    });
    document.querySelectorAll("img").forEach(function (i) {
      var src = i.getAttribute("src");
      if (i.complete && i.naturalWidth > 0) s.ok++;
      else if (i.complete) s.failed.push(src);
      else s.pending.push(src);
    });
    return s;
  }
  function poll() {
    var s = status(), root = document.documentElement;
    root.setAttribute("data-media-status", JSON.stringify(s));
    if (s.pending.length && Date.now() - started < 15000) { setTimeout(poll, 50); return; }
    root.setAttribute("data-media-done", "1");
    var bad = s.failed.concat(s.pending);
    if (bad.length) {
      var w = document.getElementById("media-warning");
      w.textContent = bad.length + " media file(s) did not load: " + bad.join(", ");
      w.style.display = "block";
    }
  }
  window.addEventListener("load", poll);
})();
"""


def _e(text):
    return html.escape(str(text if text is not None else ""))


def _src(rel):
    return quote(str(rel).replace(os.sep, "/"))


def _fmt(value, digits=3):
    return "-" if value is None else f"{value:.{digits}f}"


def _model_text_html(rec):
    prompt, cont = rec.get("model_prompt_transcript", ""), rec.get("model_continuation_text", "")
    parts = []
    if prompt:
        parts.append(f'<span class="prompt-part" title="taken as its transcript of the prompt">{_e(prompt)}</span>')
    if cont:
        parts.append(_e(cont))
    return " ".join(parts) or "<em>(no text)</em>"


def _reference_text_html(rec):
    words = (rec.get("reference_text") or "").split()
    prompt = (rec.get("reference_prompt_text") or "").split()
    if prompt and words[:len(prompt)] == prompt:
        return (f'<span class="prompt-part" title="spoken in the prompt">{_e(" ".join(prompt))}</span> '
                f'{_e(" ".join(words[len(prompt):]))}')
    return _e(" ".join(words)) or "<em>(no transcript)</em>"


#: audio players of a sample, in page order
_PLAYERS = (("prompt", "prompt"), ("reference", "(a) reference continuation"),
            ("vocoded", "(b) vocoder on the reference frames"),
            ("teacher_forced", "(c) teacher-forced"), ("generated", "(d) generated continuation"),
            ("flat", "floor: mean frame"))


def _ceiling_transcripts(rec):
    """<dt>/<dd> pairs: the ASR transcript of each ceiling, with its WER."""
    speech = rec.get("speech") or {}
    out = []
    for cond, label in (("reference", "ASR of (a) reference audio"), ("vocoded", "ASR of (b) vocoded reference"),
                        ("teacher_forced", "ASR of (c) teacher-forced")):
        if cond in speech:
            m = speech[cond]
            out.append(f"<dt>{_e(label)}</dt><dd>{_e(m.get('asr')) or '<em>(empty)</em>'} "
                       f'<span class="meta">(WER {fmt_value("text_speech_wer", m.get("wer"))})</span></dd>')
    return out


def samples_html(result, setup=None, title="Speech continuation samples"):
    """The static samples page (paths relative to the report folder).

    Arguments:
        result: dict from ``evaluate_continuation`` (records whose
            ``samples`` are empty are not shown).
        setup: dict describing the run (``model``, ``test_set``).
        title: page title.

    Returns:
        str (HTML).
    """
    setup = setup or {}
    agg, cfg = result.get("aggregates", {}), result.get("config", {})
    records = [r for r in result.get("records", []) if r.get("samples")]
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{_e(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
           f"<h1>{_e(title)}</h1>", '<div id="media-warning" role="alert"></div>']
    meta = [f"{k.replace('_', ' ')}: {_e(setup[k])}" for k in ("model", "test_set") if setup.get(k)]
    meta.append(f"prompt {_e(cfg.get('prompt_seconds'))} s, length rule {_e(cfg.get('length_rule'))}, "
                f"{_e(cfg.get('mos_label', 'predicted MOS'))}")
    out.append(f'<p class="meta">{"<br>".join(meta)}</p>')
    if agg:
        out += ["<table>", "<tr><th>metric</th><th>value</th><th>95% CI</th><th>n</th></tr>"]
        for key, label, value, ci, n, _ in _metric_rows(agg):
            out.append(f'<tr><td>{_e(label)}</td><td class="num">{_e(value)}</td><td>{_e(ci)}</td>'
                       f'<td class="num">{_e(n)}</td></tr>')
        out.append("</table>")
    total = len(result.get("records", []))
    if len(records) < total:
        out.append(f'<p class="meta">{len(records)} of {total} utterances shown; all are in '
                   f'<a href="{RESULTS_JSON}">{RESULTS_JSON}</a>.</p>')
    for rec in records:
        s = rec["samples"]
        out.append(f'<section class="utt" id="{_e(rec["id"])}">')
        out.append(f'<h2>{_e(rec["id"])} <span class="meta">speaker {_e(rec.get("speaker") or "?")}, '
                   f'{rec.get("duration", 0):.2f} s</span></h2>')
        out.append('<div class="players">')
        for key, label in _PLAYERS:
            if key in s:
                out.append(f'<div><div>{_e(label)}</div><audio controls preload="metadata" '
                           f'src="{_e(_src(s[key]))}"></audio></div>')
        out.append("</div>")
        if "spectrogram" in s:
            out.append(f'<img class="spec" src="{_e(_src(s["spectrogram"]))}" '
                       f'alt="spectrograms of {_e(rec["id"])}: prompt, reference, generated">')
        out += ["<dl>",
                f"<dt>reference transcript</dt><dd>{_reference_text_html(rec)}</dd>",
                f"<dt>model: transcript + continuation</dt><dd>{_model_text_html(rec)}</dd>",
                f"<dt>ASR of generated audio</dt><dd>{_e(rec.get('asr_generated')) or '<em>(empty)</em>'}</dd>",
                *_ceiling_transcripts(rec),
                "</dl>",
                f'<p class="meta">speaker similarity {_fmt(rec.get("speaker_sim_generated"))} '
                f'(ground truth {_fmt(rec.get("speaker_sim_reference"))}, other speaker '
                f'{_fmt(rec.get("speaker_sim_other_speaker"))}); {_e(cfg.get("mos_label", "predicted MOS"))} '
                f'{_fmt(rec.get("mos_generated"), 2)} (reference {_fmt(rec.get("mos_reference"), 2)}); '
                f'perplexity {_fmt(rec.get("perplexity"), 1)}; '
                f'prompt WER {fmt_value("prompt_wer", rec.get("prompt_wer"))}; '
                f'text-speech WER {fmt_value("text_speech_wer", rec.get("text_speech_wer"))}</p>',
                "</section>"]
    out += [f"<script>{_MEDIA_CHECK}</script>", "</body>", "</html>", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------
# console and entry point


def print_summary(result, console=None, title="Speech continuation"):
    """Print the metric table with rich.

    Arguments:
        result: dict from ``evaluate_continuation``.
        console: a ``rich.console.Console`` (default: a new one).
        title: table title.

    Returns:
        The ``rich.table.Table`` printed.
    """
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for name, justify in (("metric", "left"), ("value", "right"), ("95% CI", "left"), ("n", "right"),
                          ("", "left")):
        table.add_column(name, justify=justify)
    for _, label, value, ci, n, note in _metric_rows(result.get("aggregates", {})):
        table.add_row(label, value, ci, n, note)
    (console or Console()).print(table)
    return table


def split_comparison(results):
    """Markdown lines: every scorer on every condition, one column per test split, side by side.

    Arguments:
        results: ``{split name: evaluate_continuation result}`` in column order
            (e.g. ``test_seen`` = unseen sentences in training voices, ``test`` = unseen voices).

    Returns:
        list of str.

    Example:
        >>> r = {"speech": {"generated": {"wer": {"label": "WER", "value": 0.5, "low": 0.4, "high": 0.6, "n": 3}}},
        ...      "config": {"scorers": [{"key": "wer", "label": "WER", "percent": True, "better": "lower"}]},
        ...      "aggregates": {}}
        >>> split_comparison({"a": r, "b": r})[4]
        '| WER (lower is better) | (d) model, free-running generation | 50.0% [40.0, 60.0] | 50.0% [40.0, 60.0] |'
    """
    from spectron_kit.evaluation.continuation import CONDITION_LABELS

    names = list(results)
    columns = {}
    for result in results.values():
        for key, head, percent in _scorer_columns(result):
            columns.setdefault(key, (head, percent))
    conditions = list(dict.fromkeys(c for r in results.values() for c in (r.get("speech") or {})))
    lines = ["## Every split side by side (95% bootstrap intervals)", "",
             "| metric | audio | " + " | ".join(names) + " |",
             "| --- | --- | " + " | ".join("---:" for _ in names) + " |"]
    for key, (head, percent) in columns.items():
        for cond in conditions:
            cells = [_cell((results[n].get("speech") or {}).get(cond, {}).get(key), percent) for n in names]
            if all(c == "-" for c in cells):
                continue
            lines.append(f"| {head} | {CONDITION_LABELS.get(cond, cond)} | " + " | ".join(cells) + " |")
    prompt = [results[n].get("aggregates", {}).get("prompt_wer") for n in names]
    if any(prompt):
        lines.append("| prompt transcript WER | the model's text | "
                     + " | ".join(_cell(e, True) if e else "-" for e in prompt) + " |")
    counts = [str((results[n].get("counts") or {}).get("evaluated", "?")) for n in names]
    lines += ["| utterances | | " + " | ".join(counts) + " |", ""]
    return lines


def write_report(result, out_dir, setup=None, print_table=True, console=None):
    """Write ``results.json``, ``results.md`` and ``samples.html`` into ``out_dir``.

    Arguments:
        result: dict from ``evaluate_continuation``.
        out_dir: the folder that holds ``samples/`` (paths in the records are
            relative to it).
        setup: dict describing the run: ``model`` (bundle), ``test_set``,
            ``command`` and anything else worth keeping.
        print_table: print the metric table with rich at the end.
        console: rich console to print to.

    Returns:
        dict ``{"json": path, "markdown": path, "html": path}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = dict(result)
    result.setdefault("date", _now())
    result.setdefault("hardware", hardware_info())
    paths = {"json": write_results_json(result, out_dir / RESULTS_JSON, setup),
             "markdown": out_dir / RESULTS_MD, "html": out_dir / SAMPLES_HTML}
    paths["markdown"].write_text(markdown_report(result, setup), encoding="utf-8")
    paths["html"].write_text(samples_html(result, setup), encoding="utf-8")
    if print_table:
        print_summary(result, console)
    return paths
