"""A local demo server: record or upload a prompt in the browser, read the text as it is written, hear the
continuation while it is generated, see the spectrograms.

    pip install -e '.[serve]'
    spectron-kit serve --model results/spectron_mini/1234/bundle      # then open http://127.0.0.1:7860

Built on FastAPI with a WebSocket (uvicorn serves it): a WebSocket carries the
events of :meth:`SpectronModel.stream` as they happen (text pieces as JSON,
audio chunks as binary float32 PCM), which a plain HTTP response cannot do
both ways, and FastAPI/uvicorn are small, well-kept and need no front-end
build (Gradio would bring a large front end of its own for one page). The page
itself is plain HTML and JavaScript (below): it records with the Web Audio API
and sends a WAV, so the server reads every upload with libsndfile.

One model serves every visitor: requests wait in a queue (each visitor is told
its place) and run one at a time in a worker thread, so the server keeps
answering while it generates. Bad input (not audio, too short, too long,
silent, too large) gets one message on the page; the connection stays usable.
"""

import asyncio
import base64
import io
import json
import logging
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import soundfile
import torch

from spectron_kit.audio import load_audio, pcm_samples, to_samples
from spectron_kit.cli import MIN_PROMPT_SECONDS, SILENT_PEAK, prompt_warnings
from spectron_kit.phonemes import split_heard

logger = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: uvicorn's WebSocket message limit: well above the upload limit, so an upload too large is answered by the
#: server's own message (uvicorn's default, 16 MiB, dropped the connection first); the page itself refuses a
#: file over MAX_UPLOAD_BYTES before sending it
WEBSOCKET_MAX_BYTES = 64 * 1024 * 1024
#: host names that reach this machine only: the page's own origin must use one of them (or an allowed origin),
#: so a page elsewhere cannot drive the model through DNS rebinding either
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
MAX_PROMPT_SECONDS = 60.0


class BadPrompt(ValueError):
    """An upload the server cannot continue; its text is shown on the page."""


def read_prompt(data, rate, prompt_seconds):
    """Upload bytes -> ``(prompt [S] at ``rate``, notes)``: the first ``prompt_seconds`` of the audio.

    Raises :class:`BadPrompt` (one line naming the problem and the fix) for input that is not audio, empty,
    too short, too long, too large or silent; resampling and mixing down are notes, not errors.
    """
    if not data:
        raise BadPrompt("the upload is empty; record or choose an audio file (WAV, FLAC or OGG)")
    if len(data) > MAX_UPLOAD_BYTES:
        raise BadPrompt(f"the upload is {len(data) / 2 ** 20:.1f} MB; give at most {MAX_UPLOAD_BYTES // 2 ** 20} MB "
                        "(only the first seconds are used)")
    with tempfile.NamedTemporaryFile(suffix=".audio") as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            info = soundfile.info(tmp.name)
        except Exception:  # soundfile raises its own error types
            raise BadPrompt("the upload is not audio that can be read (WAV, FLAC or OGG); record one here or "
                            "convert the file") from None
        seconds = info.frames / max(info.samplerate, 1)
        if seconds > MAX_PROMPT_SECONDS:
            raise BadPrompt(f"the audio is {seconds:.1f} s long; give at most {MAX_PROMPT_SECONDS:g} s (the model "
                            f"reads the first {prompt_seconds:g} s)")
        try:
            wav = load_audio(tmp.name, rate)
        except ValueError as err:
            raise BadPrompt(str(err).replace(tmp.name, "the upload")) from None
        if len(wav) < to_samples(MIN_PROMPT_SECONDS, rate):
            raise BadPrompt(f"the audio is {len(wav) / rate:.2f} s long; give at least {MIN_PROMPT_SECONDS:g} s "
                            f"of speech ({prompt_seconds:g} s is what the model was trained on)")
        prompt = wav[: to_samples(prompt_seconds, rate)]
        peak = float(prompt.abs().max())
        if peak < SILENT_PEAK:
            raise BadPrompt(f"the first {len(prompt) / rate:.1f} s are silent (peak {peak:.1e}); record closer to "
                            "the microphone or choose a file with speech at its start")
        notes = prompt_warnings(tmp.name, prompt, rate, prompt_seconds, name="the audio")  # as the CLI's
    return prompt, notes


