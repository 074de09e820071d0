//! Policy decision time for a policy of ~50 rules across four layers, next
//! to the same calls against the empty policy (the peer: what any check
//! costs at all). Goal from issue 4: a decision ≤ 10 µs.
//!
//! `cargo bench -p cubicle-policy --bench decision` runs it in full; under
//! `cargo test` (no `--bench` argument) it runs a few iterations only, as a
//! smoke test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::hint::black_box;
use std::time::Instant;

use cubicle_policy::{Layer, Policy, SettingsSource};
use serde_json::{Value, json};

fn policy() -> Policy {
    let managed = r#"
[permissions]
deny = ["Bash(rm -rf *)", "Bash(shred *)", "Bash(dd *)", "Bash(mkfs *)", "Read(/mnt/hr/**)",
        "Read(*.pem)", "Read(*.key)", "Edit(/mnt/**/.git/**)", "WebFetch(domain:*.pastebin.com)",
        "mcp__github__delete_repo", "Bash(curl *)", "Bash(wget *)"]
ask = ["Bash(git push *)", "Edit(/mnt/**/*.xlsx)", "Edit(/mnt/**/*.docx)", "Write(/mnt/**)",
       "WebFetch(domain:*.google.com)", "mcp__slack", "Bash(npm publish *)"]
[network]
deny = ["*.pastebin.com", "*.ngrok.io"]
[tools]
disabled = ["browser_evaluate"]
"#;
    let user = r#"
[permissions]
allow = ["Bash(git status)", "Bash(git diff *)", "Bash(git log *)", "Bash(git add *)",
         "Bash(git commit *)", "Bash(ls *)", "Bash(cat *)", "Bash(head *)", "Bash(tail *)",
         "Bash(python3 *)", "Bash(pandoc *)", "Bash(libreoffice *)", "Bash(pdftotext *)",
         "Read(/mnt/contracts/**)", "Read(/mnt/Reports/**)", "Read(/workspace/**)",
         "Edit(/workspace/**)", "Edit(/mnt/Reports/drafts/**)", "WebFetch(domain:*.wikipedia.org)",
         "WebFetch(domain:api.github.com)", "mcp__github__create_issue", "mcp__github__list_*"]
ask = ["Bash(pip install *)", "Bash(npm install *)", "Edit(*.csv)", "Read(/mnt/Private/**)",
       "Bash(sudo *)", "Bash(chmod *)", "Bash(mv /mnt/* *)"]
deny = ["Bash(rm /mnt/*)", "Read(/mnt/Private/keys/**)"]
"#;
    Policy::from_sources(&[
        SettingsSource {
            layer: Layer::Managed,
            file: None,
            text: managed.into(),
        },
        SettingsSource {
            layer: Layer::User,
            file: None,
            text: user.into(),
        },
    ])
    .unwrap()
}

fn calls() -> Vec<(&'static str, Value)> {
    vec![
        (
            "bash",
            json!({"command": "git status && git diff HEAD~1 | head -50"}),
        ),
        (
            "bash",
            json!({"command": "python3 make_report.py --in /mnt/Reports/q3.xlsx"}),
        ),
        ("bash", json!({"command": "rm -rf /workspace/build"})),
        ("read", json!({"path": "/mnt/contracts/2024/acme.pdf"})),
        ("read", json!({"path": "/mnt/x/../hr/salaries.xlsx"})),
        ("edit", json!({"path": "/mnt/Reports/q3.xlsx"})),
        ("write", json!({"path": "/workspace/out/report.md"})),
        ("grep", json!({"pattern": "invoice", "path": "/mnt"})),
        (
            "web_fetch",
            json!({"url": "https://en.wikipedia.org/wiki/Rust"}),
        ),
        ("mcp__github__create_issue", json!({})),
    ]
}

fn ns_per_decision(policy: &Policy, calls: &[(&str, Value)], rounds: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..rounds {
        for (tool, input) in calls {
            black_box(policy.check_tool(black_box(tool), black_box(input)));
        }
    }
    start.elapsed().as_nanos() as f64 / (rounds * calls.len()) as f64
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = if full { 20_000 } else { 10 };
    let policy = policy();
    let empty = Policy::default();
    let calls = calls();
    let rules = policy
        .effective()
        .iter()
        .filter(|s| s.key.starts_with("permissions.") && s.origin.is_some())
        .count();
    // Warm up caches and the allocator before measuring.
    ns_per_decision(&policy, &calls, rounds / 10 + 1);
    let with_rules = ns_per_decision(&policy, &calls, rounds);
    let baseline = ns_per_decision(&empty, &calls, rounds);
    println!(
        "policy decision: {with_rules:.0} ns/decision with {rules} rules, {baseline:.0} ns with \
         none (ratio {:.1}x); goal ≤ 10000 ns",
        with_rules / baseline
    );
}
