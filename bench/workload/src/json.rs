//! A tiny JSON writer: just enough to print one object per line.
//!
//! Why not `serde_json`? The workload is measured, so it should be small and start fast:
//! serde + serde_json add tens of KiB of code and generic machinery to a binary whose only
//! JSON need is to print a handful of flat objects. The one part that must be right is
//! string escaping, and that is ~20 lines here, unit-tested against `serde_json` (a
//! dev-dependency only) below.

use std::fmt::Write as _;

/// A JSON value. Objects keep their keys in insertion order (so `"mode"` stays first).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    /// Finite floats print with three decimals; NaN and infinities print as `null`.
    Float(f64),
    Str(String),
    Array(Vec<Value>),
    Object(Object),
}

/// A JSON object builder with ordered keys.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Object(Vec<(String, Value)>);

impl Object {
    /// An object whose first key is `"mode"`, as every final line of the workload has.
    pub fn mode(mode: &str) -> Self {
        Object::default().with("mode", mode)
    }

    /// Appends `key: value` and returns the object (builder style).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.push((key.to_owned(), value.into()));
        self
    }

    /// Appends `key: value` in place.
    pub fn push(&mut self, key: &str, value: impl Into<Value>) {
        self.0.push((key.to_owned(), value.into()));
    }

    /// Renders the object as one line of JSON (no trailing newline).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(128);
        write_object(&mut out, self);
        out
    }
}

impl Value {
    /// Appends this value's JSON text to `out`.
    pub fn write_to(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Uint(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Float(f) if f.is_finite() => {
                // `{:.3}` never uses an exponent, so this is always a valid JSON number.
                let _ = write!(out, "{f:.3}");
            }
            Value::Float(_) => out.push_str("null"),
            Value::Str(s) => write_str(out, s),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_to(out);
                }
                out.push(']');
            }
            Value::Object(obj) => write_object(out, obj),
        }
    }
}

fn write_object(out: &mut String, obj: &Object) {
    out.push('{');
    for (i, (key, value)) in obj.0.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, key);
        out.push(':');
        value.write_to(out);
    }
    out.push('}');
}

/// Writes `s` as a JSON string literal: `"` and `\` are backslash-escaped, the control
/// characters U+0000..U+001F (and DEL) become `\n`, `\t`, ... or `\u00XX`; everything else,
/// including non-ASCII, is copied as UTF-8 (valid JSON, RFC 8259 section 7).
pub fn write_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}
impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Value::Uint(n)
    }
}
impl From<u32> for Value {
    fn from(n: u32) -> Self {
        Value::Uint(n.into())
    }
}
impl From<usize> for Value {
    fn from(n: usize) -> Self {
        Value::Uint(n as u64)
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}
impl From<Object> for Value {
    fn from(o: Object) -> Self {
        Value::Object(o)
    }
}
impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(items: Vec<T>) -> Self {
        Value::Array(items.into_iter().map(Into::into).collect())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> String {
        let mut out = String::new();
        write_str(&mut out, s);
        out
    }

    #[test]
    fn escapes_quotes_backslashes_and_controls() {
        assert_eq!(lit("plain"), r#""plain""#);
        assert_eq!(lit(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(lit("l1\nl2\r\t"), r#""l1\nl2\r\t""#);
        assert_eq!(
            lit("\u{0}\u{1}\u{1f}\u{7f}"),
            r#""\u0000\u0001\u001f\u007f""#
        );
        assert_eq!(lit("\u{8}\u{c}"), r#""\b\f""#);
        assert_eq!(lit("/ é ✓ 😀"), "\"/ é ✓ 😀\"");
        assert_eq!(lit(""), r#""""#);
    }

    #[test]
    fn every_char_below_256_round_trips_through_serde_json() {
        let all: String = (0u32..256).filter_map(char::from_u32).collect();
        let text = lit(&all);
        let back: String = serde_json::from_str(&text).expect("valid JSON string");
        assert_eq!(back, all);
        // No raw control character may survive escaping.
        assert!(!text.chars().any(|c| (c as u32) < 0x20));
    }

    #[test]
    fn keys_are_escaped_and_order_is_kept() {
        let line = Object::mode("x")
            .with("we\"ird", 1u64)
            .with("b", true)
            .render();
        assert_eq!(line, r#"{"mode":"x","we\"ird":1,"b":true}"#);
    }

    #[test]
    fn renders_all_value_kinds() {
        let line = Object::mode("m")
            .with("null", Value::Null)
            .with("neg", -3i64)
            .with("big", u64::MAX)
            .with("f", 1.5f64)
            .with("nan", f64::NAN)
            .with("inf", f64::INFINITY)
            .with("none", None::<u64>)
            .with("some", Some("s"))
            .with("arr", vec![vec![0u64, 1, 2], vec![]])
            .with("obj", Object::default().with("k", "v"))
            .render();
        assert_eq!(
            line,
            r#"{"mode":"m","null":null,"neg":-3,"big":18446744073709551615,"f":1.500,"nan":null,"inf":null,"none":null,"some":"s","arr":[[0,1,2],[]],"obj":{"k":"v"}}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(parsed["big"], serde_json::json!(u64::MAX));
        assert_eq!(parsed["f"], serde_json::json!(1.5));
    }

    #[test]
    fn large_and_tiny_floats_stay_plain_numbers() {
        for f in [1e300, 1e-300, -0.0, 123_456.789] {
            let mut out = String::new();
            Value::Float(f).write_to(&mut out);
            assert!(!out.contains('e'), "{out}");
            let _: f64 = serde_json::from_str(&out).expect("valid JSON number");
        }
    }
}
