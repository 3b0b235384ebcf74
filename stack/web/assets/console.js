// Stack's web console: reads /api/live (Server-Sent Events) and draws the fleet; admins act
// through POST /api/watchers/NAME/ACTION and /api/agents/HOST/ACTION. No build step, no
// library: every text from the controller is set as text, never as HTML.
"use strict";

const $ = (selector) => document.querySelector(selector);
const view = { state: null, selected: null, seen: new Set(), logs: null };

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function bytes(count) {
  if (!count) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = count, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return unit ? `${value.toFixed(1)} ${units[unit]}` : `${value} B`;
}

function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor(s / 3600) % 24).padStart(2, "0")}h`;
}

function clock(at) {
  return new Date(at * 1000).toLocaleTimeString([], { hour12: false });
}

const word = (name, prefix) => name.replace(prefix, "").toLowerCase();

function watcherState(w) {
  if (w.rollout && w.rollout.startsWith("rollout halted")) return "halted";
  if (!w.active) return "stopped";
  const phase = word(w.phase, "WATCHER_PHASE_");
  if (phase === "fatal" || phase === "flapping") return phase;
  if (w.rollout) return "rolling";
  return "running";
}

// ---- watchers ----

function watcherRow(w) {
  const name = w.name;
  const row = el("tr", { "data-watcher": name });
  const pick = el("button", { type: "button", title: "Show its processes and output" }, name);
  pick.addEventListener("click", () => select(name));
  row.append(
    el("td", { class: "name" }, pick),
    el("td", { class: "num running" }),
    el("td", { class: "state" }),
    el("td", { class: "num cpu" }),
    el("td", { class: "num memory" }),
  );
  const acts = el("td", { class: "acts" });
  if (view.state.can_act) {
    const count = el("input", { type: "number", min: 0, value: w.numprocesses, "data-scale": name, "aria-label": `processes of ${name}` });
    const button = (action, label, danger = false) => {
      const b = el("button", { type: "button", class: danger ? "danger" : "", "data-action": action, "data-watcher": name }, label);
      b.addEventListener("click", () => watcherAction(name, action, count));
      return b;
    };
    acts.append(count, " ", button("scale", "Scale"), " ", button("start", "Start"), " ",
      button("stop", "Stop", true), " ", button("restart", "Restart", true));
  }
  row.append(acts);
  return row;
}

function drawWatchers(state) {
  const body = $("#watchers tbody");
  const rows = new Map([...body.children].map((row) => [row.dataset.watcher, row]));
  const names = state.watchers.map((w) => w.name);
  if (names.join("\n") !== [...rows.keys()].join("\n")) {
    body.replaceChildren(...state.watchers.map(watcherRow));
  }
  for (const w of state.watchers) {
    const row = body.querySelector(`tr[data-watcher="${CSS.escape(w.name)}"]`);
    const live = w.processes.filter((p) => Number(p.pid));
    const st = watcherState(w);
    row.querySelector(".running").textContent = `${w.running}/${w.numprocesses}`;
    const cell = row.querySelector(".state");
    cell.textContent = [st, w.pending ? `${w.pending} pending` : "", w.rollout].filter(Boolean).join(", ");
    cell.className = `state state-${st}`;
    row.querySelector(".cpu").textContent = `${live.reduce((a, p) => a + p.cpu_percent, 0).toFixed(1)}%`;
    row.querySelector(".memory").textContent = bytes(live.reduce((a, p) => a + Number(p.rss_bytes), 0));
    row.classList.toggle("selected", w.name === view.selected);
    const input = row.querySelector("input[data-scale]");
    if (input && document.activeElement !== input && !input.dataset.edited) input.value = w.numprocesses;
  }
  const running = state.watchers.reduce((a, w) => a + w.running, 0);
  const desired = state.watchers.reduce((a, w) => a + (w.active ? w.numprocesses : 0), 0);
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  $("#summary").textContent = `${plural(state.watchers.length, "watcher")}, ${running}/${desired} running, ${plural(state.agents.length, "agent")}`;
  $("#who").textContent = `${state.who}${state.can_act ? " (admin)" : " (read only)"}`;
}

// ---- the selected watcher: processes and output ----

function select(name) {
  view.selected = name;
  $("#detail").hidden = false;
  $("#detail-name").textContent = name;
  $("#log").replaceChildren();
  if (view.logs) view.logs.close();
  const state = $("#log-state");
  state.textContent = "connecting";
  state.className = "link down";
  const logs = new EventSource(`/api/logs?watcher=${encodeURIComponent(name)}`);
  logs.onopen = () => { state.textContent = "live"; state.className = "link"; $("#log").replaceChildren(); };
  logs.onerror = () => { state.textContent = "reconnecting"; state.className = "link down"; };
  logs.addEventListener("line", (message) => {
    const line = JSON.parse(message.data);
    const log = $("#log");
    const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(`${clock(line.at)} ${line.host} [${line.wid}] ${line.text}\n`);
    while (log.childNodes.length > 500) log.firstChild.remove();
    if (stick) log.scrollTop = log.scrollHeight;
  });
  logs.addEventListener("error", (message) => {
    if (message.data) { state.textContent = JSON.parse(message.data).error; logs.close(); }
  });
  view.logs = logs;
  if (view.state) draw(view.state);
}

function drawProcesses(state) {
  const w = state.watchers.find((x) => x.name === view.selected);
  if (!w) { $("#detail").hidden = true; return; }
  const now = Date.now() / 1000;
  const processes = [...w.processes].sort((a, b) => a.host_id.localeCompare(b.host_id) || a.wid - b.wid);
  $("#processes tbody").replaceChildren(...processes.map((p) => {
    const live = Number(p.pid) !== 0;
    const st = word(p.state, "PROCESS_STATE_");
    return el("tr", { "data-wid": p.wid, "data-host": p.host_id },
      el("td", {}, p.host_id || "-"),
      el("td", { class: "num" }, p.wid),
      el("td", { class: "num" }, live ? p.pid : "-"),
      el("td", { class: `state-${st}` }, st),
      el("td", { class: "num" }, live && p.started_at ? duration(now - p.started_at) : "-"),
      el("td", { class: "num" }, p.restarts),
      el("td", { class: "num" }, live ? `${p.cpu_percent.toFixed(1)}%` : "-"),
      el("td", { class: "num" }, live ? bytes(Number(p.rss_bytes)) : "-"),
      el("td", {}, p.message || p.health_message || ""));
  }));
}

// ---- agents ----

function drawAgents(state) {
  const now = Date.now() / 1000;
  $("#agents tbody").replaceChildren(...state.agents.map((a) => {
    const acts = el("td", { class: "acts" });
    if (state.can_act) {
      const action = a.state === "draining" ? "undrain" : "drain";
      const b = el("button", { type: "button", class: action === "drain" ? "danger" : "", "data-action": action, "data-host": a.host_id },
        action === "drain" ? "Drain" : "Undrain");
      b.addEventListener("click", () => agentAction(a.host_id, action));
      acts.append(b);
    }
    return el("tr", { "data-host": a.host_id },
      el("td", {}, a.host_id),
      el("td", { class: `state-${a.state}` }, a.state),
      el("td", { class: "num" }, a.processes),
      el("td", { class: "num" }, a.last_seen ? `${duration(now - a.last_seen)} ago` : "-"),
      el("td", {}, a.version || "-"),
      acts);
  }));
}

// ---- events ----

function addEvent(event) {
  if (view.seen.has(event.seq)) return;
  view.seen.add(event.seq);
  const about = event.watcher ? (event.wid ? `${event.watcher}[${event.wid}]` : event.watcher) : "-";
  const item = el("li", { class: `sev-${event.severity}`, "data-kind": event.kind },
    el("time", {}, clock(event.at)), `${event.host || "controller"} ${about}`,
    el("span", { class: "kind" }, event.kind), event.message);
  const list = $("#events");
  list.prepend(item);
  while (list.children.length > 200) list.lastChild.remove();
}

// ---- acting ----

function confirmed(text) {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = text;
  return new Promise((resolve) => {
    const done = (answer) => { dialog.close(); resolve(answer); };
    $("#confirm-yes").onclick = () => done(true);
    $("#confirm-no").onclick = () => done(false);
    dialog.oncancel = () => resolve(false);
    dialog.showModal();
  });
}

function say(text, error = false) {
  const message = $("#message");
  message.textContent = text;
  message.className = error ? "error" : "";
}

async function post(path, body = {}) {
  const answer = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Stack-Console": "1" },
    body: JSON.stringify(body),
  });
  const document_ = await answer.json().catch(() => ({ error: `HTTP ${answer.status}` }));
  if (!answer.ok) throw new Error(document_.error || `HTTP ${answer.status}`);
  return document_.answer;
}

async function watcherAction(name, action, input) {
  const w = view.state.watchers.find((x) => x.name === name);
  const url = `/api/watchers/${encodeURIComponent(name)}/${action}`;
  try {
    if (action === "scale") {
      const count = Number(input.value);
      if (!Number.isInteger(count) || count < 0) { say(`${name}: the count must be a whole number`, true); return; }
      if (w && count < w.numprocesses &&
          !(await confirmed(`Scale ${name} from ${w.numprocesses} to ${count}? This stops ${w.numprocesses - count} of its processes.`))) return;
      const answer = await post(url, { count });
      delete input.dataset.edited;
      say(`${name}: ${answer.previous} -> ${answer.numprocesses}`);
      return;
    }
    const asks = { stop: `Stop every process of ${name}?`, restart: `Restart ${name}, replacing its processes in batches (rolling)?` };
    if (asks[action] && !(await confirmed(asks[action]))) return;
    await post(url);
    say({ start: `starting ${name}`, stop: `stopping ${name}`, restart: `rolling restart of ${name} started` }[action]);
  } catch (error) {
    say(`${name}: ${error.message}`, true);
  }
}

async function agentAction(host, action) {
  try {
    if (action === "drain" && !(await confirmed(`Drain ${host}? Its processes move to other hosts, each replacement started before its original stops.`))) return;
    const answer = await post(`/api/agents/${encodeURIComponent(host)}/${action}`);
    say(action === "drain" ? `draining ${host}: ${answer.processes} processes to move` : `${host} takes processes again`);
  } catch (error) {
    say(`${host}: ${error.message}`, true);
  }
}

// ---- the live stream ----

function draw(state) {
  view.state = state;
  drawWatchers(state);
  drawAgents(state);
  if (view.selected) drawProcesses(state);
}

function live() {
  const link = $("#link");
  const source = new EventSource("/api/live");
  source.onopen = () => { link.textContent = "live"; link.className = "link"; };
  source.onerror = () => { link.textContent = "reconnecting"; link.className = "link down"; };
  source.addEventListener("error", (message) => {
    if (message.data) { link.textContent = JSON.parse(message.data).error; source.close(); }
  });
  source.addEventListener("state", (message) => draw(JSON.parse(message.data)));
  source.addEventListener("event", (message) => addEvent(JSON.parse(message.data)));
}

document.addEventListener("input", (e) => { if (e.target.dataset && e.target.dataset.scale) e.target.dataset.edited = "1"; });
live();
