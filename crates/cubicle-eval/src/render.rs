//! A report as people read it: a Markdown table, and a self-contained HTML
//! page with inline-SVG bar charts (no scripts, no external files).

use std::fmt::Write as _;

use crate::report::{SuiteReport, TaskReport};

/// The report as Markdown.
pub fn markdown(r: &SuiteReport) -> String {
    let a = &r.aggregate;
    let mut s = String::new();
    let _ = writeln!(s, "# Eval report: {}\n", r.suite);
    let _ = writeln!(
        s,
        "{} mode · model {} · backend {} · started {}\n",
        r.mode, r.model, r.backend, r.started_at
    );
    let _ = writeln!(
        s,
        "**{}/{} tasks passed ({:.0} %)** · wall {:.1} s · tokens in {} / out {} (cache reads {}) · estimated cost {} · tool errors {} · questions {} · permission denials {}\n",
        a.passed,
        a.tasks,
        a.success_rate * 100.0,
        a.metrics.wall_ms as f64 / 1000.0,
        a.metrics.input_tokens,
        a.metrics.output_tokens,
        a.metrics.cache_read_tokens,
        cost(a.metrics.cost_usd),
        a.metrics.tool_errors,
        a.metrics.questions,
        a.metrics.permission_denials
    );
    s.push_str("| task | category | result | wall (s) | tokens in/out | est. cost | tool errors | questions | failed graders |\n");
    s.push_str("|---|---|---|---:|---:|---:|---:|---:|---|\n");
    for t in &r.tasks {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} | {}/{} | {} | {} | {} | {} |",
            t.id,
            t.category,
            if t.passed { "pass" } else { "FAIL" },
            t.metrics.wall_ms as f64 / 1000.0,
            t.metrics.input_tokens,
            t.metrics.output_tokens,
            cost(t.metrics.cost_usd),
            t.metrics.tool_errors,
            t.metrics.questions,
            failures(t).replace('|', "\\|")
        );
    }
    s.push_str("\nCosts are estimates from list prices (see `cubicle_eval::pricing`).\n");
    s
}

fn cost(c: Option<f64>) -> String {
    c.map_or_else(|| "unknown".to_owned(), |c| format!("${c:.4}"))
}

fn failures(t: &TaskReport) -> String {
    let mut parts: Vec<String> = t
        .grades
        .iter()
        .filter(|g| !g.passed)
        .map(|g| format!("{}: {}", g.id, g.detail))
        .collect();
    if let Some(e) = &t.error {
        parts.insert(0, format!("error: {e}"));
    }
    parts.join("; ")
}

/// Escapes text for HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A horizontal bar chart, one bar per (label, value, passed).
fn bar_chart(title: &str, unit: &str, rows: &[(String, f64, bool)]) -> String {
    let row_h = 22.0;
    let label_w = 210.0;
    let bar_w = 420.0;
    let height = row_h * rows.len() as f64 + 30.0;
    let max = rows.iter().map(|r| r.1).fold(0.0_f64, f64::max).max(1e-9);
    let mut s = format!(
        "<figure><figcaption>{}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"{}\">",
        escape(title),
        label_w + bar_w + 90.0,
        escape(title)
    );
    for (i, (label, value, passed)) in rows.iter().enumerate() {
        let y = 10.0 + row_h * i as f64;
        let w = (value / max * bar_w).max(1.0);
        let color = if *passed { "#2e7d32" } else { "#c62828" };
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"12\">{}</text><rect x=\"{}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\" font-size=\"11\">{} {}</text>",
            label_w - 6.0,
            y + 14.0,
            escape(label),
            label_w,
            row_h - 6.0,
            label_w + w + 4.0,
            y + 14.0,
            trim_number(*value),
            escape(unit)
        );
    }
    s.push_str("</svg></figure>\n");
    s
}

fn trim_number(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// The report as one HTML page.
pub fn html(r: &SuiteReport) -> String {
    let a = &r.aggregate;
    let mut s =
        String::from("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>");
    s.push_str(&escape(&format!("Eval report: {}", r.suite)));
    s.push_str("</title><style>body{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}.pass{color:#2e7d32}.fail{color:#c62828;font-weight:bold}figure{margin:1em 0}figcaption{font-weight:bold}</style></head><body>\n");
    let _ = writeln!(
        s,
        "<h1>Eval report: {}</h1><p>{} mode · model {} · backend {} · started {}</p>",
        escape(&r.suite),
        escape(&r.mode),
        escape(&r.model),
        escape(&r.backend),
        escape(&r.started_at)
    );
    let _ = writeln!(
        s,
        "<p><strong>{}/{} tasks passed ({:.0} %)</strong> · wall {:.1} s · tokens in {} / out {} (cache reads {}) · estimated cost {} · tool errors {} · questions {} · permission denials {}</p>",
        a.passed,
        a.tasks,
        a.success_rate * 100.0,
        a.metrics.wall_ms as f64 / 1000.0,
        a.metrics.input_tokens,
        a.metrics.output_tokens,
        a.metrics.cache_read_tokens,
        escape(&cost(a.metrics.cost_usd)),
        a.metrics.tool_errors,
        a.metrics.questions,
        a.metrics.permission_denials
    );
    let rows = |f: &dyn Fn(&TaskReport) -> f64| -> Vec<(String, f64, bool)> {
        r.tasks
            .iter()
            .map(|t| (t.id.clone(), f(t), t.passed))
            .collect()
    };
    s.push_str(&bar_chart(
        "Wall time per task (green passed, red failed)",
        "s",
        &rows(&|t| t.metrics.wall_ms as f64 / 1000.0),
    ));
    s.push_str(&bar_chart(
        "Tokens per task (input + output)",
        "tokens",
        &rows(&|t| (t.metrics.input_tokens + t.metrics.output_tokens) as f64),
    ));
    s.push_str(&bar_chart(
        "Tool calls per task",
        "calls",
        &rows(&|t| t.metrics.tool_calls as f64),
    ));
    s.push_str("<table><tr><th>task</th><th>category</th><th>result</th><th>wall (s)</th><th>tokens in/out</th><th>est. cost</th><th>tool errors</th><th>questions</th><th>graders</th></tr>\n");
    for t in &r.tasks {
        let grades: Vec<String> = t
            .grades
            .iter()
            .map(|g| {
                format!(
                    "<span class=\"{}\" title=\"{}\">{}</span>",
                    if g.passed { "pass" } else { "fail" },
                    escape(&g.detail),
                    escape(&g.id)
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{:.1}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
            escape(&t.id),
            escape(&t.category),
            if t.passed { "pass" } else { "fail" },
            if t.passed { "pass" } else { "FAIL" },
            t.metrics.wall_ms as f64 / 1000.0,
            t.metrics.input_tokens,
            t.metrics.output_tokens,
            escape(&cost(t.metrics.cost_usd)),
            t.metrics.tool_errors,
            t.metrics.questions,
            t.error.as_ref().map_or_else(String::new, |e| format!(
                "<span class=\"fail\">{}</span> ",
                escape(e)
            )),
            grades.join(" ")
        );
    }
    s.push_str("</table><p>Costs are estimates from list prices.</p></body></html>\n");
    s
}
