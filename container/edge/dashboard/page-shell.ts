/**
 * @module container/edge/dashboard/page-shell
 * The dashboard's HTML and styles: a static shell with no data in it (anyone may fetch it; every figure
 * comes from the API behind the session). The behaviour is page/app.ts, compiled for the browser.
 */

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>keynode</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/dashboard/uplot.css">
<link rel="stylesheet" href="/dashboard/style.css">
</head>
<body>
<header>
  <h1>keynode</h1>
  <span id="container" data-testid="container"></span>
  <span id="conn" class="conn" data-testid="connection">connecting…</span>
  <button id="logout" type="button">Sign out</button>
</header>
<main>
  <p id="auth" class="auth" hidden data-testid="auth">This page needs a session: run <code>keynode dashboard</code> and open the link it prints.</p>
  <section class="cards">
    <div class="card"><h2>awake</h2><b data-testid="awake" id="awake">–</b><small id="active"></small></div>
    <div class="card"><h2>sleeping</h2><b data-testid="sleeping" id="sleeping">–</b><small id="total"></small></div>
    <div class="card"><h2>wakes/s</h2><b data-testid="wakes" id="wakes">–</b></div>
    <div class="card"><h2>evals/s</h2><b data-testid="evals" id="evals">–</b><small>signed evals over HTTP</small></div>
    <div class="card"><h2>eval latency</h2><b data-testid="latency" id="latency">–</b><small>p50 / p99, ms, last second</small></div>
    <div class="card"><h2>memory</h2><b data-testid="memory" id="memory">–</b><div class="bar"><i id="memory-bar"></i></div><small id="memory-note"></small></div>
    <div class="card"><h2>worker pool</h2><b data-testid="pool" id="pool">–</b><small id="pool-note"></small></div>
  </section>
  <section class="charts">
    <div><h2>wakes and evals per second</h2><div id="chart-rates"></div></div>
    <div><h2>eval latency (ms)</h2><div id="chart-latency"></div></div>
    <div><h2>memory granted (MB)</h2><div id="chart-memory"></div></div>
  </section>
  <section class="split">
    <div>
      <h2>errors by code <small>since the container started</small></h2>
      <table id="errors" data-testid="errors"><thead><tr><th>code</th><th>count</th></tr></thead><tbody></tbody></table>
    </div>
    <div>
      <h2>budgets</h2>
      <ul id="budgets" class="tree" data-testid="budgets"></ul>
    </div>
  </section>
  <section>
    <h2>nodes <small id="nodes-note"></small></h2>
    <input id="search" type="search" placeholder="search: ID prefix, status, lifetime, parent…" autocomplete="off" data-testid="search">
    <table id="nodes" class="nodes" data-testid="nodes">
      <thead><tr>
        <th data-key="id">ID</th><th data-key="status">status</th><th data-key="pid">pid</th><th data-key="memoryMB">memory</th>
        <th data-key="lastActivity">last activity</th><th data-key="lifetime">lifetime</th><th data-key="parent">parent</th><th data-key="budget">budget</th>
      </tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section id="detail" class="detail" hidden data-testid="detail">
    <h2>node <code id="detail-id"></code></h2>
    <button id="destroy" type="button" class="danger" data-testid="destroy">Destroy…</button>
    <div class="split">
      <div><h3>description</h3><pre id="detail-info"></pre></div>
      <div>
        <h3>budget use</h3><pre id="detail-budget"></pre>
        <h3>children</h3><ul id="detail-children"></ul>
      </div>
    </div>
    <h3>log <small id="log-state"></small></h3>
    <pre id="log" class="log" data-testid="log"></pre>
  </section>
</main>
<script src="/dashboard/uplot.js"></script>
<script src="/dashboard/app.js"></script>
</body>
</html>
`;

export const PAGE_CSS = `
:root { color-scheme: light dark; --fg: #1b1f24; --muted: #6a737d; --bg: #fff; --card: #f6f8fa; --line: #d0d7de; --accent: #0969da; --bad: #cf222e; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --muted: #8d96a0; --bg: #0d1117; --card: #161b22; --line: #30363d; --accent: #4493f8; --bad: #f85149; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; gap: 1em; align-items: baseline; padding: .6em 1.2em; border-bottom: 1px solid var(--line); }
header h1 { font-size: 1.2em; margin: 0; }
#container { color: var(--muted); font-family: ui-monospace, monospace; font-size: .85em; }
.conn { margin-left: auto; color: var(--muted); }
.conn.live { color: #1a7f37; }
main { padding: 1em 1.2em; }
h2 { font-size: 1em; margin: 1em 0 .4em; }
h2 small, h3 small { color: var(--muted); font-weight: normal; }
.auth { padding: 1em; border: 1px solid var(--bad); color: var(--bad); }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: .6em; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: .5em .8em; }
.card h2 { margin: 0; font-size: .8em; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.card b { display: block; font-size: 1.6em; font-variant-numeric: tabular-nums; }
.card small { color: var(--muted); }
.bar { height: 6px; background: var(--line); border-radius: 3px; overflow: hidden; }
.bar i { display: block; height: 100%; width: 0; background: var(--accent); }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: 1em; }
.split { display: grid; grid-template-columns: 1fr 1fr; gap: 1.5em; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: .25em .6em; border-bottom: 1px solid var(--line); white-space: nowrap; }
.nodes th { cursor: pointer; user-select: none; }
.nodes th.asc::after { content: ' ▲'; } .nodes th.desc::after { content: ' ▼'; }
.nodes tbody tr { cursor: pointer; }
.nodes tbody tr:hover, .nodes tbody tr.selected { background: var(--card); }
td.id, td.parent { font-family: ui-monospace, monospace; font-size: .85em; }
#search { width: 100%; padding: .4em .6em; margin-bottom: .4em; font: inherit; }
.tree { list-style: none; padding-left: 0; } .tree ul { list-style: none; padding-left: 1.2em; }
.tree code { font-size: .85em; }
.detail { border-top: 2px solid var(--accent); margin-top: 1.5em; }
pre { background: var(--card); padding: .6em; overflow: auto; max-height: 24em; font-size: .85em; }
.log { max-height: 18em; }
button { font: inherit; padding: .3em .8em; }
.danger { color: #fff; background: var(--bad); border: 0; border-radius: 4px; }
`;
