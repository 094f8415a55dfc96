//! Text from outside (cookie payloads, stored user names and session data)
//! made safe to print: it can neither forge lines or columns of the output
//! nor drive the terminal (escape sequences, C1 controls, bidi overrides).

use std::{
    borrow::Cow,
    fmt::Write as _,
    io::{self, Write},
};

/// Whether `c` is a control character (general category Cc), a Unicode
/// format character (Cf), or a line or paragraph separator (Zl, Zp).
fn needs_escape(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory as _};
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// `text` with control and format characters escaped as `char::escape_debug`
/// escapes them (`\t`, `\n`, `\u{1b}`, `\u{202e}`); everything else,
/// accented letters and other printable Unicode included, is kept as is.
pub(crate) fn escape_text(text: &str) -> Cow<'_, str> {
    escape_with(text, |c, escaped| {
        // Writing to a String cannot fail.
        let _ = write!(escaped, "{}", c.escape_debug());
    })
}

/// JSON text with the control and format characters that JSON allows raw in
/// strings (DEL, the C1 controls, U+202E, U+2028, ...) written as `\uXXXX`
/// escapes, so it reads back as the same JSON value. serde_json (and the
/// frameworks' serializers) already escape U+0000 to U+001F inside strings,
/// so a raw newline can only be the layout of pretty-printed JSON, and stays.
pub(crate) fn escape_json(json: &str) -> Cow<'_, str> {
    escape_with(json, |c, escaped| {
        if c == '\n' {
            escaped.push(c);
            return;
        }
        let mut units = [0; 2];
        for unit in c.encode_utf16(&mut units) {
            let _ = write!(escaped, "\\u{unit:04x}");
        }
    })
}

/// Writes `json`, escaped by [`escape_json`], and a newline.
pub(crate) fn write_json_line(out: &mut impl Write, json: &str) -> io::Result<()> {
    writeln!(out, "{}", escape_json(json))
}

fn escape_with(text: &str, escape: impl Fn(char, &mut String)) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            escape(c, &mut escaped);
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{escape_json, escape_text};

    #[test]
    fn escape_text_escapes_controls_and_format_characters_only() {
        assert_eq!(escape_text("alice"), "alice");
        assert_eq!(escape_text("Zoë Ångström 山田 🙂"), "Zoë Ångström 山田 🙂");
        // Decomposed accents (combining marks) stay too.
        assert_eq!(escape_text("Zoe\u{308}"), "Zoe\u{308}");
        // Quotes and backslashes are not escaped.
        assert_eq!(escape_text(r#"a"b'c\d"#), r#"a"b'c\d"#);
        assert_eq!(
            escape_text("a\tb\nc\rd\0e\u{1b}[31mf\u{7f}g\u{9b}h"),
            r"a\tb\nc\rd\0e\u{1b}[31mf\u{7f}g\u{9b}h"
        );
        assert_eq!(
            escape_text("x\u{202e}gpj.exe\u{2066}\u{200b}\u{feff}\u{ad}\u{2028}\u{e0041}"),
            r"x\u{202e}gpj.exe\u{2066}\u{200b}\u{feff}\u{ad}\u{2028}\u{e0041}"
        );
    }

    #[test]
    fn escape_json_keeps_the_value_and_escapes_what_json_leaves_raw() {
        let value = json!({
            "user": "x\u{202e}gpj.exe",
            "csi": "\u{9b}31m\u{7f}",
            "lines": "a\u{2028}b\nc\u{1b}",
            "tag": "\u{e0041}",
            "plain": "Zoë 山田 🙂",
        });
        for text in [
            serde_json::to_string(&value).unwrap(),
            serde_json::to_string_pretty(&value).unwrap(),
        ] {
            let escaped = escape_json(&text);
            assert!(
                !escaped.chars().any(|c| c != '\n' && super::needs_escape(c)),
                "{escaped}"
            );
            assert_eq!(serde_json::from_str::<Value>(&escaped).unwrap(), value);
            assert!(escaped.contains(r"x\u202egpj.exe"), "{escaped}");
            assert!(escaped.contains(r"\udb40\udc41"), "{escaped}");
            assert!(escaped.contains("Zoë 山田 🙂"), "{escaped}");
        }
        assert!(matches!(
            escape_json(r#"{"a":"b"}"#),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
