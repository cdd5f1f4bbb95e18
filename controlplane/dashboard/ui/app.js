// Edge dashboard: reads /api/*, follows /api/stream (Server-Sent Events)
// and redraws the current tab when what it shows changed. Read-only; no
// external assets; every value is inserted as text, never as HTML.
'use strict';

const PAGE = 100;

function ago(sec) {
  if (sec < 0) return 'never';
  if (sec < 60) return sec + 's ago';
  if (sec < 3600) return Math.floor(sec / 60) + 'm ago';
  if (sec < 86400) return Math.floor(sec / 3600) + 'h ago';
  return Math.floor(sec / 86400) + 'd ago';
}

function since(iso) {
  if (!iso) return '';
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
  return ago(s);
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function badge(text, kind) {
  return el('span', { class: 'badge ' + (kind || String(text).toLowerCase().replace(/[^a-z]+/g, '-')) }, text);
}

function bar(done, total) {
  const p = el('progress', { max: String(Math.max(total, 1)), value: String(Math.min(done, total)) });
  return p;
}

const views = {
  nodes: {
    url: '/api/nodes', watches: ['nodes', 'pods'],
    states: ['', 'online', 'offline', 'Ready', 'NotReady', 'Unreachable'], stateParam: 'state',
    head: ['Node', 'State', 'Last seen', 'Pods', 'Arch', 'Runtimes'],
    row: n => [n.name, el('span', {}, badge(n.online ? 'online' : 'offline'), n.online ? '' : ' ' + n.state), ago(n.seenAgo), n.pods, [n.os, n.arch].filter(Boolean).join('/'),
      (n.runtimes || []).join(', ')],
    detail: n => n.state + (n.reason ? ' (' + n.reason + ')' : '') + (n.unschedulable ? ', cordoned' : ''),
  },
  pods: {
    url: '/api/pods', watches: ['pods'],
    states: ['', 'Pending', 'Running', 'Succeeded', 'Failed', 'Unknown'], stateParam: 'phase',
    head: ['Namespace', 'Pod', 'Node', 'Status', 'Ready', 'Restarts', 'Age'],
    row: p => [p.namespace, p.name, p.node || '—', badge(p.status, p.phase.toLowerCase()), p.ready, p.restarts, since(p.created)],
  },
  workloads: {
    url: '/api/workloads', watches: ['deployments', 'daemonsets', 'jobs', 'replicasets'],
    states: ['', 'Deployment', 'DaemonSet', 'Job', 'ReplicaSet'], stateParam: 'kind',
    head: ['Kind', 'Namespace', 'Name', 'Ready', 'Up to date', 'Available', 'Status'],
    row: w => [w.kind, w.namespace, w.name, el('span', {}, bar(w.ready, w.desired), ' ' + w.ready + '/' + w.desired), w.upToDate, w.available, w.status || ''],
  },
  rollouts: {
    url: '/api/rollouts', watches: ['rollouts'],
    head: ['Namespace', 'Rollout', 'Target', 'Phase', 'Waves'],
    row: r => [r.namespace, r.name, r.target, el('span', {}, badge(r.phase), r.message ? ' ' + r.message : ''), waves(r)],
  },
  events: {
    url: '/api/events', watches: [],
    states: ['', 'Normal', 'Warning'], stateParam: 'type',
    head: ['Last seen', 'Type', 'Reason', 'Object', 'Message', 'Count'],
    row: e => [since(e.last), badge(e.type || 'Normal'), e.reason, e.object, e.message, e.count],
  },
};

// waves draws a rollout's waves as `edgectl rollout status` prints them.
function waves(r) {
  const box = el('div', { class: 'waves' });
  r.waves.forEach((w, i) => {
    const extra = [];
    if (w.failed) extra.push(w.failed + ' failed');
    if (w.offline) extra.push(w.offline + ' offline');
    if (w.state !== 'pending') extra.push(w.state);
    box.append(el('div', { class: 'wave ' + w.state.replace(' ', '-') },
      'wave ' + (i + 1) + '/' + r.waves.length + ' ', bar(w.ready, w.total),
      ' ' + w.ready + '/' + w.total + ' ' + r.unit + ' ready' + (extra.length ? ' (' + extra.join(', ') + ')' : '')));
  });
  if (!r.waves.length) box.append('not started');
  return box;
}

const st = { tab: 'nodes', offset: 0, q: '', state: '', total: 0, timer: null, loading: false, again: false };
const $ = id => document.getElementById(id);

async function getJSON(url) {
  const res = await fetch(url, { credentials: 'same-origin', cache: 'no-store' });
  if (!res.ok) throw new Error(url + ': ' + res.status + ' ' + (await res.text()).trim());
  return res.json();
}

function notice(text) {
  $('notice').hidden = !text;
  $('notice').textContent = text || '';
}

async function loadSummary() {
  const s = await getJSON('/api/summary');
  const box = $('summary');
  box.replaceChildren(
    el('span', { class: 'chip' }, el('b', {}, s.nodes), ' nodes: ', el('b', { class: 'ok' }, s.online), ' online, ',
      el('b', { class: s.offline ? 'bad' : '' }, s.offline), ' offline'),
    el('span', { class: 'chip' }, el('b', {}, s.pods), ' pods' + phases(s.podPhases)),
    el('span', { class: 'chip' }, el('b', {}, Object.values(s.workloads).reduce((a, b) => a + b, 0)), ' workloads'),
    el('span', { class: 'chip' }, el('b', {}, Object.values(s.rollouts).reduce((a, b) => a + b, 0)), ' rollouts'),
  );
  if (!s.synced) box.append(el('span', { class: 'chip' }, 'loading…'));
}

function phases(m) {
  const parts = Object.entries(m).sort().map(([k, v]) => v + ' ' + k);
  return parts.length ? ' (' + parts.join(', ') + ')' : '';
}

async function loadView() {
  if (st.loading) { st.again = true; return; }
  st.loading = true;
  try {
    const v = views[st.tab];
    const params = new URLSearchParams({ offset: st.offset, limit: PAGE });
    if (st.q) params.set('q', st.q);
    if (st.state && v.stateParam) params.set(v.stateParam, st.state);
    const [p] = await Promise.all([getJSON(v.url + '?' + params), loadSummary()]);
    st.total = p.total;
    render(v, p);
    notice(p.synced ? '' : 'The control plane is still loading its cache…');
    $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  } catch (e) {
    notice(String(e.message || e));
  } finally {
    st.loading = false;
    if (st.again) { st.again = false; schedule(0); }
  }
}

function render(v, p) {
  const table = el('table', { id: 'table-' + st.tab });
  table.append(el('thead', {}, el('tr', {}, ...v.head.map(h => el('th', {}, h)))));
  const body = el('tbody');
  for (const item of p.items) {
    const tr = el('tr', { 'data-name': item.name }, ...v.row(item).map(c => el('td', {}, c)));
    if (v.detail) tr.title = v.detail(item);
    body.append(tr);
  }
  if (!p.items.length) body.append(el('tr', {}, el('td', { colspan: String(v.head.length), class: 'empty' }, 'nothing to show')));
  table.append(body);
  $('content').replaceChildren(table);
  const last = Math.min(p.offset + p.items.length, p.total);
  $('range').textContent = p.total ? (p.offset + 1) + '–' + last + ' of ' + p.total : '0 of 0';
  $('prev').disabled = p.offset === 0;
  $('next').disabled = last >= p.total;
}

function schedule(delay) {
  clearTimeout(st.timer);
  st.timer = setTimeout(loadView, delay);
}

function selectTab() {
  const tab = (location.hash || '#nodes').slice(1);
  st.tab = views[tab] ? tab : 'nodes';
  st.offset = 0; st.state = '';
  for (const a of document.querySelectorAll('#tabs a')) a.classList.toggle('active', a.dataset.tab === st.tab);
  const v = views[st.tab], sel = $('state');
  sel.hidden = !v.states;
  sel.replaceChildren(...(v.states || []).map(s => el('option', { value: s }, s || 'all')));
  schedule(0);
}

// stream follows /api/stream; the browser reconnects by itself.
function stream() {
  const es = new EventSource('/api/stream');
  const live = $('live');
  es.addEventListener('hello', () => { live.textContent = 'live'; live.className = 'live on'; schedule(0); });
  es.addEventListener('batch', m => {
    const b = JSON.parse(m.data);
    const v = views[st.tab];
    const touched = v.watches.some(r => b.changed[r]) || (st.tab === 'events' && (b.events.length || b.dropped));
    if (touched) schedule(st.offset === 0 ? 100 : 1000);
    else if (Object.keys(b.changed).length) loadSummary().catch(() => {});
  });
  es.onerror = () => { live.textContent = 'reconnecting…'; live.className = 'live off'; };
}

window.addEventListener('hashchange', selectTab);
document.addEventListener('DOMContentLoaded', () => {
  $('filter').addEventListener('input', e => { st.q = e.target.value.trim(); st.offset = 0; schedule(250); });
  $('state').addEventListener('change', e => { st.state = e.target.value; st.offset = 0; schedule(0); });
  $('prev').addEventListener('click', () => { st.offset = Math.max(0, st.offset - PAGE); schedule(0); });
  $('next').addEventListener('click', () => { if (st.offset + PAGE < st.total) { st.offset += PAGE; schedule(0); } });
  selectTab();
  stream();
  setInterval(() => schedule(0), 30000); // refresh "ago" columns
});
