//! The catalog: the skills in use, and the few lines about them that go into
//! the system prompt.
//!
//! This is the first level of progressive disclosure: the model sees each
//! skill's name and description (a few dozen tokens), and loads the body
//! through the `skill` tool only when a task needs it. The rendering keeps to
//! a token budget. There is no public Claude tokenizer, so tokens are
//! *estimated* as characters / 4 (rounded up), which over-counts English
//! prose slightly and is the usual rule of thumb.

use crate::skill::Skill;

/// The skills in use, one per name, sorted by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    skills: Vec<Skill>,
}

/// Longest description shown in the catalog, in characters.
pub const CATALOG_DESCRIPTION_CHARS: usize = 400;

/// Estimates the tokens of `text` as characters / 4, rounded up.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

impl Catalog {
    /// A catalog of `skills` (names are assumed unique).
    pub fn new(mut skills: Vec<Skill>) -> Self {
        skills.sort_by(|a, b| a.name.cmp(&b.name));
        Self { skills }
    }

    /// All skills, including those only the person can invoke.
    pub fn skills(&self) -> &[Skill] {
        &self.skills
    }

    /// The skill called `name`.
    pub fn get(&self, name: &str) -> Option<&Skill> {
        self.skills
            .binary_search_by(|s| s.name.as_str().cmp(name))
            .ok()
            .and_then(|i| self.skills.get(i))
    }

    /// The number of skills.
    pub fn len(&self) -> usize {
        self.skills.len()
    }

    /// Whether there are no skills.
    pub fn is_empty(&self) -> bool {
        self.skills.is_empty()
    }

    /// The skills the model may invoke (not `disable-model-invocation`).
    pub fn model_invocable(&self) -> impl Iterator<Item = &Skill> {
        self.skills
            .iter()
            .filter(|s| !s.frontmatter.disable_model_invocation)
    }

    /// The system-prompt section listing the model-invocable skills, within
    /// `budget_tokens` (estimated with [`estimate_tokens`]). Skills that do
    /// not fit are counted in a closing line rather than silently dropped;
    /// an empty string when there is nothing to list or no room at all.
    pub fn render(&self, budget_tokens: usize) -> String {
        const HEAD: &str = "<available_skills>\nSkills are instructions and files for particular kinds of work. \
When a task matches a skill's description, call the `skill` tool with its name before starting.\n";
        const TAIL: &str = "</available_skills>\n";
        let skills: Vec<&Skill> = self.model_invocable().collect();
        if skills.is_empty() {
            return String::new();
        }
        let mut out = String::from(HEAD);
        // Room kept for the tail and an "N more" line.
        let reserve = estimate_tokens(TAIL) + estimate_tokens(&more_line(skills.len()));
        let mut used = estimate_tokens(HEAD);
        if used + reserve > budget_tokens {
            return String::new();
        }
        let mut listed = 0;
        for skill in &skills {
            let line = catalog_line(skill);
            let cost = estimate_tokens(&line);
            if used + cost + reserve > budget_tokens {
                break;
            }
            used += cost;
            out.push_str(&line);
            listed += 1;
        }
        let omitted = skills.len() - listed;
        if omitted > 0 {
            out.push_str(&more_line(omitted));
        }
        out.push_str(TAIL);
        out
    }
}

fn more_line(omitted: usize) -> String {
    format!(
        "({omitted} more skills are installed but not listed for lack of room; \
the `skill` tool names them all when called with an unknown name.)\n"
    )
}

fn catalog_line(skill: &Skill) -> String {
    let mut text = one_line(&skill.description);
    if let Some(when) = &skill.frontmatter.when_to_use {
        text.push_str(" Use when: ");
        text.push_str(&one_line(when));
    }
    if text.chars().count() > CATALOG_DESCRIPTION_CHARS {
        text = text.chars().take(CATALOG_DESCRIPTION_CHARS - 1).collect();
        text.push('…');
    }
    format!("- {}: {text}\n", skill.name)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
