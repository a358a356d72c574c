// Cadenza operator page — ops.js (loaded by ops.html)
// Polls GET /api/ops every 2 s (no user token; polls never overlap, 5 s timeout) and renders:
// cards with the current value and an inline-SVG sparkline over the last 5 minutes for
// total lag (consumer groups + streaming queries), connections, messages pushed/s,
// plays accepted/s, acceptance of recommendations (with skip rates) and errors; and the consumer-group and streaming-query tables.
// A failed poll leaves a gap in the sparklines and an error in the status line.
// All server text is rendered with textContent. Links to /metrics live in ops.html.

import { h, fillIcons, formatNumber } from './js/dom.js';

const POLL_MS = 2000;
const TIMEOUT_MS = 5000;
const HISTORY_MS = 5 * 60 * 1000;
const SVG_NS = 'http://www.w3.org/2000/svg';
const LAG_WARN = 100;
const LAG_HIGH = 10000;

const num = (v) => (Number.isFinite(Number(v)) ? Number(v) : null);
const sum = (rows, key) => rows.reduce((acc, r) => acc + (num(r[key]) ?? 0), 0);

// Each card: title, digits, value(data), sub(data, card), optional warn(latest, first); series [{t, v}].
const CARDS = [
  { key: 'lag', title: 'Total lag', digits: 0, warn: (latest) => latest > LAG_WARN,
    value: (d) => sum(d.groups, 'lag') + sum(d.streams, 'lag'),
    sub: (d) => `groups ${formatNumber(sum(d.groups, 'lag'))} · streams ${formatNumber(sum(d.streams, 'lag'))}` },
  { key: 'connections', title: 'Live connections', digits: 0, value: (d) => num(d.rates.connections),
    sub: () => 'open websockets' },
  { key: 'pushed', title: 'Messages pushed / s', digits: 1, value: (d) => num(d.rates.messages_pushed_per_s),
    sub: () => 'to browsers' },
  { key: 'plays', title: 'Plays accepted / s', digits: 1, value: (d) => num(d.rates.plays_accepted_per_s),
    sub: () => 'play frames on /ws, POST /api/plays → Kafka' },
  { key: 'acceptance', title: 'Acceptance %', digits: 1,
    value: (d) => { const a = num(d.rates.listening?.acceptance); return a == null ? null : 100 * a; },
    sub: (d) => {
      const pct = (v) => (num(v) == null ? '–' : `${(100 * num(v)).toFixed(1)}%`);
      const l = d.rates.listening || {};
      return `started from Up next / radio · skips ${pct(l.skip_recommended)} of those, ${pct(l.skip_browsed)} browsed`;
    } },
  { key: 'errors', title: 'Errors', digits: 0, warn: (latest, first) => latest > first, value: (d) => num(d.rates.errors),
    sub: (d, card) => {
      const first = card.series.find((p) => p.v != null);
      const now = num(d.rates.errors);
      return first && now != null ? `+${formatNumber(Math.max(0, now - first.v))} in the last 5 min` : 'since start';
    } },
];

const cardEls = new Map();

function buildCards() {
  const box = document.getElementById('ops-cards');
  for (const card of CARDS) {
    card.series = [];
    const value = h('div', { class: 'ops-value' }, '–');
    const sub = h('div', { class: 'ops-sub' });
    const svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('class', 'spark');
    svg.setAttribute('viewBox', '0 0 200 40');
    svg.setAttribute('preserveAspectRatio', 'none');
    svg.setAttribute('role', 'img');
    const title = document.createElementNS(SVG_NS, 'title');
    const area = document.createElementNS(SVG_NS, 'path');
    area.setAttribute('class', 'area');
    const line = document.createElementNS(SVG_NS, 'path');
    line.setAttribute('class', 'line');
    svg.append(title, area, line);
    box.append(h('article', { class: 'ops-card', dataset: { metric: card.key } }, h('h2', null, card.title), value, sub, svg));
    cardEls.set(card.key, { value, sub, svg, title, area, line });
  }
}

function record(now, data) {
  for (const card of CARDS) {
    card.series.push({ t: now, v: data ? card.value(data) : null });
    while (card.series.length && card.series[0].t < now - HISTORY_MS) card.series.shift();
  }
}

function renderCards(now, data) {
  for (const card of CARDS) {
    const el = cardEls.get(card.key);
    if (data) {
      const v = card.value(data);
      el.value.textContent = formatNumber(v, card.digits);
      el.sub.textContent = card.sub(data, card);
    }
    drawSpark(el, card, now);
  }
}

