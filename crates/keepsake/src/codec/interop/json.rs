//! JSON exactly as Python's `json` module writes and reads it.
//!
//! Writing follows `json.dumps(..., ensure_ascii=True)`: every character
//! outside printable ASCII becomes a lowercase `\uXXXX` escape (UTF-16
//! surrogate pairs above U+FFFF), floats use Python's `repr` (`1e-07`,
//! `1e+22`, `1.0`, `NaN`, `Infinity`), and the separators and key order are
//! the caller's. Reading follows `json.loads`: strict strings (no raw control
//! characters), `NaN`/`Infinity`/`-Infinity` accepted, and a repeated key
//! keeps its first place with its last value.

use super::value::{PyDict, PyValue};

/// Deepest nesting written or read. Python reads a few hundred levels
/// (Flask's tags recurse, so it stops earlier than `json`); sessions never
/// come near either.
pub(crate) const MAX_DEPTH: usize = 128;

/// Separators and key order, as `json.dumps` arguments.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Style {
    /// `sort_keys=True`.
    pub(crate) sort_keys: bool,
    /// Between items: `","` or `", "`.
    pub(crate) item_sep: &'static str,
    /// Between a key and its value: `":"` or `": "`.
    pub(crate) key_sep: &'static str,
}

impl Style {
    /// Flask: `sort_keys=True, separators=(",", ":")`.
    pub(crate) const FLASK: Self = Self {
        sort_keys: true,
        item_sep: ",",
        key_sep: ":",
    };
    /// Starlette: `json.dumps(session)`, Python's defaults.
    pub(crate) const STARLETTE: Self = Self {
        sort_keys: false,
        item_sep: ", ",
        key_sep: ": ",
    };
    /// Django: `separators=(",", ":")`.
    pub(crate) const DJANGO: Self = Self {
        sort_keys: false,
        item_sep: ",",
        key_sep: ":",
    };
}

/// Why a value cannot be written as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WriteError {
    /// A type plain JSON has no spelling for.
    Unsupported(&'static str),
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

/// Writes `value` as `json.dumps` would. `Tuple` is written as a list and
/// `Markup` as a string (as Python does); `Bytes`, `Uuid` and `DateTime`
/// are refused.
pub(crate) fn to_string(value: &PyValue, style: Style) -> Result<String, WriteError> {
    let mut out = String::new();
    write_value(value, style, 0, &mut out)?;
    Ok(out)
}

fn write_value(
    value: &PyValue,
    style: Style,
    depth: usize,
    out: &mut String,
) -> Result<(), WriteError> {
    if depth > MAX_DEPTH {
        return Err(WriteError::TooDeep);
    }
    match value {
        PyValue::None => out.push_str("null"),
        PyValue::Bool(true) => out.push_str("true"),
        PyValue::Bool(false) => out.push_str("false"),
        PyValue::Int(n) => out.push_str(&n.to_string()),
        PyValue::Float(x) => write_float(*x, out),
        PyValue::Str(text) | PyValue::Markup(text) => write_str(text, out),
        PyValue::List(items) | PyValue::Tuple(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(style.item_sep);
                }
                write_value(item, style, depth + 1, out)?;
            }
            out.push(']');
        }
        PyValue::Dict(dict) => {
            let mut items: Vec<(&str, &PyValue)> = dict.iter().collect();
            if style.sort_keys {
                // Python compares str by code point, as Rust's byte order of
                // UTF-8 does.
                items.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (key, item)) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(style.item_sep);
                }
                write_str(key, out);
                out.push_str(style.key_sep);
                write_value(item, style, depth + 1, out)?;
            }
            out.push('}');
        }
        other @ (PyValue::Bytes(_) | PyValue::Uuid(_) | PyValue::DateTime(_)) => {
            return Err(WriteError::Unsupported(other.type_name()));
        }
    }
    Ok(())
}

