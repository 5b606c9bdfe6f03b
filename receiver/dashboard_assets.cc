#include "receiver/dashboard_assets.h"

namespace hoist::receiver {

// Edit as CSS; keep colour paired with a text label everywhere.
const char kDashboardCss[] = R"css(
/* Hoist dashboard. Colour is never the only signal: every state also has a
   text label. Green: in sync / succeeded; red: failed, gave up, unreachable;
   amber: converging, running, paused, in progress; grey: everything else. */
:root {
  --fg: #1b1f24; --muted: #57606a; --bg: #ffffff; --line: #d0d7de;
  --head: #f6f8fa; --link: #0550ae; --focus: #0969da;
  --ok-bg: #dafbe1; --ok-fg: #116329;
  --bad-bg: #ffebe9; --bad-fg: #a40e26;
  --busy-bg: #fff8c5; --busy-fg: #7d4e00;
  --idle-bg: #eaeef2; --idle-fg: #424a53;
  color-scheme: light;
}
* { box-sizing: border-box; }
body {
  margin: 0; color: var(--fg); background: var(--bg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
}
[hidden] { display: none !important; }
a { color: var(--link); }
:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
a:focus-visible, button:focus-visible, input:focus-visible,
select:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
.skip { position: absolute; left: -999px; top: 0; }
.skip:focus { left: 8px; background: var(--bg); padding: 4px 8px; z-index: 2; }
header {
  display: flex; flex-wrap: wrap; align-items: center; gap: 4px 16px;
  padding: 8px 16px; border-bottom: 1px solid var(--line);
  background: var(--head);
}
.brand { font-weight: 700; }
nav a { margin-right: 12px; text-decoration: none; }
nav a[aria-current="page"] { font-weight: 700; text-decoration: underline; }
#live-status { margin: 0; color: var(--muted); font-size: 12px; }
#live-status:empty { display: none; }
form.logout { margin-left: auto; display: flex; gap: 8px; align-items: center; }
.user { color: var(--muted); }
main { padding: 8px 16px 32px; max-width: 100%; }
h1 { font-size: 20px; margin: 8px 0 12px; }
h2 { font-size: 16px; margin: 20px 0 8px; }
code, pre { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { margin: 0; white-space: pre-wrap; max-height: 16em; overflow: auto;
      background: var(--head); padding: 4px; }
.scroll { overflow: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 4px 0 12px; }
caption { text-align: left; color: var(--muted); padding: 2px 0; }
th, td { border: 1px solid var(--line); padding: 3px 6px; text-align: left;
         vertical-align: top; }
thead th { background: var(--head); position: sticky; top: 0; }
#fleet td, #fleet th { white-space: nowrap; font-size: 12px; }
#fleet th[scope="row"] { position: sticky; left: 0; background: var(--head); }
dl.facts { display: grid; grid-template-columns: max-content 1fr;
           gap: 2px 12px; margin: 0 0 8px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
form { margin: 8px 0; }
form.act, form.filter, form.login {
  display: flex; flex-wrap: wrap; gap: 6px; align-items: center;
}
label { font-weight: 600; }
input, select, button { font: inherit; padding: 3px 6px; }
input, select { border: 1px solid var(--line); border-radius: 4px; }
button { border: 1px solid #8c959f; border-radius: 4px; background: var(--head);
         cursor: pointer; }
button:hover { background: var(--idle-bg); }
.alert { border-left: 4px solid var(--bad-fg); background: var(--bad-bg);
         color: var(--bad-fg); padding: 6px 10px; }
.legend { list-style: none; padding: 0; display: flex; flex-wrap: wrap;
          gap: 4px 16px; }
.key { display: inline-block; padding: 0 6px; border: 1px solid var(--line); }
progress { width: 8em; height: 0.9em; appearance: none; -webkit-appearance: none;
           border: 1px solid var(--line); border-radius: 3px;
           background: var(--idle-bg); vertical-align: middle; }
progress::-webkit-progress-bar { background: var(--idle-bg); }
progress::-webkit-progress-value { background: var(--focus); }
progress::-moz-progress-bar { background: var(--focus); }

/* Grey unless said otherwise below. */
.c-none { color: var(--muted); text-align: center; }
.c-unspecified, .c-missing, .c-stopped, .c-other-digest, .c-foreign,
[data-state] > .st, [data-phase] > .st {
  background: var(--idle-bg); color: var(--idle-fg);
}
/* Green. */
.c-in-sync,
[data-state="ROLLOUT_STATE_SUCCEEDED"] > .st,
[data-phase="DEPLOY_PHASE_SUCCEEDED"] > .st,
[data-reachable="true"] > .st {
  background: var(--ok-bg); color: var(--ok-fg);
}
/* Red. */
.c-gave-up, .c-unreachable,
[data-state="ROLLOUT_STATE_FAILED"] > .st,
[data-state="ROLLOUT_STATE_ROLLED_BACK"] > .st,
[data-phase="DEPLOY_PHASE_FAILED"] > .st,
[data-phase="DEPLOY_PHASE_ROLLED_BACK"] > .st,
[data-reachable="false"] > .st {
  background: var(--bad-bg); color: var(--bad-fg);
}
/* Amber. */
.c-converging,
[data-state="ROLLOUT_STATE_RUNNING"] > .st,
[data-state="ROLLOUT_STATE_PAUSED"] > .st,
[data-phase="DEPLOY_PHASE_PULLING"] > .st,
[data-phase="DEPLOY_PHASE_PULLED"] > .st,
[data-phase="DEPLOY_PHASE_CREATING"] > .st,
[data-phase="DEPLOY_PHASE_STOPPING_OLD"] > .st,
[data-phase="DEPLOY_PHASE_STARTING"] > .st,
[data-phase="DEPLOY_PHASE_HEALTH_CHECKING"] > .st,
[data-phase="DEPLOY_PHASE_ROLLING_BACK"] > .st {
  background: var(--busy-bg); color: var(--busy-fg);
}
#rollout-state .st { padding: 1px 8px; border-radius: 3px; }
[data-convergence] > .st { font-weight: 600; }
@media (prefers-reduced-motion: reduce) { * { transition: none !important; } }
)css";

// Edit as JavaScript; build DOM with textContent only.
const char kDashboardJs[] = R"js(
// Hoist dashboard: live updates over Server-Sent Events. The pages are
// complete without this module; it only keeps them current. It reads
// document.body.dataset.live ("fleet", "service:NAME" or "rollout:ID") and
// builds every node with textContent, never from markup in the data.
// The label and class rules match receiver/dashboard_render.cc.

const live = document.body.dataset.live || '';
const statusEl = document.getElementById('live-status');

function setStatus(text) {
  if (statusEl) statusEl.textContent = text;
}

// The enum name without `prefix`, or "UNSPECIFIED" when absent (proto JSON
// omits zero enums).
function suffix(name, prefix) {
  const s = typeof name === 'string' && name.startsWith(prefix) ?
      name.slice(prefix.length) : '';
  return s || 'UNSPECIFIED';
}

function words(name, prefix, separator, unspecified) {
  const s = suffix(name, prefix);
  if (s === 'UNSPECIFIED') return unspecified;
  return s.toLowerCase().split('_').join(separator);
}

const enumName = (name, prefix) => prefix + suffix(name, prefix);
const convLabel = (c) => words(c, 'CONVERGENCE_', ' ', 'unknown');
const convClass = (c) => 'c-' + words(c, 'CONVERGENCE_', '-', 'unspecified');
const stateLabel = (s) => words(s, 'ROLLOUT_STATE_', ' ', 'unknown');
const phaseLabel = (p) => words(p, 'DEPLOY_PHASE_', ' ', 'waiting');

function shortDigest(digest) {
  const d = digest || '';
  return d.startsWith('sha256:') ? d.slice(7, 19) : d.slice(0, 12);
}

// "2026-01-02T03:04:05.123Z" -> "2026-01-02T03:04:05Z", as the server shows.
function timeNode(text) {
  if (!text) return document.createTextNode('');
  const t = document.createElement('time');
  const seconds = String(text).replace(/\.\d+Z$/, 'Z');
  t.dateTime = seconds;
  t.textContent = seconds;
  return t;
}

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function parse(event) {
  try {
    return JSON.parse(event.data);
  } catch (e) {
    return null;
  }
}

// ---- fleet and service pages: event "services" (ListServicesResponse) ----

function fillFleetCell(cell, service, host) {
  const conv = enumName(host.convergence, 'CONVERGENCE_');
  const digest = host.running_digest || '';
  cell.className = convClass(conv);
  cell.dataset.convergence = conv;
  const parts = [convLabel(conv)];
  if (digest) {
    cell.dataset.digest = digest;
    parts.push(' ', el('code', shortDigest(digest)));
    if (digest === service.desired_digest && service.desired_tag) {
      parts.push(' ' + service.desired_tag);
    }
  } else {
    delete cell.dataset.digest;
  }
  cell.replaceChildren(...parts);
}

function updateFleet(response) {
  let missing = false;
  for (const service of response.services || []) {
    for (const host of service.hosts || []) {
      const cell = document.getElementById(
          'cell-' + service.name + '--' + host.agent);
      if (cell) {
        fillFleetCell(cell, service, host);
      } else {
        missing = true;
      }
    }
  }
  setStatus(missing ? 'live (new services or hosts: reload to see them)' :
                      'live');
}

function cellOf(row, cls) {
  return row.querySelector('.' + cls);
}

function newServiceHostRow(agent) {
  const row = el('tr', undefined, {id: 'host-' + agent});
  row.append(el('th', agent, {scope: 'row'}));
  for (const cls of ['st', 'dg', 'cs', 'at', 'err']) {
    row.append(el('td', '', {class: cls}));
  }
  document.querySelector('#hosts tbody').append(row);
  return row;
}

function fillServiceHostRow(row, host) {
  const conv = enumName(host.convergence, 'CONVERGENCE_');
  row.dataset.convergence = conv;
  const st = cellOf(row, 'st');
  st.className = 'st ' + convClass(conv);
  st.textContent = convLabel(conv);
  const digest = host.running_digest || '';
  cellOf(row, 'dg').replaceChildren(
      ...(digest ? [el('code', shortDigest(digest), {title: digest})] : []));
  cellOf(row, 'cs').textContent = host.container_state || '';
  cellOf(row, 'at').textContent = String(host.attempts || 0);
  cellOf(row, 'err').textContent = host.last_error || '';
}

function updateService(name, response) {
  const service = (response.services || []).find((s) => s.name === name);
  if (!service) return;
  const desired = document.getElementById('desired-digest');
  if (desired) desired.textContent = service.desired_digest || 'none';
  const tag = document.getElementById('desired-tag');
  if (tag) tag.textContent = service.desired_tag || '—';
  for (const host of service.hosts || []) {
    const row = document.getElementById('host-' + host.agent) ||
        newServiceHostRow(host.agent);
    fillServiceHostRow(row, host);
  }
  setStatus('live');
}

// ---- rollout page: events "rollout" (Rollout) and "pull" ----

const PULL_DONE = new Set([
  'PULLED', 'CREATING', 'STOPPING_OLD', 'STARTING', 'HEALTH_CHECKING',
  'SUCCEEDED', 'ROLLING_BACK', 'ROLLED_BACK',
]);

function newRolloutHostRow(agent) {
  const row = el('tr', undefined, {id: 'host-' + agent});
  row.append(el('th', agent, {scope: 'row'}), el('td', '', {class: 'st'}));
  const bar = el('progress', undefined, {
    id: 'pull-' + agent,
    max: '100',
    value: '0',
    'aria-label': 'pull progress of ' + agent,
  });
  row.append(el('td'));
  row.lastChild.append(bar);
  for (const cls of ['ts', 'tf', 'err', 'ec', 'log']) {
    row.append(el('td', '', {class: cls}));
  }
  document.querySelector('#hosts tbody').append(row);
  return row;
}

function fillRolloutHostRow(row, host) {
  const phase = enumName(host.phase, 'DEPLOY_PHASE_');
  const previous = row.dataset.phase;
  row.dataset.phase = phase;
  cellOf(row, 'st').textContent = phaseLabel(phase);
  const bar = document.getElementById('pull-' + host.agent);
  if (bar && phase !== previous) {
    if (PULL_DONE.has(suffix(phase, 'DEPLOY_PHASE_'))) {
      bar.value = 100;
    } else if (phase !== 'DEPLOY_PHASE_PULLING') {
      bar.value = 0;
    }
  }
  cellOf(row, 'ts').replaceChildren(timeNode(host.started));
  cellOf(row, 'tf').replaceChildren(timeNode(host.finished));
  cellOf(row, 'err').textContent = host.error || '';
  cellOf(row, 'ec').textContent = host.exit_code ? String(host.exit_code) : '';
  cellOf(row, 'log').replaceChildren(
      ...(host.log_tail ? [el('pre', host.log_tail)] : []));
}

function updateRollout(rollout) {
  const state = enumName(rollout.state, 'ROLLOUT_STATE_');
  const p = document.getElementById('rollout-state');
  if (p) {
    p.dataset.state = state;
    const label = p.querySelector('.st');
    if (label) label.textContent = stateLabel(state);
  }
  const error = document.getElementById('rollout-error');
  if (error) error.textContent = rollout.error || '';
  const finished = document.getElementById('rollout-finished');
  if (finished) {
    finished.replaceChildren(
        rollout.finished ? timeNode(rollout.finished) : '—');
  }
  const s = suffix(state, 'ROLLOUT_STATE_');
  const resume = document.querySelector('form.act-resume');
  if (resume) resume.hidden = s !== 'PAUSED';
  const cancel = document.querySelector('form.act-cancel');
  if (cancel) cancel.hidden = !['PENDING', 'RUNNING', 'PAUSED'].includes(s);
  for (const host of rollout.hosts || []) {
    const row = document.getElementById('host-' + host.agent) ||
        newRolloutHostRow(host.agent);
    fillRolloutHostRow(row, host);
  }
}

function updatePull(message) {
  if (!message || !message.agent) return;
  const bar = document.getElementById('pull-' + message.agent);
  if (!bar) return;
  const pull = message.pull || {};
  // int64 fields arrive as JSON strings.
  const current = Number(pull.current_bytes || 0);
  const total = Number(pull.total_bytes || 0);
  if (total > 0) {
    bar.value = Math.max(0, Math.min(100, Math.floor(100 * current / total)));
  } else {
    bar.removeAttribute('value');  // indeterminate
  }
}

// ---- wiring ----

function listen(url, handlers) {
  if (typeof EventSource === 'undefined') return;
  const source = new EventSource(url);
  source.addEventListener('open', () => setStatus('live'));
  // EventSource reconnects by itself, sending Last-Event-ID.
  source.addEventListener('error', () => {
    setStatus(source.readyState === EventSource.CLOSED ?
                  'offline: reload the page' :
                  'reconnecting…');
  });
  for (const [name, handle] of Object.entries(handlers)) {
    source.addEventListener(name, (event) => {
      const data = parse(event);
      if (data !== null) handle(data);
    });
  }
  // The server ends a finished rollout's stream with `end`: stay closed
  // rather than reconnect to hear the same end again.
  source.addEventListener('end', () => {
    source.close();
    setStatus('finished');
  });
}

if (live === 'fleet') {
  listen('/events', {services: updateFleet});
} else if (live.startsWith('service:')) {
  const name = live.slice('service:'.length);
  listen('/events', {services: (data) => updateService(name, data)});
} else if (live.startsWith('rollout:')) {
  const id = live.slice('rollout:'.length);
  listen('/rollouts/' + encodeURIComponent(id) + '/events',
         {rollout: updateRollout, pull: updatePull});
}
)js";

}  // namespace hoist::receiver