function drawSpark(el, card, now) {
  const W = 200;
  const H = 40;
  // The x axis spans the recorded history (up to 5 minutes), so a fresh page fills the width too.
  const t0 = Math.max(now - HISTORY_MS, card.series.length ? card.series[0].t : now);
  const spanT = Math.max(1000, now - t0);
  const values = card.series.filter((p) => p.v != null).map((p) => p.v);
  const max = Math.max(0, ...values);
  const min = Math.min(0, ...values);
  const span = max - min || 1;
  const x = (t) => ((t - t0) / spanT) * W;
  const y = (v) => H - 2 - ((v - min) / span) * (H - 4);

  // Split into segments at failed polls and at gaps (e.g. a sleeping laptop).
  const segments = [];
  let seg = [];
  let prevT = null;
  for (const p of card.series) {
    if (p.v == null || (prevT != null && p.t - prevT > POLL_MS * 3)) {
      if (seg.length) segments.push(seg);
      seg = [];
    }
    if (p.v != null) seg.push(p);
    prevT = p.t;
  }
  if (seg.length) segments.push(seg);

  let line = '';
  let area = '';
  for (const s of segments) {
    const pts = s.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`);
    if (pts.length === 1) pts.push(`${(x(s[0].t) + 1).toFixed(1)},${y(s[0].v).toFixed(1)}`);
    line += `M${pts.join('L')}`;
    area += `M${x(s[0].t).toFixed(1)},${H}L${pts.join('L')}L${pts[pts.length - 1].split(',')[0]},${H}Z`;
  }
  el.line.setAttribute('d', line);
  el.area.setAttribute('d', area);
  const latest = values.length ? values[values.length - 1] : null;
  el.svg.classList.toggle('warn', Boolean(card.warn && values.length && card.warn(latest, values[0])));
  el.title.textContent = values.length
    ? `${card.title}, last ${Math.max(1, Math.round(spanT / 60000))} min: min ${formatNumber(Math.min(...values), card.digits)}, max ${formatNumber(max, card.digits)}`
    : `${card.title}: no data yet`;
}

// ---------------------------------------------------------------- tables

function lagCell(lag) {
  const v = num(lag);
  const cls = v == null ? 'num' : v >= LAG_HIGH ? 'num lag-high' : v >= LAG_WARN ? 'num lag-warn' : 'num';
  return h('td', { class: cls }, formatNumber(v));
}

function stateBadge(state) {
  const s = state == null ? '' : String(state);
  const cls = /^(running|active|ok|up|stable|idle|healthy)$/i.test(s) ? 'state ok'
    : /(fail|error|stop|dead|down|terminat|crash)/i.test(s) ? 'state bad' : 'state';
  return h('span', { class: cls }, s || 'unknown');
}

const byKeys = (...keys) => (a, b) => {
  for (const k of keys) {
    const x = a[k];
    const y = b[k];
    const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x ?? '').localeCompare(String(y ?? ''));
    if (c) return c;
  }
  return 0;
};

function renderTable(id, rows, columns, empty, totalId) {
  const table = document.getElementById(id);
  const body = table.tBodies[0];
  if (!rows.length) {
    body.replaceChildren(h('tr', null, h('td', { class: 'ops-empty', colspan: columns.length }, empty)));
    table.tFoot.replaceChildren();
    document.getElementById(totalId).textContent = '';
    return;
  }
  body.replaceChildren(...rows.map((r) => h('tr', null, columns.map((c) => c.cell(r)))));
  const totalLag = sum(rows, 'lag');
  table.tFoot.replaceChildren(h('tr', null,
    h('td', { colspan: columns.length - (columns.at(-1).key === 'lag' ? 1 : 2) }, `Total (${rows.length} partitions)`),
    lagCell(totalLag),
    columns.at(-1).key === 'lag' ? null : h('td')));
  document.getElementById(totalId).textContent = `lag ${formatNumber(totalLag)}`;
}

const text = (key) => ({ key, cell: (r) => h('td', null, r[key] == null ? '' : String(r[key])) });
const number = (key) => ({ key, cell: (r) => h('td', { class: 'num' }, formatNumber(r[key])) });
const lag = { key: 'lag', cell: (r) => lagCell(r.lag) };

function renderTables(data) {
  renderTable('groups-table', [...data.groups].sort(byKeys('group', 'topic', 'partition')),
    [text('group'), text('topic'), number('partition'), number('committed'), number('end'), lag],
    'No consumer groups reported.', 'groups-total');
  renderTable('streams-table', [...data.streams].sort(byKeys('query', 'topic', 'partition')),
    [text('query'), text('topic'), number('partition'), number('processed'), number('end'), lag,
      { key: 'state', cell: (r) => h('td', null, stateBadge(r.state)) }],
    'No streaming queries reported.', 'streams-total');
}

// ---------------------------------------------------------------- polling

function setStatus(state, message) {
  const el = document.getElementById('ops-status');
  el.dataset.state = state;
  document.getElementById('ops-status-text').textContent = message;
}

function normalize(raw) {
  const obj = raw && typeof raw === 'object' ? raw : {};
  return {
    groups: Array.isArray(obj.groups) ? obj.groups.filter((r) => r && typeof r === 'object') : [],
    streams: Array.isArray(obj.streams) ? obj.streams.filter((r) => r && typeof r === 'object') : [],
    rates: obj.rates && typeof obj.rates === 'object' ? obj.rates : {},
    ts: num(obj.ts),
  };
}

async function poll() {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), TIMEOUT_MS);
  const now = Date.now();
  try {
    const res = await fetch('/api/ops', { headers: { Accept: 'application/json' }, cache: 'no-store', signal: ctrl.signal });
    if (!res.ok) {
      let detail = '';
      try { const body = await res.json(); detail = typeof body?.error === 'string' ? `: ${body.error}` : ''; } catch { /* not JSON */ }
      throw new Error(`HTTP ${res.status}${detail}`);
    }
    const data = normalize(await res.json());
    record(now, data);
    renderCards(now, data);
    renderTables(data);
    const at = data.ts != null ? new Date(data.ts * 1000) : new Date(now);
    setStatus('ok', `Updated ${at.toLocaleTimeString()}`);
  } catch (err) {
    record(now, null);
    renderCards(now, null);
    const why = err.name === 'AbortError' ? 'no answer within 5 s' : err.message || 'network error';
    setStatus('error', `Can't read /api/ops (${why}) — retrying every ${POLL_MS / 1000} s; figures shown may be stale`);
  } finally {
    clearTimeout(timer);
    setTimeout(poll, Math.max(0, POLL_MS - (Date.now() - now)));
  }
}

fillIcons(document);
buildCards();
poll();
