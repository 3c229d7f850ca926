"""The `/admin` web view's HTML: plain server-rendered pages, one inline SVG chart, a few
lines of JavaScript (auto-submit filters, clickable rows, auto-refresh). No build step.

Everything that comes from the log or the policies file is escaped (`_e`): block-log
records carry guard reasoning that quotes user text, which must never become markup.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from gateway.blocklog.reader import DECISIONS, FAIL_OPEN, kind

PALETTE = ("#d62728", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd")
SINCE_CHOICES = (("", "any time"), ("1h", "last hour"), ("24h", "last 24 h"), ("7d", "last 7 days"), ("30d", "last 30 days"))

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#f6f7f9}
header{background:#1d2733;color:#fff;padding:10px 20px;display:flex;gap:16px;align-items:center}
header a{color:#cfe3ff}header h1{font-size:17px;margin:0;flex:1}
main{padding:16px 20px;max-width:1400px}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:12px 16px;margin-bottom:16px}
h2{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eee;vertical-align:top}
th{font-weight:600;background:#fafbfc}tr[data-href]{cursor:pointer}tr[data-href]:hover{background:#eef4ff}
.b{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;font-weight:600;color:#fff}
.block{background:#c62828}.error{background:#8e24aa}.rewrite{background:#ef8f00}.flag{background:#0288d1}
.fail_open{background:#b58900}.allow{background:#2e7d32}
form#filters{display:flex;flex-wrap:wrap;gap:8px;align-items:end}form#filters label{display:flex;flex-direction:column;font-size:12px;color:#555}
input,select,button{font:inherit;padding:3px 6px}
pre{white-space:pre-wrap;background:#f4f4f4;padding:10px;border-radius:4px;max-height:480px;overflow:auto}
.err{color:#b00020;font-weight:600}.muted{color:#777}.legend span{margin-right:12px;white-space:nowrap}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
.mono{font-family:ui-monospace,monospace;font-size:12px}
"""

