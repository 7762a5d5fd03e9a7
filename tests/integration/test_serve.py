"""spectron-kit serve: a real server on a free port, bad uploads answered on the same connection, concurrent
visitors queued, and the page driven in a real headless Chromium (upload, text, streamed audio, player)."""
import base64
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
websockets_sync = pytest.importorskip("websockets.sync.client")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_model import chirp, tiny_model  # noqa: E402
from test_report import find_chromium  # noqa: E402

from spectron_kit.serve import MAX_UPLOAD_BYTES, DemoServer, server_config  # noqa: E402


def wav_bytes(audio, rate=16000, channels=1, fmt="WAV"):
    data = np.asarray(audio, dtype=np.float32)
    if channels > 1:
        data = np.stack([data] * channels, axis=1)
    buffer = io.BytesIO()
    soundfile.write(buffer, data, rate, format=fmt, subtype="PCM_16")
    return buffer.getvalue()


def speech_like(seconds=2.0, rate=16000):
    return chirp(seconds, rate=rate).numpy() * 0.5


def start_server(app):
    """Serve ``app`` on a free local port in a thread: ``(host:port, server, thread)``."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(server_config(app, "127.0.0.1", port))  # the settings `spectron-kit serve` uses
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    assert srv.started, "the demo server did not start"
    return f"127.0.0.1:{port}", srv, thread


@pytest.fixture(scope="module")
def server():

    bundle = os.environ.get("SPECTRON_KIT_SERVE_BUNDLE")  # the README screenshot: a trained bundle
    if bundle:
        from spectron_kit.model import SpectronModel

        app = DemoServer(SpectronModel.from_pretrained(bundle)).app()
    else:
        model = tiny_model(r=2)
        model.prompt_seconds = 1.0
        app = DemoServer(model, seconds=0.6, chunk_frames=8).app()
    address, srv, thread = start_server(app)
    yield address
    srv.should_exit = True
    thread.join(timeout=10)


def request(ws, data, timeout=60):
    """Send one upload; return the JSON messages and the binary audio chunks until the answer ends."""
    ws.send(data)
    messages, chunks = [], []
    while True:
        got = ws.recv(timeout=timeout)
        if isinstance(got, bytes):
            chunks.append(np.frombuffer(got, dtype="<f4"))
            continue
        message = json.loads(got)
        messages.append(message)
        if message["type"] in ("end", "error"):
            return messages, chunks


@pytest.mark.parametrize("data, expected", [
    (b"this is not audio at all", "not audio that can be read"),
    (b"", "the upload is empty"),
    (wav_bytes(speech_like(0.2)), "give at least 0.5 s"),
    (wav_bytes(np.zeros(32000)), "are silent"),
    (wav_bytes(np.zeros(8000 * 61) + 0.1, rate=8000), "give at most 60 s"),
], ids=["not-audio", "empty", "too-short", "silent", "too-long"])
def test_bad_uploads_get_one_message_and_the_connection_keeps_serving(server, data, expected):
    with websockets_sync.connect(f"ws://{server}/ws") as ws:
        messages, chunks = request(ws, data)
        assert messages[-1]["type"] == "error" and expected in messages[-1]["message"], messages
        assert not chunks
        # the same connection then continues a good prompt, in another rate and two channels (notes, not errors)
        messages, chunks = request(ws, wav_bytes(speech_like(2.0, rate=22050), rate=22050, channels=2))
    notes = [m["message"] for m in messages if m["type"] == "note"]
    assert any("22050 Hz; resampled" in n for n in notes) and any("mixed down" in n for n in notes)
    end = messages[-1]
    assert end["type"] == "end", messages
    audio = np.concatenate(chunks)
    whole, rate = soundfile.read(io.BytesIO(base64.b64decode(end["wav"])), dtype="float32")
    assert rate == 16000 and len(whole) == len(audio) == int(round(end["seconds"] * 16000))
    np.testing.assert_allclose(whole, np.clip(audio, -1, 1), atol=1 / 16000 + 1e-4)  # 16-bit rounding
    assert base64.b64decode(end["spectrogram"])[:4] == b"\x89PNG"
    audio_at = [m["t"] for m in messages if m["type"] == "audio"]
    assert len(audio_at) >= 2 and audio_at[0] < end["total_s"]


def test_pages_of_other_sites_cannot_open_the_websocket(server):
    """A browser sends its page's origin: the demo's own page and scripts (no Origin) get in, any other site's
    page, also one whose name resolves to this machine (DNS rebinding: its Host header names it too), is refused
    at the handshake."""
    from websockets.exceptions import InvalidStatus

    port = server.split(":")[1]
    for origin in ("http://evil.example", f"http://evil.example:{port}", f"http://127.0.0.1:{int(port) + 1}"):
        with pytest.raises(InvalidStatus) as refused:
            with websockets_sync.connect(f"ws://{server}/ws", origin=origin):
                pass
        assert refused.value.response.status_code == 403, origin
    for origin in (f"http://{server}", None):  # the page's own origin; a script
        with websockets_sync.connect(f"ws://{server}/ws", origin=origin) as ws:
            messages, _ = request(ws, b"")
        assert messages[-1]["message"].startswith("the upload is empty"), origin
    demo = DemoServer(tiny_model(r=2))  # the Host header a browser sends after DNS rebinding names the attacker
    assert not demo.origin_allowed(f"http://evil.example:{port}", f"evil.example:{port}")
    assert demo.origin_allowed(f"http://localhost:{port}", f"localhost:{port}")


def test_an_origin_the_user_names_is_let_in_and_a_malformed_one_is_refused():
    model = tiny_model(r=2)
    demo = DemoServer(model, seconds=0.6, allowed_origins=["HTTP://192.168.1.5:7860"], host="0.0.0.0")
    assert demo.origin_allowed("http://192.168.1.5:7860", "192.168.1.5:7860")
    assert not demo.origin_allowed("http://192.168.1.6:7860", "192.168.1.6:7860")  # not named, not loopback
    assert demo.origin_allowed(None, "anything")  # not a browser
    with pytest.raises(ValueError, match=r"--allow-origin '192.168.1.5': give an origin as a browser sends it"):
        DemoServer(model, allowed_origins=["192.168.1.5"])


def test_a_text_message_gets_one_error_and_the_connection_keeps_serving(server):
    with websockets_sync.connect(f"ws://{server}/ws") as ws:
        ws.send(json.dumps({"prompt": "hello"}))
        answer = json.loads(ws.recv(timeout=30))
        assert answer == {"type": "error", "message": "the demo expects an audio file's bytes in one binary "
                                                      "message; got a text message"}
        messages, chunks = request(ws, wav_bytes(speech_like(1.5)))
    assert messages[-1]["type"] == "end" and chunks


def test_an_upload_over_the_limit_gets_the_server_s_own_message(server):
    """uvicorn's own WebSocket limit (16 MiB) used to drop a 25 MB upload before the server could say why."""
    with websockets_sync.connect(f"ws://{server}/ws") as ws:
        messages, _ = request(ws, b"\0" * (MAX_UPLOAD_BYTES + 5 * 2 ** 20))
    assert messages[-1] == {"type": "error", "message": messages[-1]["message"]}
    assert messages[-1]["message"].startswith("the upload is 25.0 MB; give at most 20 MB"), messages