/// A string with `ensure_ascii=True` escaping.
pub(crate) fn write_str(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// A float as Python's `float.__repr__` (and `json` for the non-finite).
pub(crate) fn write_float(x: f64, out: &mut String) {
    if x.is_nan() {
        out.push_str("NaN");
        return;
    }
    if x.is_infinite() {
        out.push_str(if x > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    // Shortest round-trip digits, as Python's repr uses.
    let sci = format!("{x:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if negative {
        out.push('-');
    }
    // Python: 0.d1d2... × 10^decpt; exponent form when decpt <= -4 or > 16.
    let decpt = exponent + 1;
    if (-3..=16).contains(&decpt) {
        let len = digits.len() as i32;
        if decpt <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-decpt) as usize));
            out.push_str(&digits);
        } else if decpt >= len {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', (decpt - len) as usize));
            out.push_str(".0");
        } else {
            let (int, frac) = digits.split_at(decpt as usize);
            out.push_str(int);
            out.push('.');
            out.push_str(frac);
        }
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let e = decpt - 1;
        out.push_str(&format!("e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs()));
    }
}

/// The reasons [`parse`] gives for JSON Python reads but keepsake does not
/// hold (as opposed to JSON that Python refuses too).
const KEEPSAKE_LIMITS: [&str; 3] = [BEYOND_I128, LONE_SURROGATE, TOO_DEEP];
const BEYOND_I128: &str = "an integer beyond 128 bits (keepsake reads integers up to 128 bits)";
const LONE_SURROGATE: &str =
    "a lone UTF-16 surrogate in a string (keepsake strings are Unicode text)";
const TOO_DEEP: &str = "nested deeper than the 128 levels keepsake reads";

/// Whether `reason`, an error of [`parse`], is about a limit of keepsake's
/// (Python reads the JSON) rather than JSON Python refuses.
pub(crate) fn is_keepsake_limit(reason: &str) -> bool {
    KEEPSAKE_LIMITS.contains(&reason)
}

/// Parses JSON text as `json.loads` does.
///
/// # Errors
///
/// A short reason, for anything Python would refuse, and for what keepsake
/// cannot hold (integers beyond `i128`, lone surrogates, nesting deeper than
/// [`MAX_DEPTH`]).
pub(crate) fn parse(text: &str) -> Result<PyValue, &'static str> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        text,
        pos: 0,
    };
    parser.skip_ws();
    let value = parser.value(0)?;
    parser.skip_ws();
    if parser.pos != parser.bytes.len() {
        return Err("extra data after the JSON value");
    }
    Ok(value)
}

