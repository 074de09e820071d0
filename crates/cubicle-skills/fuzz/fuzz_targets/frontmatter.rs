//! Fuzzes the SKILL.md splitter and the lenient frontmatter parser: any input
//! must give a skill, warnings or an error, never a panic or a hang.
#![no_main]

use std::path::Path;

use cubicle_skills::{Skill, SkillSource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Skill::from_text(Path::new("/skills/fuzz"), SkillSource::User, text);
        let _ = cubicle_skills::frontmatter::parse(text, Path::new("SKILL.md"), 2);
    }
});
