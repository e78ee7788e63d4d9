"""The HTML report: every table of the paper and the blog at a scale, paper vs reproduced, with seeds,
spread, claim verdicts and provenance.

``results/<profile>/report/`` is rebuilt from the tables' CSV/JSON files, so it always shows what is on
disk: ``index.html`` (all 12 tables: status, compute, claim counts; for mini/paper a plot of every number's
difference to the paper), ``<table>.html`` per computed table, ``profile.html``, and the executed notebooks
as HTML. Links are relative (file system or static host). Smoke-scale pages carry a banner saying they
are a pipeline check, not a reproduction.
"""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path

import pandas as pd
from jinja2 import Environment, select_autoescape

from road_repro.config import ABLATIONS_DIR, load_table_spec
from road_repro.io import atomic_write_text
from road_repro.report.plots import plot_curves, plot_drift
from road_repro.report.floors import FLOOR_PROFILES, FloorMiss, check_table_files
from road_repro.report.summary import wide_view
from road_repro.report.templates import BASE, INDEX, PROFILE, TABLE
from road_repro.report.verdicts import rule_text

def settings_line(profile: dict) -> str:
    """The method settings a reader needs to judge a table's numbers (KD, the T² factor, MTL draws, ...)."""
    d, m, f = profile.get("distill", {}), profile.get("mtl", {}), profile.get("features", {})
    t2 = d.get("t2_scale")
    return (f"KD T = {d.get('temperature')}, λ = {d.get('lam')}, Weighted KD W = {d.get('w')}, "
            f"{d.get('n_teachers')} teachers; KL term {'× T² (t2_scale: true)' if t2 else 'not × T² (t2_scale: false)'}"
            f" · KD during MTL T = {m.get('kd_temperature')}, λ = {m.get('kd_lam')} (same T² setting)"
            f" · MTL pass-step {m.get('pass_step')}, draws {m.get('draws', 'with_replacement')}"
            f" · SQuAD answer selection: {f.get('answer_selection', 'reference')}")


def table_metas(folder: Path) -> list[dict]:
    """The ``<table>.json`` files ``run_table`` wrote in ``folder`` (not the plan or other JSON)."""
    metas = []
    for path in sorted(folder.glob("*.json")):
        meta = json.loads(path.read_text())
        if isinstance(meta, dict) and {"table", "name", "evaluate"} <= set(meta):
            metas.append(meta)
    return metas


def _status(meta: dict, frame: pd.DataFrame) -> str:
    """complete: a finite value for every run row x task x metric of the spec; partial otherwise."""
    spec = load_table_spec(meta["name"])
    for i, row in enumerate(spec.rows, start=1):
        if row.recipe == "published":
            continue
        for task, metrics in spec.evaluate.items():
            for metric in metrics:
                values = frame[(frame["row"] == i) & (frame["dataset"] == task) & (frame["metric"] == metric)]["value"]
                if values.empty or not values.notna().all():
                    return "partial"
    return "complete"


def _compute(meta: dict) -> str:
    prov, seconds = meta["provenance"], float(meta.get("seconds") or 0)
    text = f"{seconds / 60:.1f} min on {prov.get('device', '?')}"
    if prov.get("cuda") not in (None, "None"):
        gpus = int(meta.get("world_size") or 1)
        text += f", {seconds / 3600 * gpus:.2f} GPU-hours ({gpus} GPU{'s' if gpus > 1 else ''})"
    return text


def margin_cell(kind: str | None, margin: float | None) -> str:
    """The page's margin column as the claim's rule uses it (road_repro/report/verdicts.py, docs/verdicts.md):
    'about equal' is two-sided (the interval within (-d, d)), 'not worse' one-sided (its lower end above -d),
    'beats' has none (the interval above 0)."""
    if kind == "not_worse" and pd.notna(margin):
        return f"−{margin:g} (one-sided: interval's lower end above it)"
    if pd.notna(margin) and kind != "greater":
        return f"±{margin:g} (two-sided: interval within it)"
    return "0 (beats: interval above 0)"


