// csipose live page: connects to /ws (with the CSI preview), draws each node's skeleton from
// its latest `pose` message (nothing when presence is false), activity probabilities, a CSI
// amplitude waterfall and the node table, and shows a LIVE / REPLAY / NO DATA / DISCONNECTED
// banner, reconnecting with backoff. What was drawn is exposed on window.__csipose for tests.
"use strict";

(function () {
  // COCO-17 bones (the model's 16 plus the shoulder and hip lines).
  const BONES = [[0, 1], [0, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7], [7, 9], [6, 8], [8, 10],
    [5, 11], [6, 12], [11, 13], [13, 15], [12, 14], [14, 16], [5, 6], [11, 12]];
  const W = 320, H = 240;
  const NO_DATA_MS = 3000;
  const params = new URLSearchParams(location.search);
  const token = params.get("token");

  const S = window.__csipose = {
    state: "disconnected",   // disconnected | nodata | live | replay
    mode: "live",
    hello: null,
    lastPose: {},            // node -> last pose message
    lastDrawn: {},           // node -> {seq, time, joints: [[px, py]] | null, width, height, pose}
    received: { hello: 0, pose: 0, nodes: 0, csi: 0 },
    lastNodes: null,
    connects: 0,
  };

  const $ = (id) => document.getElementById(id);
  let lastPoseAt = 0;
  let backoff = 500;

  function setBanner() {
    let st;
    if (!ws || ws.readyState !== 1) st = "disconnected";
    else if (Date.now() - lastPoseAt > NO_DATA_MS) st = "nodata";
    else st = S.mode === "replay" ? "replay" : "live";
    S.state = st;
    const b = $("banner");
    b.className = st;
    b.textContent = { disconnected: "DISCONNECTED", nodata: "NO DATA", live: "LIVE", replay: "REPLAY" }[st];
  }

  function nodePanel(node) {
    let el = document.getElementById("node-" + node);
    if (el) return el;
    const empty = $("empty");
    if (empty) empty.remove();
    el = document.createElement("div");
    el.className = "node";
    el.id = "node-" + node;
    el.innerHTML = `<h2><span>node ${node}</span><span class="dim lat"></span></h2>
      <canvas width="${W}" height="${H}"></canvas>
      <div class="presence dim"></div><div class="acts"></div>`;
    const all = [...$("poses").children];
    const after = all.find((c) => Number(c.id.slice(5)) > node);
    $("poses").insertBefore(el, after || null);
    return el;
  }

  function drawPose(msg) {
    const el = nodePanel(msg.node);
    const cv = el.querySelector("canvas");
    const g = cv.getContext("2d");
    g.clearRect(0, 0, W, H);
    g.strokeStyle = "#222b36";
    g.strokeRect(0.5, 0.5, W - 1, H - 1);
    let joints = null;
    if (msg.presence === false || !Array.isArray(msg.keypoints)) {
      g.fillStyle = "#8b95a5";
      g.font = "14px system-ui, sans-serif";
      g.textAlign = "center";
      g.fillText("no person detected", W / 2, H / 2);
    } else {
      joints = msg.keypoints.map((k) => [k[0] * W, k[1] * H]);
      g.lineWidth = 3;
      g.strokeStyle = "#4a90e0";
      for (const [a, b] of BONES) {
        g.beginPath();
        g.moveTo(joints[a][0], joints[a][1]);
        g.lineTo(joints[b][0], joints[b][1]);
        g.stroke();
      }
      g.fillStyle = "#f2f4f7";
      for (const [x, y] of joints) {
        g.beginPath();
        g.arc(x, y, 3.5, 0, 2 * Math.PI);
        g.fill();
      }
    }
    S.lastDrawn[msg.node] = { seq: msg.seq, time: msg.time, joints, width: W, height: H, pose: msg };
    const pres = msg.presence === null || msg.presence === undefined ? "presence: not measured"
      : msg.presence ? "presence: person detected" : "presence: nobody";
    el.querySelector(".presence").textContent =
      `${pres} · seq ${msg.seq ?? "–"} · ${msg.model.file} (sha256 ${msg.model.sha256.slice(0, 12)})`;
    el.querySelector(".lat").textContent = `${(msg.latency_us / 1000).toFixed(2)} ms`;
    const acts = el.querySelector(".acts");
    if (msg.activity) {
      const a = msg.activity;
      acts.innerHTML = a.probabilities.map((p, i) =>
        `<div class="bar"><span class="l" title="${esc(a.labels[i])}">${i === a.index ? "▶ " : ""}${esc(a.labels[i])}</span>` +
        `<div class="b"><i style="width:${(100 * p).toFixed(1)}%"></i></div><span>${(100 * p).toFixed(0)}%</span></div>`).join("") +
        (a.decode === "forward"
          ? `<div class="dim" style="font-size:12px">decoded (forward filter); window alone: ${esc(a.labels[a.window_index] ?? "")}</div>`
          : "");
    } else {
      const why = !msg.activity_model ? "no activity model" : msg.presence === false ? "nobody present" : "warming up";
      acts.innerHTML = `<div class="dim" style="font-size:12px">activity: ${why}</div>`;
    }
  }

  function esc(s) {
    return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
  }

  function drawNodes(msg) {
    S.lastNodes = msg;
    if (msg.mode) S.mode = msg.mode;
    const tb = $("nodes").querySelector("tbody");
    tb.innerHTML = msg.nodes.map((n) => `<tr><td>${n.node}</td><td class="${n.status}">${n.status}</td>` +
      `<td>${n.rate_hz.toFixed(1)}</td><td>${(100 * n.loss).toFixed(1)}%</td><td>${n.rssi ?? "–"}</td>` +
      `<td>${n.layout.antennas}×${n.layout.subcarriers}</td><td>${n.last_seen_ago_s.toFixed(1)} s</td></tr>`).join("");
    const l = msg.latency_us && msg.latency_us.receive_to_send;
    if (l) $("latency").textContent = `latency receive→send p50 ${(l.p50 / 1000).toFixed(2)} ms, p99 ${(l.p99 / 1000).toFixed(2)} ms`;
  }

  let wfNode = null;
  function drawCsi(msg) {
    if (wfNode === null) wfNode = msg.node;
    if (msg.node !== wfNode) return;
    $("wfnode").textContent = `(node ${msg.node}, antenna ${msg.antenna})`;
    const cv = $("waterfall");
    const g = cv.getContext("2d");
    const v = msg.amplitudes;
    if (cv.width !== v.length) { cv.width = v.length; }
    g.drawImage(cv, 0, 1);
    let lo = Infinity, hi = -Infinity;
    for (const x of v) { lo = Math.min(lo, x); hi = Math.max(hi, x); }
    const img = g.createImageData(v.length, 1);
    for (let i = 0; i < v.length; i++) {
      const t = hi > lo ? (v[i] - lo) / (hi - lo) : 0;
      img.data[4 * i] = Math.round(255 * Math.min(1, 2 * t));
      img.data[4 * i + 1] = Math.round(255 * Math.max(0, 2 * t - 1));
      img.data[4 * i + 2] = Math.round(255 * (1 - t) * 0.6);
      img.data[4 * i + 3] = 255;
    }
    g.putImageData(img, 0, 0);
  }

  let ws = null;
  function connect() {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws?csi=1` +
      (token ? `&token=${encodeURIComponent(token)}` : "");
    ws = new WebSocket(url);
    S.connects++;
    ws.onopen = () => { backoff = 500; setBanner(); };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.v !== 1) return;
      S.received[msg.type] = (S.received[msg.type] || 0) + 1;
      if (msg.type === "hello") {
        S.hello = msg;
        S.mode = msg.mode;
        $("model").textContent = `model: ${msg.model.file} (${msg.model.precision}, sha256 ${msg.model.sha256.slice(0, 12)})` +
          (msg.activity_model ? ` · activity: ${msg.activity_model.file}` : "");
      } else if (msg.type === "pose") {
        lastPoseAt = Date.now();
        S.lastPose[msg.node] = msg;
        drawPose(msg);
      } else if (msg.type === "nodes") {
        drawNodes(msg);
      } else if (msg.type === "csi") {
        drawCsi(msg);
      }
      setBanner();
    };
    ws.onclose = () => {
      setBanner();
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
    ws.onerror = () => { try { ws.close(); } catch (e) { /* closing anyway */ } };
  }

  async function api(path, method) {
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    if (method !== "POST") delete headers["Content-Type"];
    const r = await fetch(path, { method, headers, body: method === "POST" ? "{}" : undefined });
    return [r.status, await r.json()];
  }

  let recording = false;
  $("record").onclick = async () => {
    try {
      const [code, v] = await api(recording ? "/api/v1/record/stop" : "/api/v1/record/start", "POST");
      if (code === 200) recording = !!v.recording;
      $("recstate").textContent = code === 200 ? (v.recording ? `recording ${v.file}` : `saved ${v.file}`) : v.error;
    } catch (e) {
      $("recstate").textContent = String(e);
    }
    $("record").classList.toggle("on", recording);
    $("record").textContent = recording ? "■ Stop" : "● Record";
  };

  async function refreshStatus() {
    try {
      const [code, v] = await api("/api/v1/status", "GET");
      if (code !== 200) return;
      const c = v.counters;
      const rej = Object.entries(c.rejected).map(([k, n]) => `${k} ${n}`).join(", ") || "none";
      $("counters").textContent = `datagrams ${c.datagrams} · lines ${c.lines} · decoded ${c.decoded_total} · ` +
        `rejected ${c.rejected_total} (${rej}) · queue dropped ${c.queue_dropped} · poses ${c.poses} · clients ${v.clients}`;
      if (v.recording) { recording = true; $("recstate").textContent = `recording ${v.recording.file}`; }
    } catch (e) { /* the banner shows the connection state */ }
  }

  setInterval(setBanner, 500);
  setInterval(refreshStatus, 2000);
  refreshStatus();
  connect();
})();