def _wav_bytes(audio, rate):
    buffer = io.BytesIO()
    soundfile.write(buffer, pcm_samples(audio), int(rate), format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _spectrogram_png(model, prompt, frames, text):
    from spectron_kit.plotting import plot_spectrograms

    feats, _ = model.frontend(prompt[None].to(model.device))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "s.png"
        plot_spectrograms([("prompt", feats[0]), ("generated continuation", frames)], path,
                          frame_rate=model.frame_rate, title=text[:100])
        return path.read_bytes()


class DemoServer:
    """The app and its queue around one model.

    Arguments:
        model: a ``SpectronModel`` with a vocoder.
        seconds: continuation length (default: the model's ``max_seconds``).
        chunk_frames: frames of the first streamed audio chunk (later ones grow, see ``SpectronModel.stream``).
        allowed_origins: origins (``scheme://host:port``) besides the page's own whose pages may open the
            WebSocket; a browser sends its page's origin, and any other is refused, so a web page the user
            visits while the demo runs cannot use the model.
        host: the address the server listens on: the page's own origin counts when it names this host or a
            loopback name.
        api_docs: serve FastAPI's ``/docs`` and ``/openapi.json`` (off by default).
    """

    def __init__(self, model, seconds=None, chunk_frames=16, allowed_origins=(), host="127.0.0.1", api_docs=False):
        if model.vocoder is None:
            raise ValueError("the bundle has no vocoder; load it with one to serve audio")
        self.model = model.eval()
        self.seconds = seconds
        self.chunk_frames = int(chunk_frames)
        self.rate = model.frontend.spec.sample_rate
        self.lock = threading.Lock()      # one generation at a time
        self.waiting = 0
        self.served = 0
        self.allowed_origins = {_origin(o) for o in allowed_origins}
        self.trusted_hosts = set(LOOPBACK_HOSTS) | ({host} if host not in ("0.0.0.0", "::", "") else set())
        self.api_docs = bool(api_docs)

    def origin_allowed(self, origin, host_header):
        """Whether a WebSocket whose page came from ``origin`` may use the model.

        No ``Origin`` header: not a browser (a script or the CLI, which could reach the model anyway). The
        page's own origin (the ``Host`` the request names, on a trusted host name) and ``allowed_origins`` pass.
        """
        if origin is None:
            return True
        origin = origin.strip().lower()
        if origin in self.allowed_origins:
            return True
        parsed = urlsplit(origin)
        own = (host_header or "").strip().lower()
        return bool(own) and parsed.netloc == own and (parsed.hostname or "") in self.trusted_hosts

    def app(self):
        from fastapi import FastAPI, WebSocket, WebSocketDisconnect
        from fastapi.responses import HTMLResponse

        docs = {} if self.api_docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
        app = FastAPI(title="spectron-kit demo", **docs)

        @app.get("/", response_class=HTMLResponse)
        def page():
            return PAGE.replace("__RATE__", str(self.rate)).replace("__MAX_UPLOAD__", str(MAX_UPLOAD_BYTES)).replace(
                "__PROMPT_SECONDS__", f"{self.model.prompt_seconds:g}")

        @app.get("/health")
        def health():
            return {"ok": True, "waiting": self.waiting, "served": self.served}

        @app.websocket("/ws")
        async def continuation(socket: WebSocket):
            origin = socket.headers.get("origin")
            if not self.origin_allowed(origin, socket.headers.get("host")):
                logger.warning("refused a WebSocket from the page of %s; to allow it, serve with --allow-origin %s",
                               origin, origin)
                await socket.close(code=1008)  # before accept: the browser's handshake fails (HTTP 403)
                return
            await socket.accept()
            try:
                while True:
                    message = await socket.receive()
                    if message["type"] == "websocket.disconnect":
                        return
                    if message.get("bytes") is None:  # a text message: the page sends the file's bytes
                        await socket.send_text(json.dumps({"type": "error", "message": (
                            "the demo expects an audio file's bytes in one binary message; got a text message")}))
                        continue
                    await self.answer(socket, message["bytes"])
            except WebSocketDisconnect:
                return

        return app

    async def answer(self, socket, data):
        """One request: check the upload, wait for the model, stream the events back."""
        try:
            prompt, notes = read_prompt(data, self.rate, self.model.prompt_seconds)
        except BadPrompt as err:
            await socket.send_text(json.dumps({"type": "error", "message": str(err)}))
            return
        for note in notes:
            await socket.send_text(json.dumps({"type": "note", "message": note}))
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        self.waiting += 1
        if self.lock.locked():
            await socket.send_text(json.dumps({"type": "queued", "position": self.waiting - 1}))
        worker = threading.Thread(target=self._generate, args=(prompt, loop, events), daemon=True)
        worker.start()
        while True:
            kind, payload = await events.get()
            if kind == "bytes":
                await socket.send_bytes(payload)
            else:
                await socket.send_text(json.dumps(payload))
            if kind == "done":
                break

    def _generate(self, prompt, loop, events):
        def send(kind, payload):
            loop.call_soon_threadsafe(events.put_nowait, (kind, payload))

        with self.lock:
            self.waiting -= 1
            started = time.perf_counter()
            send("json", {"type": "started"})
            try:
                audio, first = [], None
                for event in self.model.stream(prompt, max_seconds=self.seconds, chunk_frames=self.chunk_frames):
                    now = time.perf_counter() - started
                    if event.kind == "text":
                        send("json", {"type": "text", "text": event.text, "t": now})
                    elif event.kind == "speech":
                        send("json", {"type": "speech", "text": event.text, "t": now})
                    elif event.kind == "audio" and len(event.audio):
                        first = now if first is None else first
                        audio.append(event.audio)
                        send("json", {"type": "audio", "samples": int(len(event.audio)), "t": now})
                        send("bytes", event.audio.float().numpy().astype("<f4").tobytes())
                    elif event.kind == "end":
                        out = event.output
                whole = torch.cat(audio) if audio else torch.zeros(0)
                png = _spectrogram_png(self.model, prompt, out.frames[0], out.text[0])
                heard, continued = split_heard(out.text[0], out.listed[0] if out.listed else [])
                self.served += 1
                send("done", {"type": "end", "text": out.text[0], "heard": heard, "continuation": continued,
                              "seconds": len(whole) / self.rate,
                              "first_audio_s": first, "total_s": time.perf_counter() - started,
                              "wav": base64.b64encode(_wav_bytes(whole, self.rate)).decode(),
                              "spectrogram": base64.b64encode(png).decode()})
            except Exception as err:  # the server keeps serving: the visitor gets the reason
                logger.exception("generation failed")
                send("done", {"type": "error", "message": f"generation failed: {err}"})


def server_config(app, host="127.0.0.1", port=7860):
    """uvicorn's settings for the demo: its WebSocket message limit above the upload limit."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=int(port), log_level="warning", ws_max_size=WEBSOCKET_MAX_BYTES)


def _origin(text):
    """``scheme://host[:port]`` of an origin the user names, lower-cased; a path or a missing scheme is refused."""
    parsed = urlsplit(str(text).strip().lower())
    if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path not in ("", "/"):
        raise ValueError(f"--allow-origin {text!r}: give an origin as a browser sends it, e.g. "
                         "http://192.168.1.5:7860 (scheme, host and port; no path)")
    return f"{parsed.scheme}://{parsed.netloc}"


def serve(model_dir, host="127.0.0.1", port=7860, seconds=None, device="cpu", allowed_origins=(), api_docs=False):
    """Load a bundle and serve the demo page until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise ValueError("spectron-kit serve needs the serve extra: pip install 'spectron-kit[serve]' "
                         "(fastapi, uvicorn, websockets)") from None
    from spectron_kit.model import SpectronModel

    origins = [_origin(o) for o in allowed_origins]  # a malformed origin is refused before the model loads
    model = SpectronModel.from_pretrained(model_dir, map_location=device)
    app = DemoServer(model, seconds=seconds, allowed_origins=origins, host=host, api_docs=api_docs).app()
    print(f"serving {model_dir} on http://{host}:{port} (Ctrl-C stops)", flush=True)
    uvicorn.Server(server_config(app, host, port)).run()
    return 0


PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>spectron-kit demo</title>
<style>
body{font-family:system-ui,sans-serif;max-width:900px;margin:2em auto;padding:0 1em;color:#222}
button{font-size:1em;padding:.4em 1em;margin-right:.5em} #text{font-size:1.2em;min-height:2em;margin:1em 0}
#status{color:#555} .error{color:#b00020;font-weight:bold} .note{color:#8a6d00} img{max-width:100%}
</style></head><body>
<h1>spectron-kit: speech continuation</h1>
<p>Record or choose a prompt (the model reads its first __PROMPT_SECONDS__ s). The transcript and the
continuation appear as they are written; the continuation is heard while it is generated. At the end the
page shows apart what the model heard (its transcript of the prompt) and what it continues with.</p>
<p><input type="file" id="file" accept="audio/*"> <button id="record">Record</button>
<button id="go">Continue</button></p>
<div id="messages"></div>
<div id="status">ready</div>
<div id="text"></div>
<div id="split" hidden><p><b>Heard:</b> <span id="heard"></span></p><p><b>Continues:</b> <span id="continues"></span></p></div>
<audio id="player" controls hidden></audio>
<p><img id="spectrogram" alt="spectrograms of prompt and continuation" hidden></p>
<script>
const RATE = __RATE__, MAX_UPLOAD = __MAX_UPLOAD__;
const state = window.demoState = {phase: "ready", text: "", chunks: 0, firstAudioAt: null, endAt: null,
                                  error: null, notes: [], started: null};
const $ = (id) => document.getElementById(id);
let socket = null, recorded = null, audioCtx = null, playAt = 0;

function message(text, cls) {
  const p = document.createElement("p"); p.className = cls; p.textContent = text; $("messages").appendChild(p);
}
function connect() {
  return new Promise((resolve) => {
    if (socket && socket.readyState === 1) return resolve(socket);
    socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    socket.binaryType = "arraybuffer";
    socket.onmessage = onMessage;
    socket.onopen = () => resolve(socket);
    socket.onclose = () => { if (state.phase === "running") fail("the connection to the server closed"); };
  });
}
function fail(text) { state.error = text; state.phase = "error"; message(text, "error"); $("status").textContent = "error"; }
function play(samples) {
  if (!audioCtx) audioCtx = new AudioContext({sampleRate: RATE});
  const buffer = audioCtx.createBuffer(1, samples.length, RATE);
  buffer.copyToChannel(samples, 0);
  const node = audioCtx.createBufferSource(); node.buffer = buffer; node.connect(audioCtx.destination);
  playAt = Math.max(playAt, audioCtx.currentTime + 0.05); node.start(playAt); playAt += buffer.duration;
}
function onMessage(event) {
  const now = (performance.now() - state.started) / 1000;
  if (typeof event.data !== "string") {           // a chunk of float32 audio
    state.chunks += 1; if (state.firstAudioAt === null) state.firstAudioAt = now;
    $("status").textContent = `speaking: first audio after ${state.firstAudioAt.toFixed(2)} s`;
    play(new Float32Array(event.data)); return;
  }
  const m = JSON.parse(event.data);
  if (m.type === "error") fail(m.message);
  else if (m.type === "note") { state.notes.push(m.message); message(m.message, "note"); }
  else if (m.type === "queued") $("status").textContent = `waiting: ${m.position} request(s) before yours`;
  else if (m.type === "started") $("status").textContent = "reading the prompt";
  else if (m.type === "text") { state.text += m.text; $("text").textContent = state.text; }
  else if (m.type === "speech") { state.text = m.text; $("text").textContent = m.text; $("status").textContent = "text written; speaking"; }
  else if (m.type === "end") {
    state.endAt = now; state.phase = "done"; state.text = m.text; $("text").textContent = m.text;
    state.heard = m.heard; state.continuation = m.continuation;
    if (m.heard !== null && m.heard !== undefined) {       // the model's phoneme list says where it continues
      $("heard").textContent = m.heard; $("continues").textContent = m.continuation;
      $("split").hidden = false; $("text").hidden = true;
    }
    $("player").src = "data:audio/wav;base64," + m.wav; $("player").hidden = false;
    $("spectrogram").src = "data:image/png;base64," + m.spectrogram; $("spectrogram").hidden = false;
    $("status").textContent = `done: ${m.seconds.toFixed(2)} s of speech, first audio after ` +
      `${state.firstAudioAt === null ? "-" : state.firstAudioAt.toFixed(2)} s, all in ${now.toFixed(2)} s`;
  }
}
function wavFile(samples, rate) {                 // 16-bit mono WAV of float samples
  const data = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const text = (o, s) => { for (let i = 0; i < s.length; i++) data.setUint8(o + i, s.charCodeAt(i)); };
  text(0, "RIFF"); data.setUint32(4, 36 + samples.length * 2, true); text(8, "WAVEfmt ");
  data.setUint32(16, 16, true); data.setUint16(20, 1, true); data.setUint16(22, 1, true);
  data.setUint32(24, rate, true); data.setUint32(28, rate * 2, true); data.setUint16(32, 2, true);
  data.setUint16(34, 16, true); text(36, "data"); data.setUint32(40, samples.length * 2, true);
  samples.forEach((v, i) => data.setInt16(44 + i * 2, Math.max(-1, Math.min(1, v)) * 32767, true));
  return new Blob([data.buffer], {type: "audio/wav"});
}
let recording = null;
$("record").onclick = async () => {
  if (recording) {                                // stop
    recording.stream.getTracks().forEach((t) => t.stop()); recording.ctx.close();
    const n = recording.parts.reduce((a, p) => a + p.length, 0), all = new Float32Array(n);
    let o = 0; recording.parts.forEach((p) => { all.set(p, o); o += p.length; });
    recorded = wavFile(all, recording.ctx.sampleRate); recording = null;
    $("record").textContent = "Record"; $("status").textContent = `recorded ${(n / RATE).toFixed(1)} s`; return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({audio: true});
    const ctx = new AudioContext({sampleRate: RATE}), source = ctx.createMediaStreamSource(stream);
    const node = ctx.createScriptProcessor(4096, 1, 1), parts = [];
    node.onaudioprocess = (e) => parts.push(new Float32Array(e.inputBuffer.getChannelData(0)));
    source.connect(node); node.connect(ctx.destination);
    recording = {stream, ctx, parts}; $("record").textContent = "Stop"; $("status").textContent = "recording";
  } catch (err) { fail("cannot record: " + err.message + " (choose a file instead)"); }
};
$("go").onclick = async () => {
  const file = $("file").files[0] || recorded;
  if (!file) { fail("record a prompt or choose an audio file first"); return; }
  $("messages").textContent = ""; $("text").textContent = ""; $("text").hidden = false; $("split").hidden = true; $("player").hidden = true; $("spectrogram").hidden = true;
  Object.assign(state, {phase: "running", text: "", chunks: 0, firstAudioAt: null, endAt: null, error: null,
                        notes: [], started: performance.now()});
  $("status").textContent = "sending";
  if (file.size > MAX_UPLOAD) { fail("the file is " + (file.size / 1048576).toFixed(1) + " MB; give at most " +
                                     MAX_UPLOAD / 1048576 + " MB (a shorter or compressed recording)"); return; }
  const ws = await connect(); ws.send(await file.arrayBuffer());
};
</script></body></html>
"""