def test_api_docs_are_off_unless_asked(server):
    import urllib.error
    import urllib.request

    for path in ("/docs", "/openapi.json", "/redoc"):
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://{server}{path}", timeout=10)
        assert missing.value.code == 404, path
    app = DemoServer(tiny_model(r=2), api_docs=True).app()
    assert {"/docs", "/openapi.json"} <= {route.path for route in app.routes}


def test_visitors_at_once_are_queued_not_crashed(server):
    results = {}

    def visit(name):
        with websockets_sync.connect(f"ws://{server}/ws") as ws:
            results[name] = request(ws, wav_bytes(speech_like(1.5)))[0]

    threads = [threading.Thread(target=visit, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(results) == [0, 1, 2]
    assert all(m[-1]["type"] == "end" for m in results.values())
    assert any(any(x["type"] == "queued" for x in m) for m in results.values())  # someone waited for the model


def cdp_page(chromium, profile):
    """A headless Chromium with its DevTools endpoint: ``(process, websocket URL of a blank page)``."""
    proc = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--autoplay-policy=no-user-gesture-required", "--remote-debugging-port=0",
                             f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = Path(profile) / "DevToolsActivePort"
    for _ in range(200):
        if port_file.is_file() and port_file.read_text().strip():
            break
        time.sleep(0.05)
    port = port_file.read_text().split()[0]
    import urllib.request

    for _ in range(100):
        try:
            targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list").read())
            page = next(t for t in targets if t["type"] == "page")
            return proc, page["webSocketDebuggerUrl"]
        except (OSError, StopIteration):
            time.sleep(0.1)
    raise RuntimeError("Chromium's DevTools endpoint did not answer")


class Devtools:
    """Chrome DevTools Protocol calls over one WebSocket (``with Devtools(url) as tools: tools("Page.enable")``)."""

    def __init__(self, url):
        self.url, self.n = url, 0

    def __enter__(self):
        self.ws = websockets_sync.connect(self.url, max_size=None).__enter__()
        return self

    def __exit__(self, *exc):
        self.ws.__exit__(*exc)

    def __call__(self, method, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=30))
            if reply.get("id") == self.n:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def js(self, expression):
        return self("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")


def test_the_page_in_a_real_browser_streams_text_and_audio_before_the_end(server, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium: sh tools/install_browser.sh")
    prompt = tmp_path / "prompt.wav"
    prompt.write_bytes(wav_bytes(speech_like(2.0)))
    if os.environ.get("SPECTRON_KIT_SERVE_PROMPT"):  # the README screenshot: a spoken prompt
        prompt = Path(os.environ["SPECTRON_KIT_SERVE_PROMPT"]).resolve()
    proc, url = cdp_page(chromium, tmp_path / "profile")
    try:
        with Devtools(url) as tools:
            drive_the_page(tools, server, tmp_path, prompt)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def drive_the_page(tools, server, tmp_path, prompt):
    """Upload a bad file, then the prompt, through the page's own controls; check what a visitor sees."""
    tools("Page.enable")
    tools("Page.navigate", url=f"http://{server}/")
    for _ in range(100):
        if tools.js("document.readyState") == "complete" and tools.js("!!window.demoState"):
            break
        time.sleep(0.05)
    # a bad upload first: the page shows the message and stays usable
    bad = tmp_path / "notes.txt"
    bad.write_text("not audio")
    root = tools("DOM.getDocument")["root"]["nodeId"]
    node = tools("DOM.querySelector", nodeId=root, selector="#file")["nodeId"]
    tools("DOM.setFileInputFiles", nodeId=node, files=[str(bad)])
    tools.js("document.getElementById('go').click()")
    for _ in range(200):
        if tools.js("window.demoState.phase") == "error":
            break
        time.sleep(0.05)
    assert "not audio that can be read" in tools.js("window.demoState.error")
    assert "not audio" in tools.js("document.getElementById('messages').textContent")
    # then the prompt: text, streamed audio before the end, the player and the spectrogram
    tools("DOM.setFileInputFiles", nodeId=node, files=[str(prompt)])
    tools.js("document.getElementById('go').click()")
    for _ in range(600):
        if tools.js("window.demoState.phase") in ("done", "error"):
            break
        time.sleep(0.05)
    state = tools.js("JSON.parse(JSON.stringify(window.demoState))")
    assert state["phase"] == "done", state
    assert state["chunks"] >= 2 and state["firstAudioAt"] is not None and state["firstAudioAt"] < state["endAt"]
    assert tools.js("document.getElementById('text').textContent") == state["text"]
    assert tools.js("document.getElementById('player').src").startswith("data:audio/wav;base64,")
    assert not tools.js("document.getElementById('player').hidden")
    for _ in range(100):  # the spectrogram image decodes
        if tools.js("document.getElementById('spectrogram').naturalWidth") > 100:
            break
        time.sleep(0.05)
    assert tools.js("document.getElementById('spectrogram').naturalWidth") > 100
    shot = os.environ.get("SPECTRON_KIT_SERVE_SCREENSHOT")
    if shot:  # the README's screenshot comes from this very test
        tools("Emulation.setDeviceMetricsOverride", width=1000, height=1100, deviceScaleFactor=1, mobile=False)
        Path(shot).write_bytes(base64.b64decode(tools("Page.captureScreenshot", format="png")["data"]))


TRAINED_BUNDLE = Path(__file__).resolve().parents[2] / "results" / "spectron_mini" / "1234" / "bundle"


def test_the_page_shows_what_a_trained_bundle_heard_in_a_real_recording(tmp_path, shared_data):
    """A person counting (FSDD digits, a real recording) uploaded through the page of a trained bundle: the page
    shows the words it heard apart from its continuation, and the heard words start the count. Needs a trained
    bundle: SPECTRON_KIT_SERVE_BUNDLE, or the main job's (results/spectron_mini/1234/bundle)."""
    bundle = Path(os.environ.get("SPECTRON_KIT_SERVE_BUNDLE") or TRAINED_BUNDLE)
    if not (bundle / "spectron_config.json").is_file():
        pytest.skip(f"no trained bundle at {bundle}: run the main job (README quick start) or set "
                    "SPECTRON_KIT_SERVE_BUNDLE")
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium: sh tools/install_browser.sh")
    from spectron_kit.data.counting import NUMBER_WORDS, write_counting_prompts
    from spectron_kit.model import SpectronModel

    model = SpectronModel.from_pretrained(str(bundle))
    if not model.phoneme_list:
        pytest.skip(f"{bundle} writes no phoneme list, so it cannot say where its continuation starts")
    rows = write_counting_prompts(shared_data / "fsdd", tmp_path / "counts", per_direction=1)
    row = next(r for r in rows if r["direction"] == "up" and len(r["text"].split()) == 5)
    address, srv, thread = start_server(DemoServer(model, seconds=1.0).app())
    proc, url = cdp_page(chromium, tmp_path / "profile")
    try:
        with Devtools(url) as tools:
            state = upload_through_the_page(tools, address, Path(row["path"]))
            heard = tools.js("document.getElementById('heard').textContent")
            continues = tools.js("document.getElementById('continues').textContent")
            shown = not tools.js("document.getElementById('split').hidden")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        srv.should_exit = True
        thread.join(timeout=10)
    print(f"said {row['text']!r}; the page: heard {heard!r}, continues {continues!r}")
    assert state["phase"] == "done" and shown and heard == state["heard"] and continues == state["continuation"]
    assert f"{heard} {continues}".split() == state["text"].split()
    # the heard part starts the count where the person started it (a lead-in of the LM's prior may come first:
    # how well each configuration hears is tools/hearing.py's measurement)
    numbers = [word for word in heard.split() if word in NUMBER_WORDS]
    assert numbers and numbers[0] == row["text"].split()[0], (row["text"], heard)


def upload_through_the_page(tools, server, prompt):
    """Open the page, choose ``prompt`` in its file input, press Continue, wait for the end; the page's state."""
    tools("Page.enable")
    tools("Page.navigate", url=f"http://{server}/")
    for _ in range(100):
        if tools.js("document.readyState") == "complete" and tools.js("!!window.demoState"):
            break
        time.sleep(0.05)
    root = tools("DOM.getDocument")["root"]["nodeId"]
    node = tools("DOM.querySelector", nodeId=root, selector="#file")["nodeId"]
    tools("DOM.setFileInputFiles", nodeId=node, files=[str(prompt)])
    tools.js("document.getElementById('go').click()")
    for _ in range(1200):
        if tools.js("window.demoState.phase") in ("done", "error"):
            break
        time.sleep(0.05)
    return tools.js("JSON.parse(JSON.stringify(window.demoState))")
