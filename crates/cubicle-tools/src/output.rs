//! Keeping tool output within what a model's context can take: long outputs
//! keep their head and tail, with a note saying what was left out and how to
//! get at it.

/// Most characters of one tool result sent to the model.
pub const MAX_RESULT_CHARS: usize = 30_000;

/// `s` cut to at most `max` characters, with `…` when cut.
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// `text` if it fits in `max` characters, else its head and tail with a note
/// in between saying how much was omitted.
pub fn truncate_middle(text: &str, max: usize) -> String {
    let total = text.chars().count();
    if total <= max {
        return text.to_owned();
    }
    let head_chars = max * 2 / 3;
    let tail_chars = max - head_chars;
    let head_end = text
        .char_indices()
        .nth(head_chars)
        .map_or(text.len(), |(i, _)| i);
    let tail_start = text
        .char_indices()
        .nth(total - tail_chars)
        .map_or(text.len(), |(i, _)| i);
    let omitted = total - head_chars - tail_chars;
    format!(
        "{}\n\n[… {omitted} characters omitted of {total}; write the output to a file and read parts of it, or filter it with grep/head/tail …]\n\n{}",
        &text[..head_end],
        &text[tail_start..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_untouched() {
        assert_eq!(truncate_middle("abc", 10), "abc");
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "abc…");
    }

    #[test]
    fn long_text_keeps_head_and_tail() {
        let text: String = (0..10_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let out = truncate_middle(&text, 300);
        assert!(out.starts_with(&text[..200]));
        assert!(out.ends_with(&text[text.len() - 100..]));
        assert!(out.contains("9700 characters omitted of 10000"));
    }

    #[test]
    fn multibyte_text_is_cut_on_char_boundaries() {
        let text = "é".repeat(1000);
        let out = truncate_middle(&text, 10);
        assert!(out.contains("990 characters omitted"));
        assert_eq!(clip(&text, 2), "éé…");
    }
}
