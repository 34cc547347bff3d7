"""The web page ``serve`` hands out: camera in over WebRTC, the swapped stream back, controls and live figures.

Three static files, no inline script or style, so the Content-Security-Policy can forbid everything else. The
page reads its access token from the URL (``/?token=...``, as the server prints it) and sends it with the
offer; it never puts it anywhere else.
"""

from __future__ import annotations

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "media-src 'self' mediastream: blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""Only this server's own script, style and endpoints; no inline code, no framing, no other origin."""

INDEX_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>realtime_swap</title>
<link rel="stylesheet" href="/style.css">
<script src="/client.js" defer></script>
</head>
<body>
<header>
  <h1>realtime_swap</h1>
  <button id="start">Start camera</button>
  <button id="stop" disabled>Stop</button>
  <span id="state">idle</span>
</header>
<main>
  <figure><video id="local" autoplay playsinline muted></video><figcaption>camera</figcaption></figure>
  <figure><video id="remote" autoplay playsinline muted></video><figcaption>swapped</figcaption></figure>
</main>
<section id="controls">
  <label>model <select id="model"></select></label>
  <label>colour <select id="color"></select></label>
  <label><input type="checkbox" id="swap" checked> swap</label>
  <label><input type="checkbox" id="mask"> mask view</label>
</section>
<section id="figures">
  <span>received <b id="fps-in">-</b> fps</span>
  <span>engine <b id="fps-engine">-</b> fps</span>
  <span>engine latency <b id="latency">-</b> ms</span>
  <span>network round trip <b id="rtt">-</b> ms</span>
</section>
</body>
</html>
"""

STYLE_CSS = """body { font-family: system-ui, sans-serif; margin: 1em; background: #111; color: #eee; }
header, #controls, #figures { display: flex; gap: 1em; align-items: center; flex-wrap: wrap; margin: .5em 0; }
main { display: flex; gap: 1em; flex-wrap: wrap; }
figure { margin: 0; }
video { width: 480px; max-width: 45vw; background: #000; }
#state.error { color: #f66; }
"""

CLIENT_JS = r"""'use strict';
const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get('token') || '';
const session = { pc: null, channel: null, stream: null, framesIn: 0, connected: false, last: null };
window.realtimeSwap = session;  // for tests and the benchmark: connection state and frames received

function setState(text, error) {
  $('state').textContent = text;
  $('state').className = error ? 'error' : '';
}

function fillSelect(select, values, current) {
  const names = values.map(String);
  if (select.options.length !== names.length) {
    select.replaceChildren(...names.map((name, i) => new Option(name, select.id === 'model' ? i : name)));
  }
  select.value = String(current);
}

function showFigures(data) {
  if (data.type === 'error') { setState(data.error, true); return; }
  session.last = data;
  fillSelect($('model'), data.models.length ? data.models : ['(none)'], data.model);
  fillSelect($('color'), data.colors, data.color);
  if (data.fps !== undefined) {
    $('fps-engine').textContent = data.fps.toFixed(0);
    $('latency').textContent = data.latency_ms.toFixed(0);
  }
}

function sendControls() {
  if (!session.channel || session.channel.readyState !== 'open') return;
  session.channel.send(JSON.stringify({
    swap: $('swap').checked, mask: $('mask').checked, color: $('color').value, model: Number($('model').value) || 0,
  }));
}

function countFrames(video) {
  let seen = 0;
  const tick = () => { session.framesIn += 1; seen += 1; video.requestVideoFrameCallback(tick); };
  video.requestVideoFrameCallback(tick);
  setInterval(() => { $('fps-in').textContent = String(seen); seen = 0; }, 1000);
}

async function roundTrip() {
  if (!session.pc) return;
  const stats = await session.pc.getStats();
  stats.forEach((r) => {
    if (r.type === 'candidate-pair' && r.nominated && r.currentRoundTripTime !== undefined) {
      $('rtt').textContent = (r.currentRoundTripTime * 1000).toFixed(0);
    }
  });
}

function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') resolve(); });
  });
}

async function start() {
  $('start').disabled = true;
  try {
    setState('asking for the camera');
    session.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    $('local').srcObject = session.stream;
    const pc = new RTCPeerConnection();
    session.pc = pc;
    session.stream.getVideoTracks().forEach((track) => pc.addTrack(track, session.stream));
    session.channel = pc.createDataChannel('controls');
    session.channel.onmessage = (e) => showFigures(JSON.parse(e.data));
    session.channel.onopen = sendControls;
    pc.ontrack = (e) => { $('remote').srcObject = e.streams[0] || new MediaStream([e.track]); };
    pc.onconnectionstatechange = () => {
      session.connected = pc.connectionState === 'connected';
      setState(pc.connectionState, pc.connectionState === 'failed');
    };
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    setState('connecting');
    const reply = await fetch('/offer', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + token },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
    });
    const body = await reply.json();
    if (!reply.ok) throw new Error(body.error || reply.statusText);
    await pc.setRemoteDescription(body);
    $('stop').disabled = false;
  } catch (err) {
    setState(String(err.message || err), true);
    stop();
  }
}

function stop() {
  if (session.pc) session.pc.close();
  if (session.stream) session.stream.getTracks().forEach((t) => t.stop());
  session.pc = null; session.channel = null; session.stream = null; session.connected = false;
  $('start').disabled = false;
  $('stop').disabled = true;
}

document.addEventListener('DOMContentLoaded', () => {
  $('start').addEventListener('click', start);
  $('stop').addEventListener('click', () => { stop(); setState('stopped'); });
  ['swap', 'mask', 'color', 'model'].forEach((id) => $(id).addEventListener('change', sendControls));
  countFrames($('remote'));
  setInterval(roundTrip, 1000);
});
"""