def _claims(folder: Path, name: str) -> list[dict]:
    """The table's claims as the page shows them: the test, n per row, statistic and p, eps_min, margin."""
    path = folder / f"{name}_claims.csv"
    if not path.is_file():
        return []
    out = []
    for c in pd.read_csv(path, keep_default_na=False, na_values=[""]).to_dict("records"):
        has = pd.notna(c.get("ci_low"))
        c["ours"] = (f"{c['mean_diff']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}] ({100 * c['ci_level']:.4g}%)"
                     if has else f"{c['mean_diff']:+.2f}" if pd.notna(c.get("mean_diff")) else "–")
        c["eps"] = f"{c['eps_min']:.2f} / {c['eps_min_reverse']:.2f}" if has and pd.notna(c["eps_min"]) else "–"
        c["stat"] = (f"t = {c['statistic']:.2f}, df = {c['df']:.1f}, p = {c['p_value']:.3g}"
                     if has and pd.notna(c.get("statistic")) else "–")
        c["margin"] = margin_cell(c.get("kind"), c.get("margin"))
        c["paper_diff"] = f"{c['paper_diff']:+.2f}" if pd.notna(c["paper_diff"]) else "–"
        c["seeds_needed"] = int(c["seeds_needed"]) if pd.notna(c.get("seeds_needed")) else "–"
        for key in ("test", "change", "conflict", "margin_source", "worse_paper_model"):
            c[key] = c[key] if isinstance(c.get(key), str) else ""
        c["css"] = str(c["verdict"]).replace(" ", "-")
        out.append(c)
    return out


def table_notes(spec, profile: dict) -> list[str]:
    """What the page says about how the table was run: the spec's notes and, where a row runs MTL, how many
    MTL runs each arm has (the verdicts cover MTL variance only with several)."""
    notes = list(spec.notes)
    if any(row.mtl or (row.teacher and row.teacher.mtl) for row in spec.rows):
        mtl = profile.get("mtl") or {}
        runs = mtl.get("seeds") or []
        notes.append(f"MTL: {len(runs)} MTL runs per arm (mtl.seeds = {runs}); finetuning seed i starts from MTL "
                     "run i mod k, so MTL variance enters the verdicts." if len(runs) > 1 else
                     f"MTL: each arm's MTL stage is one run (mtl.seed = {mtl.get('seed', 1)}), shared by all its "
                     "finetuning seeds, so the verdicts cover finetuning noise only, not MTL variance (mtl.seeds "
                     "runs several).")
    return notes


def _runs_table(frame: pd.DataFrame, report_dir: Path) -> str:
    """Per seed: the run that produced each number, linked to its config where the runs folder is beside."""
    rows = []
    for r in frame.sort_values(["row", "dataset", "metric", "seed"]).to_dict("records"):
        config = report_dir.parent.parent / "runs" / r["run_id"] / "config.json"
        run = (f'<a href="../../runs/{escape(r["run_id"])}/config.json">{escape(r["run_id"])}</a>'
               if config.is_file() else escape(r["run_id"]))
        seed = "" if pd.isna(r["seed"]) else int(r["seed"])
        rows.append(f"<tr><td>{escape(str(r['method']))}</td><td>{seed}</td><td>{escape(r['dataset'])} "
                    f"{escape(r['metric'])}</td><td>{r['value']:.2f}</td><td>{run}</td></tr>")
    return "<table><tr><th>row</th><th>seed</th><th>task, metric</th><th>value</th><th>run</th></tr>" + "".join(rows) + "</table>"


def _notebook(folder: Path, name: str, report_dir: Path) -> str | None:
    """The executed notebook as HTML (nbconvert) beside the report, if the notebook was run.

    Converted again only when the notebook changed since its page was written (a conversion takes seconds,
    and every table's notebook rebuilds the whole report)."""
    source = folder / "notebooks" / f"{name}.ipynb"
    if not source.is_file():
        return None
    target = report_dir / "notebooks" / f"{name}.html"
    if target.is_file() and target.stat().st_mtime_ns > source.stat().st_mtime_ns:
        return f"notebooks/{name}.html"
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    # nbconvert's "lab" template without the require.js / MathJax scripts it loads from a CDN (the report
    # must work offline and from a static host) and with an inline icon (no /favicon.ico request).
    template = ("{%- extends 'lab/index.html.j2' -%}{%- block html_head_js -%}<link rel=\"icon\" href=\"data:,\">"
                "{%- endblock html_head_js -%}{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}")
    exporter = HTMLExporter(extra_loaders=[DictLoader({"road_notebook.html.j2": template})],
                            template_file="road_notebook.html.j2")
    body, _ = exporter.from_filename(str(source))
    atomic_write_text(target, body)
    return f"notebooks/{name}.html"


def _curves(frame: pd.DataFrame, report_dir: Path, table: str) -> str | None:
    """The table's training curves (:func:`road_repro.report.plots.plot_curves`) as base64 PNG, if any run trained."""
    png = plot_curves(frame, report_dir.parent.parent / "runs", table)
    return base64.b64encode(png).decode() if png else None