SCRIPT = """
document.querySelectorAll('#filters select').forEach(function(s){s.addEventListener('change',function(){s.form.submit();});});
document.querySelectorAll('tr[data-href]').forEach(function(tr){tr.addEventListener('click',function(e){
  if(e.target.tagName!=='A'){window.location.href=tr.dataset.href;}});});
var auto=document.getElementById('autorefresh');
if(auto){auto.checked=sessionStorage.getItem('rsafe-auto')==='1';
  auto.addEventListener('change',function(){sessionStorage.setItem('rsafe-auto',auto.checked?'1':'0');});
  setInterval(function(){if(auto.checked){window.location.reload();}},10000);}
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _score(score: Any) -> str:
    return "" if not isinstance(score, (int, float)) else f"{score:.3f}"


def badge(k: str) -> str:
    return f'<span class="b {_e(k)}">{_e(k)}</span>'


def page(title: str, body: str, nonce: str, nav: bool = True) -> str:
    links = '<a href="/admin">Decisions</a><a href="/admin/logout">Log out</a>' if nav else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)} · RSafe Gateway</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head>'
            f'<body><header><h1>RSafe Gateway · {_e(title)}</h1>{links}</header><main>{body}</main>'
            f'<script nonce="{_e(nonce)}">{SCRIPT}</script></body></html>')


def login_page(error: str | None, nonce: str) -> str:
    msg = f'<p class="err">{_e(error)}</p>' if error else ""
    body = (f'<section style="max-width:420px"><h2>Admin key required</h2>{msg}'
            '<form method="post" action="/admin/login"><p><input type="password" name="key" id="key" '
            'placeholder="admin key" autocomplete="current-password" autofocus required style="width:100%"></p>'
            '<button type="submit">Sign in</button></form>'
            '<p class="muted">Or send the key as an <code>x-admin-key</code> header.</p></section>')
    return page("sign in", body, nonce, nav=False)


def filters_form(q: dict[str, str], policy_ids: list[str]) -> str:
    def select(name: str, options: list[tuple[str, str]]) -> str:
        opts = "".join(f'<option value="{_e(v)}"{" selected" if q.get(name, "") == v else ""}>{_e(t)}</option>'
                       for v, t in options)
        return f'<label>{name}<select name="{name}" id="f-{name}">{opts}</select></label>'

    def text(name: str, placeholder: str) -> str:
        return (f'<label>{name}<input name="{name}" id="f-{name}" value="{_e(q.get(name, ""))}" '
                f'placeholder="{_e(placeholder)}" size="14"></label>')

    return (
        '<form id="filters" method="get" action="/admin">'
        + select("policy", [("", "all policies")] + [(p, p) for p in policy_ids])
        + select("decision", [("", "all decisions")] + [(d, d) for d in (*DECISIONS, FAIL_OPEN) if d != "allow"])
        + select("direction", [("", "both"), ("input", "input"), ("output", "output")])
        + select("since", list(SINCE_CHOICES))
        + text("model", "model") + text("key", "gateway key id") + text("request", "req_...")
        + '<button type="submit">Filter</button><a href="/admin">reset</a>'
        '<label style="flex-direction:row;gap:4px;align-items:center"><input type="checkbox" id="autorefresh">auto-refresh</label>'
        '</form>'
    )


def decisions_table(records: list[dict[str, Any]], q: dict[str, str], more: str | None,
                    searched_to: str | None = None) -> str:
    """`more`: the timestamp to continue from (older records exist or were not searched yet);
    `searched_to`: the scan stopped on its time budget at that timestamp."""
    rows = []
    for r in records:
        rid = r.get("request_id") or ""
        href = f"/admin/request/{quote(rid, safe='')}"
        ms = r.get("latency_ms")
        rows.append(
            f'<tr data-href="{_e(href)}" data-decision="{_e(kind(r))}"><td class="mono">{_e((r.get("ts") or "")[:19].replace("T", " "))}</td>'
            f'<td class="mono"><a href="{_e(href)}">{_e(rid)}</a></td><td>{_e(r.get("direction"))}</td>'
            f'<td>{badge(kind(r))}</td><td>{_e(", ".join(r.get("policies") or ()))}</td><td>{_e(r.get("model"))}</td>'
            f'<td>{_e(r.get("key_id"))}</td><td>{_e(r.get("decided_by") or r.get("guard"))}</td>'
            f'<td>{"" if ms is None else f"{ms:.1f}"}</td></tr>'
        )
    older = ""
    if more:
        params = {k: v for k, v in q.items() if v and k != "before"}
        params["before"] = more
        note = (f'Searched back to {_e(searched_to[:19].replace("T", " "))} UTC (time limit). ' if searched_to else "")
        older = f'<p class="muted">{note}<a id="older" href="/admin?{_e(urlencode(params))}">older →</a></p>'
    if not rows:
        return '<p class="muted" id="no-decisions">No matching decisions.</p>' + older
    return ('<table id="decisions"><thead><tr><th>time (UTC)</th><th>request</th><th>dir</th><th>decision</th>'
            '<th>policies</th><th>model</th><th>key</th><th>guard</th><th>ms</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table>" + older)


def chart_svg(blocks: dict[str, Counter], hours: int, now: datetime | None = None) -> str:
    """Stacked bars: blocks per policy per hour over the last `hours` hours."""
    now = (now or datetime.now(timezone.utc)).replace(minute=0, second=0, microsecond=0)
    slots = [(now - timedelta(hours=h)).strftime("%Y-%m-%dT%H") for h in range(hours - 1, -1, -1)]
    policies = sorted({p for c in blocks.values() for p in c})
    color = {p: PALETTE[i % len(PALETTE)] for i, p in enumerate(policies)}
    width, height, left, bottom = 900, 200, 40, 22
    plot_w, plot_h = width - left - 6, height - bottom - 8
    peak = max((sum(blocks.get(s, Counter()).values()) for s in slots), default=0) or 1
    bar = plot_w / len(slots)
    parts = [(f'<svg id="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
              f'aria-label="blocks per policy per hour" xmlns="http://www.w3.org/2000/svg">')]
    for frac in (0, 0.5, 1):
        y = 8 + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{width - 6}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e3e3"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end">{round(peak * frac)}</text>')
    for i, slot in enumerate(slots):
        x, y = left + i * bar, 8 + plot_h
        for p, n in sorted(blocks.get(slot, Counter()).items()):
            h = plot_h * n / peak
            y -= h
            parts.append(f'<rect class="bar" data-policy="{_e(p)}" x="{x + 0.5:.1f}" y="{y:.1f}" width="{max(bar - 1, 1):.1f}" '
                         f'height="{h:.1f}" fill="{color[p]}"><title>{_e(p)}: {n} blocked, {_e(slot.replace("T", " "))}:00 UTC</title></rect>')
        if i % max(1, len(slots) // 8) == 0:
            parts.append(f'<text x="{x:.1f}" y="{height - 6}" font-size="10">{_e(slot[5:].replace("T", " "))}h</text>')
    parts.append("</svg>")
    legend = "".join(f'<span><i style="background:{color[p]}"></i>{_e(p)}</span>' for p in policies)
    total = sum(sum(blocks.get(s, Counter()).values()) for s in slots)
    return "".join(parts) + f'<div class="legend">{legend or "<span class=muted>no blocks in this window</span>"}' \
                            f'<span class="muted">{total} blocks</span></div>'


def policies_panel(info: dict[str, Any]) -> str:
    err = (f'<p class="err" id="reload-error">Last reload rejected (still serving the version above): '
           f'{_e(info["last_error"])}</p>') if info.get("last_error") else ""
    rows = "".join(
        f'<tr><td>{_e(p.id)}</td><td>{_e(p.name)}</td><td>{_e(p.engine)}</td><td>{_e(p.action.value)}</td>'
        f'<td>{_e(", ".join(d.value for d in p.applies_to))}</td><td>{_e(p.failure_mode.value)}</td>'
        f'<td>{"" if p.enabled else "disabled"}</td></tr>'
        for p in info["policies"]
    )
    return (f'<p>Version <b class="mono" id="policy-version">{_e(info["version"])}</b> from <span class="mono">{_e(info["path"])}</span>, '
            f'loaded {_e(info["loaded_at"])} UTC · guard <b>{_e(info["guard"] or "none")}</b> · reloads: '
            f'{info["reloads"].get("ok", 0)} ok, {info["reloads"].get("rejected", 0)} rejected</p>{err}'
            '<table id="policies"><thead><tr><th>id</th><th>name</th><th>engine</th><th>action</th><th>applies to</th>'
            f'<th>failure mode</th><th></th></tr></thead><tbody>{rows}</tbody></table>')


def detail_body(request_id: str, records: list[dict[str, Any]]) -> str:
    if not records:
        return (f'<section><h2>{_e(request_id)}</h2><p class="muted">No record of this request in the block log '
                '(allowed requests are logged only with <code>log_allowed: true</code>).</p></section>')
    out = []
    skip = {"outcomes", "reasoning", "content", "event"}
    for r in records:
        fields = "".join(
            f'<tr><th>{_e(k)}</th><td class="mono">{_e(", ".join(map(str, v)) if isinstance(v, list) else v)}</td></tr>'
            for k, v in r.items() if k not in skip and v not in (None, "", [])
        )
        outcomes = "".join(
            f'<tr><td>{_e(o.get("policy"))}</td><td>{badge(o.get("action") or "")}</td><td>{_e(o.get("reason"))}</td>'
            f'<td>{_score(o.get("score"))}</td></tr>'
            for o in r.get("outcomes") or ()
        )
        reasoning = (f'<h2>Guard reasoning</h2><pre class="reasoning">{_e(r["reasoning"])}</pre>' if r.get("reasoning")
                     else '<p class="muted">The guard gave no reasoning for this decision.</p>')
        content = f'<h2>Content</h2><pre>{_e(r["content"])}</pre>' if r.get("content") is not None else ""
        out.append(
            f'<section class="record"><h2>{badge(kind(r))} {_e(r.get("direction"))} · {_e((r.get("ts") or "").replace("T", " "))}</h2>'
            + (f'<table class="outcomes"><thead><tr><th>policy</th><th>action</th><th>reason</th><th>score</th></tr></thead>'
               f'<tbody>{outcomes}</tbody></table>' if outcomes else "")
            + reasoning + content + f'<details><summary>all fields</summary><table>{fields}</table></details></section>'
        )
    return f'<p><a href="/admin">← decisions</a></p><h2 class="mono">{_e(request_id)}</h2>' + "".join(out)
