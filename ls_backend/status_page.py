"""``GET /status``: one HTML page a project lead can read, with server-side SVG plots.

No JavaScript and no CDN: the page is rendered here from the projects' state files, and every
value comes from the same report the JSON ``/status/<id>`` returns.
"""

from __future__ import annotations

import io
from html import escape
from pathlib import Path

import numpy as np

from ls_backend.state import load_state

PAGE_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1d232a;max-width:1100px}
h1{font-size:1.5rem} h2{font-size:1.2rem;margin-top:2.5rem;border-bottom:1px solid #ccd}
.decision{font-size:1.4rem;font-weight:700;padding:.2rem .6rem;border-radius:.3rem}
.CONTINUE{background:#dff3e4;color:#13612e} .STOP{background:#fde2e1;color:#8a1c17}
.error{background:#fff3cd;padding:.5rem;border-radius:.3rem}
table{border-collapse:collapse;margin:.5rem 0} td,th{padding:.25rem .8rem;text-align:left}
tr:nth-child(even){background:#f4f6f8} .plots{display:flex;flex-wrap:wrap;gap:1rem}
.muted{color:#5b6670;font-size:.9rem}
"""


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def learning_curve_svg(history: list[dict], stopping: dict) -> str | None:
    """Metric vs labels with the fitted curve, and marginal gain per label vs tau."""
    if len(history) < 1:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    n = np.array([h["n_labels"] for h in history], dtype=float)
    y = np.array([h["metric"] for h in history], dtype=float)
    curve = stopping.get("curve")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax1.plot(n, y, "o", color="#1f5fa8", label="measured (out-of-fold)")
    if curve:
        grid = np.linspace(max(1.0, n.min()), max(n.max() * 2, n.min() + 1), 200)
        ax1.plot(
            grid,
            curve["a"] - curve["b"] * grid ** (-curve["c"]),
            "-",
            color="#e07b00",
            label=f"fit a - b n^-c (plateau {curve['a']:.3f})",
        )
        gain = curve["b"] * curve["c"] * grid ** (-curve["c"] - 1) / stopping["cost_per_label"]
        ax2.loglog(grid, gain, "-", color="#e07b00", label="gain per unit cost")
        ax2.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap
        ax2.axhline(stopping["tau"], color="#8a1c17", ls="--", label=f"tau = {stopping['tau']:g}")
        ax2.axvline(n.max(), color="#5b6670", ls=":", label="labels used")
        ax2.set_xlabel("labels")
        ax2.legend(fontsize=8)
        ax2.set_title("marginal gain per label", fontsize=10)
    else:
        ax2.text(
            0.5,
            0.5,
            "needs 3 cycles at different\nlabel counts",
            ha="center",
            va="center",
            transform=ax2.transAxes,
        )
        ax2.set_axis_off()
    ax1.set_xlabel("labels")
    ax1.set_ylabel("macro-F1")
    ax1.set_title("learning curve", fontsize=10)
    ax1.legend(fontsize=8)
    return _svg(fig)


def class_balance_svg(counts: dict[str, int]) -> str | None:
    if not counts:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(counts)
    fig, ax = plt.subplots(figsize=(4.5, 0.3 * len(names) + 0.8))
    ax.barh(names[::-1], [counts[c] for c in names[::-1]], color="#1f5fa8")
    ax.set_xlabel("labels")
    ax.set_title("class balance of what is labelled", fontsize=10)
    return _svg(fig)


def _row(label: str, value) -> str:
    return f"<tr><th>{escape(label)}</th><td>{escape(str(value))}</td></tr>"


def project_section(
    project_id: int, state: dict, queue_state: dict, label_studio_url: str | None
) -> str:
    last = state.get("last_report") or {}
    ok = state.get("last_success") or {}
    stop = ok.get("stopping") or {}
    parts = [f'<section id="project-{project_id}"><h2>Project {project_id}</h2>']
    if stop:
        parts.append(
            f'<p><span class="decision {escape(stop.get("decision", ""))}" '
            f'data-field="decision">{escape(stop.get("decision", ""))}</span></p>'
            f'<p data-field="explanation">{escape(stop.get("explanation", ""))}</p>'
        )
    if last.get("status") == "error":
        parts.append(f'<p class="error">Last cycle failed: {escape(last.get("error", ""))}</p>')
    worth = stop.get("labels_worth_buying")
    gain = stop.get("marginal_gain_per_cost")
    rows = [
        _row("labels used", ok.get("n_labeled", "-")),
        _row("tasks", ok.get("n_tasks", "-")),
        _row("labels still worth buying", "-" if worth is None else worth),
        _row("gain per label (per unit cost)", "-" if gain is None else f"{gain:.3g}"),
        _row("tau", stop.get("tau", "-")),
        _row("SME escalations", ok.get("n_escalated", "-")),
        _row("label issues", ok.get("n_label_issues", "-")),
        _row("model version served", state.get("current_version") or "-"),
        _row("pre-labels", _prelabel_state(ok)),
        _row("tasks with unreadable media", ok.get("n_media_errors", "-")),
        _row(
            "last cycle",
            f"{last.get('status', '-')} at {last.get('finished_at', '-')} "
            f"({last.get('duration_s', '-')} s)",
        ),
        _row("queue", ", ".join(k for k in ("running", "pending") if queue_state.get(k)) or "idle"),
    ]
    parts.append('<table class="numbers">' + "".join(rows) + "</table>")
    views = ok.get("views") or {}
    if label_studio_url and views:
        links = " · ".join(
            f'<a href="{escape(label_studio_url)}/projects/{project_id}/data?tab={int(v)}">'
            f"{escape(title)}</a>"
            for title, v in views.items()
        )
        parts.append(f"<p>Open in Label Studio: {links}</p>")
    for c in ok.get("confusions", [])[:5]:
        parts.append(
            f"<p>Systematic confusion: '{escape(str(c.get('given_name', c['given'])))}'"
            f" is often really '{escape(str(c.get('likely_true_name', c['likely_true'])))}'"
            f" (about {c['count']:.0f} labels, {100 * c['share']:.0f}% of the class)</p>"
        )
    plots = [
        svg
        for svg in (
            learning_curve_svg(state.get("history") or [], stop),
            class_balance_svg(ok.get("class_counts") or {}),
        )
        if svg
    ]
    if plots:
        parts.append('<div class="plots">' + "".join(plots) + "</div>")
    parts.append("</section>")
    return "".join(parts)


def _prelabel_state(report: dict) -> str:
    """Whether the served version carries model pre-labels, and if not, why."""
    if not report:
        return "-"
    if report.get("head_version"):
        return "from the trained head"
    reason = report.get("cold_start_reason") or "not enough labels yet"
    return f"none: {reason}"


def render_status_page(model_dir: Path, queue, label_studio_url: str | None) -> str:
    root = Path(model_dir) / "projects"
    ids = sorted(int(p.name) for p in root.iterdir() if p.name.isdigit()) if root.is_dir() else []
    sections = [
        project_section(pid, load_state(model_dir, pid), queue.state(pid), label_studio_url)
        for pid in ids
    ]
    body = (
        "".join(sections) or "<p>No project has run a cycle yet. Press Train in Label Studio.</p>"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>smartsize status</title>"
        f"<style>{PAGE_CSS}</style></head><body><h1>smartsize status</h1>"
        f"<p class='muted'>Smart-sizing for Label Studio: what to label next, when to stop."
        f"</p>{body}</body></html>"
    )