def _table_context(folder: Path, meta: dict, report_dir: Path) -> dict:
    name = meta["name"]
    summary = pd.read_csv(folder / f"{name}_summary.csv")
    frame = pd.read_csv(folder / f"{name}.csv")
    png = base64.b64encode((folder / f"{name}.png").read_bytes()).decode()
    tasks = meta["profile"].get("tasks", {})
    misses = check_table_files(meta, summary)
    wide = wide_view(summary, meta["evaluate"])
    if misses or meta["profile"].get("name") in FLOOR_PROFILES:
        below: dict[int, list[str]] = {}
        for m in misses:
            below.setdefault(m.row, []).append(f"{m.dataset} {m.metric}")
        wide["learning floor"] = ["⚠ below: " + ", ".join(below[int(r)]) if int(r) in below else "ok" for r in wide["row"]]
    data = "; ".join(
        f"{k}: " + ", ".join(f"{split} {v[split]['dataset']}" for split in ("train", "dev") if v.get(split))
        + (f" (predicted by the {v['predict_with']} model)" if v.get("predict_with") else "")
        for k, v in tasks.items() if k in meta["evaluate"]
    )
    claims = _claims(folder, name)
    verdicts = [c["verdict"] for c in claims]
    return {
        "name": name, "table": meta["table"], "title": meta["title"], "seeds": meta["seeds"],
        "baseline": meta.get("no_answer_baseline_f1") or {}, "prov": meta["provenance"], "seconds": meta["seconds"],
        "finished": meta["finished"], "data": data, "png": png,
        "wide": wide.to_html(index=False, border=0), "misses": misses,
        "summary": summary.to_html(index=False, border=0, float_format=lambda v: f"{v:.2f}", na_rep="–"),
        "profile": meta["profile"], "settings": settings_line(meta["profile"]), "claims": claims,
        "runs": _runs_table(frame, report_dir), "notebook": _notebook(folder, name, report_dir),
        "notes": table_notes(load_table_spec(name), meta["profile"]),
        "status": _status(meta, frame), "compute": _compute(meta), "git": meta["provenance"].get("git", "?")[:12],
        "page": f"{name}.html", "curves": _curves(frame, report_dir, meta["table"]),
        "counts": {"holds": verdicts.count("holds"), "reversed": verdicts.count("reversed"),
                   "inconclusive": verdicts.count("inconclusive"), "too_few": verdicts.count("too few seeds")},
    }


def build_report(output_dir: str | Path, profile: str) -> Path:
    """Render ``<output_dir>/<profile>/report/``: ``index.html`` (every table of the paper and the blog, its
    status and claim counts), a page per computed table and ``profile.html``; returns the index's path."""
    import yaml

    folder = Path(output_dir) / profile
    report_dir = folder / "report"
    done = {meta["name"]: _table_context(folder, meta, report_dir) for meta in table_metas(folder)}
    tables = []
    for path in sorted(ABLATIONS_DIR.glob("*.yaml"), key=lambda p: (not p.stem.startswith("table"), p.stem)):
        if path.stem in done:
            tables.append(done[path.stem])
        else:
            spec = load_table_spec(path.stem)
            tables.append({"name": path.stem, "table": spec.table, "title": spec.title, "status": "not run",
                           "seeds": "–", "compute": "–", "git": "–", "counts": None, "page": None})
    prof = next(iter(done.values()))["profile"] if done else {"name": profile}
    banner = prof.get("scale_note") or ""
    env = Environment(autoescape=select_autoescape(default=True))
    base = env.from_string(BASE)
    smoke = prof.get("name") == "smoke"

    def page(title: str, template: str, **context) -> str:
        body = env.from_string(template).render(profile=profile, smoke=smoke, rule=rule_text(), **context)
        return base.render(title=title, profile=profile, banner=banner, body=body)

    for t in done.values():
        atomic_write_text(report_dir / t["page"], page(f"{t['table']} {t['title']}", TABLE, t=t))
    atomic_write_text(report_dir / "profile.html", page("Profile", PROFILE, description=prof.get("description", ""),
                                                        yaml=yaml.safe_dump(prof, sort_keys=False)))
    misses = [m for t in done.values() for m in t["misses"]]
    drift = None
    if done and not smoke:
        summaries = [pd.read_csv(folder / f"{name}_summary.csv") for name in done]
        drift = base64.b64encode(plot_drift(pd.concat(summaries, ignore_index=True), profile)).decode()
    return atomic_write_text(report_dir / "index.html", page(
        "Report", INDEX, tables=tables, misses=misses, checked=bool(done) and prof.get("name") in FLOOR_PROFILES,
        drift=drift))


def floor_misses(output_dir: str | Path, profile: str) -> tuple[int, list[FloorMiss]]:
    """(tables checked, every row below its learning floor) over the tables found in ``<output_dir>/<profile>``."""
    folder = Path(output_dir) / profile
    misses: list[FloorMiss] = []
    metas = table_metas(folder)
    for meta in metas:
        misses += check_table_files(meta, pd.read_csv(folder / f"{meta['name']}_summary.csv"))
    return len(metas), misses