struct Parser<'a> {
    bytes: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, literal: &str) -> bool {
        if self.bytes[self.pos..].starts_with(literal.as_bytes()) {
            self.pos += literal.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<PyValue, &'static str> {
        if depth > MAX_DEPTH {
            return Err(TOO_DEEP);
        }
        match self.bytes.get(self.pos) {
            None => Err("expecting a value"),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(PyValue::Str),
            Some(b'n') if self.eat("null") => Ok(PyValue::None),
            Some(b't') if self.eat("true") => Ok(PyValue::Bool(true)),
            Some(b'f') if self.eat("false") => Ok(PyValue::Bool(false)),
            Some(b'N') if self.eat("NaN") => Ok(PyValue::Float(f64::NAN)),
            Some(b'I') if self.eat("Infinity") => Ok(PyValue::Float(f64::INFINITY)),
            Some(b'-') if self.eat("-Infinity") => Ok(PyValue::Float(f64::NEG_INFINITY)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err("expecting a value"),
        }
    }

    fn object(&mut self, depth: usize) -> Result<PyValue, &'static str> {
        self.pos += 1;
        let mut dict = PyDict::new();
        self.skip_ws();
        if self.eat("}") {
            return Ok(PyValue::Dict(dict));
        }
        loop {
            if self.bytes.get(self.pos) != Some(&b'"') {
                return Err("expecting a property name in double quotes");
            }
            let key = self.string()?;
            self.skip_ws();
            if !self.eat(":") {
                return Err("expecting ':' delimiter");
            }
            self.skip_ws();
            let value = self.value(depth + 1)?;
            dict.insert(key, value);
            self.skip_ws();
            if self.eat("}") {
                return Ok(PyValue::Dict(dict));
            }
            if !self.eat(",") {
                return Err("expecting ',' delimiter");
            }
            self.skip_ws();
        }
    }

    fn array(&mut self, depth: usize) -> Result<PyValue, &'static str> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.eat("]") {
            return Ok(PyValue::List(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            if self.eat("]") {
                return Ok(PyValue::List(items));
            }
            if !self.eat(",") {
                return Err("expecting ',' delimiter");
            }
            self.skip_ws();
        }
    }

    fn number(&mut self) -> Result<PyValue, &'static str> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let from = p.pos;
            while p.bytes.get(p.pos).is_some_and(u8::is_ascii_digit) {
                p.pos += 1;
            }
            p.pos - from
        };
        if self.bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.bytes.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err("expecting a value"),
        }
        let mut is_float = false;
        if self.bytes.get(self.pos) == Some(&b'.')
            && self.bytes.get(self.pos + 1).is_some_and(u8::is_ascii_digit)
        {
            self.pos += 1;
            digits(self);
            is_float = true;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            let save = self.pos;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                // Not an exponent after all: Python's regex stops before it.
                self.pos = save;
            } else {
                is_float = true;
            }
        }
        let literal = &self.text[start..self.pos];
        if is_float {
            literal
                .parse()
                .map(PyValue::Float)
                .map_err(|_| "bad number")
        } else {
            literal.parse().map(PyValue::Int).map_err(|_| BEYOND_I128)
        }
    }

    fn hex4(&mut self) -> Result<u32, &'static str> {
        let hex = self
            .bytes
            .get(self.pos..self.pos + 4)
            .ok_or("invalid \\uXXXX escape")?;
        let mut n = 0u32;
        for &b in hex {
            let d = char::from(b).to_digit(16).ok_or("invalid \\uXXXX escape")?;
            n = n * 16 + d;
        }
        self.pos += 4;
        Ok(n)
    }

    fn string(&mut self) -> Result<String, &'static str> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(&b) = self.bytes.get(self.pos) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.text[start..self.pos]);
            match self.bytes.get(self.pos) {
                None => return Err("unterminated string"),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escape = *self.bytes.get(self.pos).ok_or("unterminated string")?;
                    self.pos += 1;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let mut code = self.hex4()?;
                            if (0xd800..0xdc00).contains(&code)
                                && self.bytes[self.pos..].starts_with(b"\\u")
                            {
                                let save = self.pos;
                                self.pos += 2;
                                let low = self.hex4()?;
                                if (0xdc00..0xe000).contains(&low) {
                                    code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
                                } else {
                                    self.pos = save;
                                }
                            }
                            out.push(char::from_u32(code).ok_or(LONE_SURROGATE)?);
                        }
                        _ => return Err("invalid escape in a string"),
                    }
                }
                Some(_) => return Err("invalid control character in a string"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(x: f64) -> String {
        let mut out = String::new();
        write_float(x, &mut out);
        out
    }

    #[test]
    fn floats_as_python_repr() {
        for (x, py) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (3.5, "3.5"),
            (1e-7, "1e-07"),
            (1e22, "1e+22"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123456.789, "123456.789"),
            (1.5e300, "1.5e+300"),
            (-2.5e-300, "-2.5e-300"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (9007199254740993.0, "9007199254740992.0"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(float(x), py, "{x:e}");
        }
    }

    #[test]
    fn strings_as_python_ensure_ascii() {
        let mut out = String::new();
        write_str("h\u{e9} \u{1F389}\t\u{7f}\u{1}\"\\/<", &mut out);
        assert_eq!(out, r#""h\u00e9 \ud83c\udf89\t\u007f\u0001\"\\/<""#);
    }

    #[test]
    fn parse_python_json() {
        let value =
            parse(r#" {"b": [1, 2.5, -0, 1e2, NaN], "a": "\ud83c\udf89\u00e9", "b": null} "#)
                .unwrap();
        let dict = value.as_dict().unwrap();
        assert_eq!(dict.keys().collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(dict.get("b"), Some(&PyValue::None));
        assert_eq!(
            dict.get("a").and_then(PyValue::as_str),
            Some("\u{1F389}\u{e9}")
        );
        for bad in [
            "",
            "01",
            "[1,]",
            "{'a':1}",
            "\"\u{1}\"",
            "[1] x",
            "\"\\ud800\"",
            "1.",
            "-",
            "{\"a\" 1}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse(&"[".repeat(MAX_DEPTH + 2)).is_err());
        assert_eq!(parse("1E+2").unwrap(), PyValue::Float(100.0));
    }
}
