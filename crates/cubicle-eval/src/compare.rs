//! Finding regressions between two reports of the same suite: a task that
//! passed and now fails (or is gone), or a metric worse by more than a
//! threshold. `cubicle eval compare` exits non-zero when there is any.

use serde::{Deserialize, Serialize};

use crate::report::{Metrics, SuiteReport};

/// How much worse a metric may get before it counts as a regression.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Largest allowed relative increase of wall time (0.5 = 50 %).
    pub wall_time: f64,
    /// Wall-time increases below this many milliseconds are noise.
    pub wall_time_floor_ms: u64,
    /// Largest allowed relative increase of tokens (input + output).
    pub tokens: f64,
    /// Largest allowed relative increase of estimated cost.
    pub cost: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            wall_time: 0.5,
            wall_time_floor_ms: 2_000,
            tokens: 0.1,
            cost: 0.1,
        }
    }
}

/// One thing that got worse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Regression {
    /// The task, or `*` for the suite as a whole.
    pub task: String,
    /// What got worse, in words.
    pub what: String,
}

/// Everything in `new` that is worse than in `old`.
pub fn compare(old: &SuiteReport, new: &SuiteReport, t: &Thresholds) -> Vec<Regression> {
    let mut out = Vec::new();
    let mut push = |task: &str, what: String| {
        out.push(Regression {
            task: task.to_owned(),
            what,
        });
    };
    for before in &old.tasks {
        let Some(after) = new.task(&before.id) else {
            push(&before.id, "the task is missing from the new report".into());
            continue;
        };
        if before.passed && !after.passed {
            let failed: Vec<&str> = after
                .grades
                .iter()
                .filter(|g| !g.passed)
                .map(|g| g.id.as_str())
                .collect();
            let why = match (&after.error, failed.is_empty()) {
                (Some(e), _) => e.clone(),
                (None, false) => format!("graders failed: {}", failed.join(", ")),
                (None, true) => "failed".to_owned(),
            };
            push(&before.id, format!("passed before, fails now ({why})"));
        }
        for what in metric_regressions(&before.metrics, &after.metrics, t) {
            push(&before.id, what);
        }
    }
    if new.aggregate.success_rate + 1e-9 < old.aggregate.success_rate {
        push(
            "*",
            format!(
                "success rate fell from {:.0} % to {:.0} %",
                old.aggregate.success_rate * 100.0,
                new.aggregate.success_rate * 100.0
            ),
        );
    }
    out
}

fn metric_regressions(a: &Metrics, b: &Metrics, t: &Thresholds) -> Vec<String> {
    let mut out = Vec::new();
    let worse =
        |before: f64, after: f64, limit: f64| after > before * (1.0 + limit) && after > before;
    if b.wall_ms > a.wall_ms + t.wall_time_floor_ms
        && worse(a.wall_ms as f64, b.wall_ms as f64, t.wall_time)
    {
        out.push(format!("wall time {} ms → {} ms", a.wall_ms, b.wall_ms));
    }
    let (ta, tb) = (
        a.input_tokens + a.output_tokens,
        b.input_tokens + b.output_tokens,
    );
    if worse(ta as f64, tb as f64, t.tokens) {
        out.push(format!("tokens {ta} → {tb}"));
    }
    if let (Some(ca), Some(cb)) = (a.cost_usd, b.cost_usd)
        && worse(ca, cb, t.cost)
    {
        out.push(format!("estimated cost ${ca:.4} → ${cb:.4}"));
    }
    if b.tool_errors > a.tool_errors {
        out.push(format!("tool errors {} → {}", a.tool_errors, b.tool_errors));
    }
    if b.permission_denials > a.permission_denials {
        out.push(format!(
            "permission denials {} → {}",
            a.permission_denials, b.permission_denials
        ));
    }
    out
}
