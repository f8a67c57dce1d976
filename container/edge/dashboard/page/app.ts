/// <reference types="uplot" />
/**
 * The dashboard page's behaviour (compiled on its own, for the browser: tsconfig.json beside it). It
 * exchanges the link token from the URL fragment for a session cookie once, removes the token from the
 * address bar, then follows /dashboard/api/live (Server-Sent Events) and draws what arrives. It holds no
 * key and keeps no token.
 */

/** As dashboard/live.ts sends it (this page is a classic script built on its own, so it cannot import that type). */
interface Sample {
  t: number;
  awake: number;
  active: number;
  queued: number;
  nodes: number;
  nodesExact: boolean;
  wakesPerSec: number;
  evalsPerSec: number;
  p50: number | null;
  p99: number | null;
  memory: { grantedMB: number; capacityMB: number; containerRssMB: number };
  pool: { spares: number; blanks: number; poolTarget: number; wakesFrom: Record<string, number> };
}

interface Row {
  id: string;
  status: string;
  pid: number | null;
  memoryMB: number | null;
  lastActivity: number | null;
  lifetime: string;
  parent: string;
  budget: { maxNodes: number; maxAwake: number; memoryMB: number };
  createdAt: number;
}

interface Budget {
  principal: string;
  limits: Record<string, number>;
  used: Record<string, number>;
}

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => document.getElementById(id) as T;
const HEADERS = { 'x-keynode-dashboard': '1' };
const WINDOW = 300;

const state = {
  rows: [] as Row[],
  more: false,
  sort: { key: 'status' as keyof Row, dir: 1 },
  filter: '',
  selected: '' as string,
  live: undefined as EventSource | undefined,
  logs: undefined as EventSource | undefined,
  series: { t: [] as number[], wakes: [] as number[], evals: [] as number[], p50: [] as (number | null)[], p99: [] as (number | null)[], mem: [] as number[], cap: [] as number[] },
  charts: [] as uPlot[],
};

function text(el: HTMLElement, value: string): void {
  if (el.textContent !== value) el.textContent = value;
}

function fmt(n: number | null | undefined, digits = 1): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '–';
  return n >= 1000 ? Math.round(n).toLocaleString('en-US') : n.toFixed(n >= 100 || Number.isInteger(n) ? 0 : digits);
}

function ago(ms: number | null): string {
  if (ms === null) return '–';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 60 ? `${s}s ago` : s < 3600 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}

function unauthenticated(): void {
  $('auth').hidden = false;
  text($('conn'), 'no session');
  $('conn').classList.remove('live');
  state.live?.close();
  state.logs?.close();
}

