"""Jinja templates of the report pages (index, one page per table, profile). Self-contained HTML with
relative links only, so the report works from the file system and from any static host."""

BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} — road-repro ({{ profile }})</title>
<link rel="icon" href="data:,">
<style>
 body { font-family: system-ui, sans-serif; max-width: 1150px; margin: 1.5em auto; padding: 0 1em; color: #222; }
 table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
 th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
 th { background: #f3f3f3; }
 nav { font-size: 0.9em; margin-bottom: 1em; } nav a { margin-right: 1em; }
 .banner { background: #fff3cd; border: 1px solid #e0b000; padding: 0.7em 1em; font-weight: 600; }
 .prov { font-size: 0.85em; color: #555; }
 .floor { background: #f8d7da; border: 1px solid #c0392b; padding: 0.7em 1em; }
 .floor-ok { color: #1e7b34; }
 .holds { color: #1e7b34; font-weight: 600; } .reversed { color: #b02a2a; font-weight: 600; }
 .inconclusive, .too-few-seeds { color: #8a6d00; font-weight: 600; }
 .holds, .reversed, .inconclusive, .too-few-seeds { white-space: nowrap; }
 .not-run { color: #777; }
 .conflict { color: #b05a00; font-weight: 600; }
 details.floor summary { cursor: pointer; }
 img { max-width: 100%; border: 1px solid #ddd; }
</style></head><body>
<nav><a href="index.html">All tables</a><a href="profile.html">Profile ({{ profile }})</a></nav>
{% if banner %}<p class="banner">{{ banner }}</p>{% endif %}
{{ body | safe }}
</body></html>
"""

INDEX = """<h1>ROaD reproduction report — <code>{{ profile }}</code> scale</h1>
<p>Every table of the paper and of the ROaD-Base blog: its status at this scale, the compute it used and how
many of its claims hold. Each table page puts the printed numbers beside ours (mean ± sample standard deviation
over n seeds) and gives a verdict on each claim.{% if smoke %} <b>At the smoke scale the verdicts are pipeline
checks of the statistics on tiny models, not evidence about the paper.</b>{% endif %}</p>
{% if checked %}{% if misses %}<details class="floor"><summary><strong>⚠ Learning-floor check: {{ misses | length }} row(s) did not
learn</strong> (accuracy must exceed chance + 25 points; span QA F1 the all-no-answer F1 + 15 and answerable F1 50);
click for the rows</summary>
<ul>{% for m in misses %}<li>{{ m.message() }}</li>{% endfor %}</ul></details>
{% else %}<p class="floor-ok">✓ Learning-floor check: every row of every table clears its floor (accuracy above
chance + 25 points; span QA F1 above the all-no-answer F1 + 15 and answerable F1 above 50).</p>{% endif %}{% endif %}
<table><tr><th>table</th><th>title</th><th>status</th><th>seeds</th><th>compute</th><th>git</th>
<th>claims: holds / reversed / inconclusive / too few seeds</th></tr>
{% for t in tables %}<tr><td>{% if t.page %}<a href="{{ t.page }}">{{ t.table }}</a>{% else %}{{ t.table }}{% endif %}</td>
<td>{{ t.title }}</td><td class="{{ t.status | replace(' ', '-') }}">{{ t.status }}</td><td>{{ t.seeds }}</td><td>{{ t.compute }}</td><td>{{ t.git }}</td>
<td>{% if t.counts %}{{ t.counts.holds }} / {{ t.counts.reversed }} / {{ t.counts.inconclusive }} / {{ t.counts.too_few }}{% else %}–{% endif %}</td></tr>
{% endfor %}</table>
{% if drift %}<h2>Every reproduced number against the paper's</h2>
<p>Difference (ours − paper) per row and metric, all tables; drift shows at a glance.</p>
<p><img alt="difference to the paper, every table" src="data:image/png;base64,{{ drift }}"></p>{% endif %}
<h2>How to read a verdict</h2><p>{{ rule }}</p>
"""

TABLE = """<h1>{{ t.table }} — {{ t.title }}</h1>
{% if t.misses %}<div class="floor"><strong>⚠ Below the learning floor:</strong><ul>{% for m in t.misses %}<li>{{ m.message() }}</li>{% endfor %}</ul></div>{% endif %}
<h2>The printed table beside ours</h2>
{{ t.wide | safe }}
<h2>Claims{% if smoke %} (pipeline check: tiny models on synthetic data){% endif %}</h2>
{% for note in t.notes %}<p class="prov"><b>Note:</b> {{ note }}</p>{% endfor %}
{% if t.claims %}<table><tr><th>claim</th><th>task, metric</th><th>paper difference</th><th>test</th><th>n (A / B)</th>
<th>ours: mean difference [interval]</th><th>statistic</th><th>ε<sub>min</sub> (A&gt;B / B&gt;A)</th><th>margin</th>
<th>verdict</th><th>what would change it</th><th>seeds needed</th></tr>
{% for c in t.claims %}<tr><td>{{ c.claim }}{% if c.conflict %}<br><span class="conflict">⚑ {{ c.conflict }}</span>{% endif %}
<br><span class="prov">A = {{ c.better }}; B = {{ c.worse }}{% if c.worse_paper_model %} ({{ c.worse_paper_model }}){% endif %}</span></td>
<td>{{ c.dataset }} {{ c.metric }}</td><td>{{ c.paper_diff }}</td><td>{{ c.test }}</td><td>{{ c.n_better }} / {{ c.n_worse }}</td>
<td>{{ c.ours }}</td><td>{{ c.stat }}</td><td>{{ c.eps }}</td>
<td>{{ c.margin }}{% if c.margin_source %}<br><span class="prov">{{ c.margin_source }}</span>{% endif %}</td>
<td class="{{ c.css }}">{{ c.verdict }}</td><td class="prov">{{ c.change }}</td><td>{{ c.seeds_needed }}</td></tr>
{% endfor %}</table><p class="prov">{{ rule }}</p>{% else %}<p>No claims.</p>{% endif %}
<h2>Per seed</h2>
<p><img alt="{{ t.table }} plot" src="data:image/png;base64,{{ t.png }}"></p>
{% if t.curves %}<h2 id="curves">Training curves</h2>
<p>The training loss of each row's runs (one line per seed; <code>train_log.csv</code> in each run folder).</p>
<p><img alt="{{ t.table }} training curves" src="data:image/png;base64,{{ t.curves }}"></p>{% endif %}
<details><summary>Full summary (all metrics, paper and difference)</summary>{{ t.summary | safe }}</details>
<details><summary>Which run produced each number</summary>{{ t.runs | safe }}</details>
<p class="prov"><b>Settings:</b> {{ t.settings }}</p>
<p class="prov">Seeds: {{ t.seeds }}{% for task, value in t.baseline.items() %} · all-no-answer baseline F1 on {{ task }}: {{ '%.2f' % value }}{% endfor %}
 · data: {{ t.data }} · git {{ t.prov.git }} · torch {{ t.prov.torch }} · transformers {{ t.prov.transformers }}
 · device {{ t.prov.device }} · {{ t.seconds }} s · finished {{ t.finished }}</p>
<p class="prov">Files: <a href="../{{ t.name }}.csv">{{ t.name }}.csv</a> (per seed) ·
<a href="../{{ t.name }}_summary.csv">{{ t.name }}_summary.csv</a> · <a href="../{{ t.name }}_claims.csv">{{ t.name }}_claims.csv</a>
{% if t.notebook %} · <a href="{{ t.notebook }}">executed notebook</a>{% endif %}</p>
"""

PROFILE = """<h1>Profile <code>{{ profile }}</code></h1><p>{{ description }}</p><pre>{{ yaml }}</pre>"""
