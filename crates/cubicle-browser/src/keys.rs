//! Key names the model uses (`Enter`, `Control+A`) turned into the
//! `Input.dispatchKeyEvent` pairs Chromium expects.

use serde_json::{Value, json};

/// A key with its modifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPress {
    key: String,
    code: String,
    key_code: u32,
    text: Option<String>,
    modifiers: u32,
}

const ALT: u32 = 1;
const CONTROL: u32 = 2;
const META: u32 = 4;
const SHIFT: u32 = 8;

/// Named keys: DOM `key`, `code`, Windows virtual key code, text produced.
const NAMED: &[(&str, &str, u32, Option<&str>)] = &[
    ("Enter", "Enter", 13, Some("\r")),
    ("Tab", "Tab", 9, None),
    ("Escape", "Escape", 27, None),
    ("Backspace", "Backspace", 8, None),
    ("Delete", "Delete", 46, None),
    ("ArrowUp", "ArrowUp", 38, None),
    ("ArrowDown", "ArrowDown", 40, None),
    ("ArrowLeft", "ArrowLeft", 37, None),
    ("ArrowRight", "ArrowRight", 39, None),
    ("Home", "Home", 36, None),
    ("End", "End", 35, None),
    ("PageUp", "PageUp", 33, None),
    ("PageDown", "PageDown", 34, None),
    (" ", "Space", 32, Some(" ")),
];

impl KeyPress {
    /// Parses `Enter`, `a`, `Control+Shift+K`, `Space`, …
    pub fn parse(spec: &str) -> Result<Self, String> {
        let parts: Vec<&str> = spec.split('+').map(str::trim).collect();
        let (last, mods) = match parts.split_last() {
            Some((l, m)) if !l.is_empty() => (*l, m),
            // `+` itself, or `Control++`.
            _ if spec.ends_with('+') => ("+", &parts[..parts.len().saturating_sub(2)]),
            _ => return Err(format!("{spec:?} is not a key")),
        };
        let mut modifiers = 0;
        for m in mods {
            modifiers |= match m.to_ascii_lowercase().as_str() {
                "alt" | "option" => ALT,
                "control" | "ctrl" => CONTROL,
                "meta" | "cmd" | "command" => META,
                "shift" => SHIFT,
                other => {
                    return Err(format!(
                        "{other:?} is not a modifier; use Control, Shift, Alt or Meta"
                    ));
                }
            };
        }
        let name = match last.to_ascii_lowercase().as_str() {
            "space" | "spacebar" => " ".to_owned(),
            "esc" => "Escape".to_owned(),
            "return" => "Enter".to_owned(),
            "up" => "ArrowUp".to_owned(),
            "down" => "ArrowDown".to_owned(),
            "left" => "ArrowLeft".to_owned(),
            "right" => "ArrowRight".to_owned(),
            "del" => "Delete".to_owned(),
            _ => last.to_owned(),
        };
        if let Some((key, code, key_code, text)) =
            NAMED.iter().find(|(k, ..)| k.eq_ignore_ascii_case(&name))
        {
            return Ok(Self {
                key: (*key).to_owned(),
                code: (*code).to_owned(),
                key_code: *key_code,
                text: text.map(str::to_owned),
                modifiers,
            });
        }
        let mut chars = name.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => {
                let upper = c.to_ascii_uppercase();
                let code = if c.is_ascii_alphabetic() {
                    format!("Key{upper}")
                } else if c.is_ascii_digit() {
                    format!("Digit{c}")
                } else {
                    String::new()
                };
                let key_code = if c.is_ascii_alphanumeric() {
                    upper as u32
                } else {
                    0
                };
                let key = if modifiers & SHIFT != 0 {
                    upper.to_string()
                } else {
                    c.to_string()
                };
                Ok(Self {
                    text: Some(key.clone()),
                    key,
                    code,
                    key_code,
                    modifiers,
                })
            }
            _ => Err(format!(
                "{last:?} is not a key I know; use a single character or one of Enter, Tab, Escape, Backspace, Delete, ArrowUp, ArrowDown, ArrowLeft, ArrowRight, Home, End, PageUp, PageDown, Space"
            )),
        }
    }

    /// The key-down and key-up events.
    pub fn events(&self) -> (Value, Value) {
        // With Control, Alt or Meta held a key produces no text: it is a shortcut.
        let text = self
            .text
            .as_ref()
            .filter(|_| self.modifiers & (CONTROL | ALT | META) == 0);
        let mut down = json!({
            "type": if text.is_some() { "keyDown" } else { "rawKeyDown" },
            "key": self.key,
            "code": self.code,
            "windowsVirtualKeyCode": self.key_code,
            "modifiers": self.modifiers,
        });
        if let Some(t) = text {
            down["text"] = json!(t);
            down["unmodifiedText"] = json!(t);
        }
        let up = json!({
            "type": "keyUp",
            "key": self.key,
            "code": self.code,
            "windowsVirtualKeyCode": self.key_code,
            "modifiers": self.modifiers,
        });
        (down, up)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_chords() {
        let (down, _) = KeyPress::parse("Enter").unwrap().events();
        assert_eq!(down["type"], "keyDown");
        assert_eq!(down["text"], "\r");
        assert_eq!(down["windowsVirtualKeyCode"], 13);
        let (down, up) = KeyPress::parse("Control+a").unwrap().events();
        assert_eq!(down["type"], "rawKeyDown");
        assert_eq!(down["modifiers"], 2);
        assert_eq!(down["code"], "KeyA");
        assert!(down.get("text").is_none());
        assert_eq!(up["type"], "keyUp");
        assert_eq!(KeyPress::parse("esc").unwrap().events().0["key"], "Escape");
        assert!(
            KeyPress::parse("Hyper+x")
                .unwrap_err()
                .contains("not a modifier")
        );
        assert!(
            KeyPress::parse("F42")
                .unwrap_err()
                .contains("not a key I know")
        );
        assert!(KeyPress::parse("").is_err());
    }
}