/** The one use of the link token: exchanged for the session cookie, then gone from the page. */
async function signIn(): Promise<boolean> {
  const match = /(?:^#|&)token=([A-Za-z0-9_.-]+)/.exec(location.hash);
  if (!match) return true; // perhaps a session already: the stream will say
  history.replaceState(null, '', location.pathname);
  const res = await fetch('/dashboard/session', { method: 'POST', headers: { ...HEADERS, 'content-type': 'application/json' }, body: JSON.stringify({ token: match[1] }), credentials: 'same-origin' });
  if (res.ok) return true;
  const body = (await res.json().catch(() => ({}))) as { error?: { message?: string } };
  unauthenticated();
  text($('auth'), `${body.error?.message ?? 'the link was refused'}.`);
  return false;
}

// --- charts ---------------------------------------------------------------------------------------

function makeCharts(): void {
  const width = () => Math.max(320, Math.min(560, (document.querySelector('.charts')?.clientWidth ?? 1000) / 3 - 20));
  const axes = [{ stroke: '#8d96a0', grid: { stroke: '#8d96a033' } }, { stroke: '#8d96a0', grid: { stroke: '#8d96a033' } }];
  const opts = (series: uPlot.Series[]): uPlot.Options => ({ width: width(), height: 180, series: [{}, ...series], axes, legend: { live: false }, cursor: { drag: { x: false, y: false } } });
  const s = state.series;
  state.charts = [
    new uPlot(opts([{ label: 'wakes/s', stroke: '#8250df', width: 1.5 }, { label: 'evals/s', stroke: '#0969da', width: 1.5 }]), [s.t, s.wakes, s.evals], $('chart-rates')),
    new uPlot(opts([{ label: 'p50', stroke: '#1a7f37', width: 1.5 }, { label: 'p99', stroke: '#cf222e', width: 1.5 }]), [s.t, s.p50, s.p99] as uPlot.AlignedData, $('chart-latency')),
    new uPlot(opts([{ label: 'granted', stroke: '#0969da', width: 1.5, fill: '#0969da22' }, { label: 'capacity', stroke: '#8d96a0', dash: [4, 4] }]), [s.t, s.mem, s.cap], $('chart-memory')),
  ];
}

function push(sample: Sample): void {
  const s = state.series;
  s.t.push(sample.t / 1000);
  s.wakes.push(sample.wakesPerSec);
  s.evals.push(sample.evalsPerSec);
  s.p50.push(sample.p50);
  s.p99.push(sample.p99);
  s.mem.push(sample.memory.grantedMB);
  s.cap.push(sample.memory.capacityMB);
  if (s.t.length > WINDOW) for (const k of Object.keys(s) as (keyof typeof s)[]) s[k].shift();
}

function redraw(): void {
  const s = state.series;
  state.charts[0]?.setData([s.t, s.wakes, s.evals]);
  state.charts[1]?.setData([s.t, s.p50, s.p99] as uPlot.AlignedData);
  state.charts[2]?.setData([s.t, s.mem, s.cap]);
}

// --- figures --------------------------------------------------------------------------------------

function showSample(sample: Sample, errors: Record<string, number>): void {
  text($('awake'), fmt(sample.awake));
  text($('active'), `${sample.active} running an eval, ${sample.queued} queued`);
  text($('sleeping'), `${sample.nodesExact ? '' : '≈'}${fmt(Math.max(0, sample.nodes - sample.awake))}`);
  text($('total'), `${sample.nodesExact ? '' : '≈'}${fmt(sample.nodes)} nodes in all`);
  text($('wakes'), fmt(sample.wakesPerSec));
  text($('evals'), fmt(sample.evalsPerSec));
  text($('latency'), `${fmt(sample.p50, 2)} / ${fmt(sample.p99, 2)}`);
  text($('memory'), `${fmt(sample.memory.grantedMB)} / ${fmt(sample.memory.capacityMB)} MB`);
  $('memory-bar').style.width = `${Math.min(100, (100 * sample.memory.grantedMB) / Math.max(1, sample.memory.capacityMB))}%`;
  text($('memory-note'), `granted to awake nodes; container RSS ${fmt(sample.memory.containerRssMB)} MB`);
  text($('pool'), `${sample.pool.blanks} blank · ${sample.pool.spares} spare`);
  const from = Object.entries(sample.pool.wakesFrom).map(([k, v]) => `${k} ${v}`).join(', ');
  text($('pool-note'), `pool target ${sample.pool.poolTarget}; wakes from: ${from || 'none yet'}`);
  const body = $('errors').querySelector('tbody')!;
  const entries = Object.entries(errors).sort((a, b) => b[1] - a[1]);
  body.replaceChildren(
    ...(entries.length ? entries : [['none', 0] as [string, number]]).map(([code, n]) => {
      const tr = document.createElement('tr');
      tr.dataset.code = code;
      for (const v of [code, String(n)]) tr.appendChild(document.createElement('td')).textContent = v;
      return tr;
    }),
  );
}

function budgetItem(b: Budget, label: string): HTMLLIElement {
  const li = document.createElement('li');
  const dims = Object.entries(b.limits).map(([k, limit]) => {
    const used = b.used[k.startsWith('max') ? k[3]!.toLowerCase() + k.slice(4) : k];
    return `${k} ${used ?? '–'} / ${limit}`;
  });
  li.append(`${label} `);
  li.appendChild(document.createElement('code')).textContent = b.principal.slice(0, 12) + '…';
  li.append(` — ${dims.join(' · ')}`);
  li.dataset.principal = b.principal;
  return li;
}

function showBudgets(tree: { root: Budget; principals: Budget[] }): void {
  const root = budgetItem(tree.root, 'operator (capacity)');
  const kids = document.createElement('ul');
  for (const p of tree.principals) kids.appendChild(budgetItem(p, 'principal'));
  if (tree.principals.length === 0) kids.appendChild(document.createElement('li')).textContent = 'no budgets granted (keynode grant)';
  root.appendChild(kids);
  $('budgets').replaceChildren(root);
}

// --- the node table -------------------------------------------------------------------------------

function cell(tr: HTMLTableRowElement, value: string, cls?: string): void {
  const td = tr.appendChild(document.createElement('td'));
  td.textContent = value;
  if (cls) td.className = cls;
}

function compare(a: Row, b: Row, key: keyof Row): number {
  const x = key === 'budget' ? a.budget.maxNodes : a[key];
  const y = key === 'budget' ? b.budget.maxNodes : b[key];
  if (x === y) return a.id < b.id ? -1 : 1;
  if (x === null) return 1;
  if (y === null) return -1;
  return x < y ? -1 : 1;
}

function renderRows(): void {
  const f = state.filter.toLowerCase();
  const rows = state.rows.filter((r) => !f || r.id.includes(f) || r.parent.includes(f) || r.status.includes(f) || r.lifetime.includes(f) || String(r.pid ?? '').includes(f));
  rows.sort((a, b) => state.sort.dir * compare(a, b, state.sort.key));
  const body = $('nodes').querySelector('tbody')!;
  body.replaceChildren(
    ...rows.map((r) => {
      const tr = document.createElement('tr');
      tr.dataset.id = r.id;
      if (r.id === state.selected) tr.className = 'selected';
      cell(tr, r.id, 'id');
      cell(tr, r.status);
      cell(tr, r.pid === null ? '–' : String(r.pid));
      cell(tr, r.memoryMB === null ? '–' : `${r.memoryMB} MB`);
      cell(tr, ago(r.lastActivity));
      cell(tr, r.lifetime);
      cell(tr, r.parent.slice(0, 12) + '…', 'parent');
      cell(tr, `${r.budget.maxNodes} nodes · ${r.budget.maxAwake} awake · ${r.budget.memoryMB} MB`);
      return tr;
    }),
  );
  text($('nodes-note'), `${rows.length} shown${state.more ? ' (the first of many: search by ID prefix for others)' : ''}`);
  for (const th of $('nodes').querySelectorAll<HTMLTableCellElement>('th')) th.className = th.dataset.key === state.sort.key ? (state.sort.dir > 0 ? 'asc' : 'desc') : '';
}

// --- a node's detail ------------------------------------------------------------------------------

async function api(path: string, init?: RequestInit): Promise<Response> {
  const res = await fetch(path, { credentials: 'same-origin', ...init });
  if (res.status === 401) unauthenticated();
  return res;
}

async function select(id: string): Promise<void> {
  state.selected = id;
  renderRows();
  state.logs?.close();
  const res = await api(`/dashboard/api/nodes/${id}`);
  if (!res.ok) {
    text($('detail-info'), `${res.status}: ${((await res.json().catch(() => ({}))) as { error?: { message?: string } }).error?.message ?? ''}`);
    return;
  }
  const d = (await res.json()) as { node: unknown; children: string[]; moreChildren: boolean; budget: Budget };
  $('detail').hidden = false;
  text($('detail-id'), id);
  text($('detail-info'), JSON.stringify(d.node, null, 2));
  text($('detail-budget'), Object.entries(d.budget.limits).map(([k, v]) => `${k}: ${d.budget.used[k.startsWith('max') ? k[3]!.toLowerCase() + k.slice(4) : k] ?? '–'} of ${v}`).join('\n'));
  $('detail-children').replaceChildren(
    ...(d.children.length ? d.children : ['none']).map((c) => {
      const li = document.createElement('li');
      li.textContent = c;
      if (c !== 'none') li.onclick = () => void select(c);
      return li;
    }),
  );
  const log = $('log');
  log.textContent = '';
  text($('log-state'), 'following…');
  const es = new EventSource(`/dashboard/api/nodes/${id}/logs`);
  state.logs = es;
  es.addEventListener('lines', (e) => {
    const lines = JSON.parse((e as MessageEvent<string>).data) as { ts: number; line: string }[];
    log.append(lines.map((l) => `${new Date(l.ts).toISOString()} ${l.line}\n`).join(''));
    log.scrollTop = log.scrollHeight;
  });
  es.addEventListener('gone', () => {
    text($('log-state'), 'the node is gone');
    es.close();
  });
  es.onerror = () => text($('log-state'), 'reconnecting…');
  es.onopen = () => text($('log-state'), 'following');
}

async function destroySelected(): Promise<void> {
  const id = state.selected;
  if (!id || !confirm(`Destroy node ${id}?\n\nIts process ends, its state is deleted and its Linked children go with it. This cannot be undone.`)) return;
  const res = await api(`/dashboard/api/nodes/${id}/destroy`, { method: 'POST', headers: { ...HEADERS, 'x-keynode-confirm': id } });
  const body = (await res.json().catch(() => ({}))) as { error?: { code?: string; message?: string } };
  if (!res.ok) {
    alert(`Not destroyed: ${body.error?.code ?? res.status} ${body.error?.message ?? ''}`);
    return;
  }
  state.logs?.close();
  text($('log-state'), 'destroyed');
  state.rows = state.rows.filter((r) => r.id !== id);
  state.selected = '';
  $('detail').hidden = true;
  renderRows();
}

// --- the live stream ------------------------------------------------------------------------------

function follow(): void {
  state.live?.close();
  const q = /^[a-z2-7]{1,52}$/.test(state.filter) ? state.filter : '';
  const es = new EventSource(`/dashboard/api/live${q ? `?q=${q}` : ''}`);
  state.live = es;
  es.addEventListener('hello', (e) => {
    const hello = JSON.parse((e as MessageEvent<string>).data) as { containerId: string; url: string; history: Sample[]; errors: Record<string, number> };
    text($('container'), `${hello.url} · ${hello.containerId}`);
    $('auth').hidden = true;
    if (state.series.t.length === 0) for (const s of hello.history) push(s);
    redraw();
  });
  es.addEventListener('stats', (e) => {
    const { sample, errors } = JSON.parse((e as MessageEvent<string>).data) as { sample: Sample; errors: Record<string, number> };
    showSample(sample, errors);
    push(sample);
    redraw();
  });
  es.addEventListener('nodes', (e) => {
    const { rows, more } = JSON.parse((e as MessageEvent<string>).data) as { rows: Row[]; more: boolean };
    state.rows = rows;
    state.more = more;
    renderRows();
  });
  es.addEventListener('budgets', (e) => showBudgets(JSON.parse((e as MessageEvent<string>).data)));
  es.onopen = () => {
    text($('conn'), 'live');
    $('conn').classList.add('live');
  };
  es.onerror = async () => {
    $('conn').classList.remove('live');
    text($('conn'), 'reconnecting…');
    // EventSource retries by itself, but not past a 401: ask once whether the session is still there.
    const probe = await fetch('/dashboard/api/budgets', { credentials: 'same-origin' }).catch(() => undefined);
    if (probe?.status === 401) unauthenticated();
  };
}

async function main(): Promise<void> {
  if (!(await signIn())) return;
  makeCharts();
  $('nodes').querySelector('thead')!.addEventListener('click', (e) => {
    const key = (e.target as HTMLElement).dataset.key as keyof Row | undefined;
    if (!key) return;
    state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
    renderRows();
  });
  $('nodes').querySelector('tbody')!.addEventListener('click', (e) => {
    const id = ((e.target as HTMLElement).closest('tr') as HTMLTableRowElement | null)?.dataset.id;
    if (id) void select(id);
  });
  let refollow: number | undefined;
  $<HTMLInputElement>('search').addEventListener('input', (e) => {
    state.filter = (e.target as HTMLInputElement).value.trim();
    renderRows();
    // An ID prefix also asks the container for the nodes it matches (the table holds the first few hundred).
    clearTimeout(refollow);
    refollow = window.setTimeout(follow, 300);
  });
  $('destroy').addEventListener('click', () => void destroySelected());
  $('logout').addEventListener('click', async () => {
    await fetch('/dashboard/api/logout', { method: 'POST', headers: HEADERS, credentials: 'same-origin' });
    unauthenticated();
  });
  follow();
}

void main();
