//! A JSON writer whose output is byte-identical to JavaScript's
//! `JSON.stringify(JSON.parse(text))` — a fixed point of it — so that receivers which
//! re-serialize the parsed body before verifying the signature (the seed's Node/Express example)
//! still verify.
//!
//! What that takes, beyond compact output:
//! - numbers in ECMAScript `Number::toString` form (`1.0` → `1`, `1e21` → `1e+21`,
//!   `1.5e-7` → `1.5e-7`, `-0` → `0`), via `ryu-js`;
//! - every number parsed to the correctly rounded double, as `JSON.parse` does (serde_json's
//!   `float_roundtrip` feature; its default fast path can be one unit off);
//! - integers beyond ±2^53 written as the double JavaScript would turn them into (the publish API
//!   refuses such integers instead; see [`find_unsafe_integer`]);
//! - object keys that are array indices (`"0"`, `"7"`, `"4294967294"`) first, in ascending
//!   numeric order, then the other keys in insertion order — JavaScript's property order;
//! - strings escaped as `JSON.stringify` does: `\"`, `\\`, `\b \f \n \r \t`, other control
//!   characters as `\u00xx`, everything else (U+2028/2029 included) as UTF-8. That is also what
//!   serde_json writes, so strings go through serde_json.

use serde_json::{Map, Number, Value};

/// The largest integer a JavaScript number holds exactly (2^53 − 1).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// `value` as compact JSON that JavaScript's `JSON.stringify(JSON.parse(…))` leaves unchanged.
#[must_use]
pub fn to_js_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_value(&mut out, value);
    out
}

/// Appends `value` to `out`.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(out, map),
    }
}

/// Writes a JSON string the way `JSON.stringify` does.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    // serde_json's escaping matches JSON.stringify's for every Rust string (which cannot hold
    // the lone surrogates the two would otherwise differ on).
    serde_json::to_writer(&mut *out, s).unwrap_or_default();
}

fn write_number(out: &mut Vec<u8>, n: &Number) {
    if let Some(u) = n.as_u64() {
        if u <= MAX_SAFE_INTEGER {
            out.extend_from_slice(u.to_string().as_bytes());
            return;
        }
    } else if let Some(i) = n.as_i64()
        && i.unsigned_abs() <= MAX_SAFE_INTEGER
    {
        out.push(b'-');
        out.extend_from_slice(i.unsigned_abs().to_string().as_bytes());
        return;
    }
    // A float, or an integer JavaScript can only hold as the nearest double.
    let f = n.as_f64().unwrap_or(0.0);
    let mut buf = ryu_js::Buffer::new();
    out.extend_from_slice(buf.format(f).as_bytes());
}

/// The array index a property key denotes in JavaScript, if any: the canonical decimal form of
/// an integer below 2^32 − 1.
fn array_index(key: &str) -> Option<u32> {
    if key.is_empty() || key.len() > 10 || (key.len() > 1 && key.starts_with('0')) {
        return None;
    }
    if !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    key.parse::<u64>()
        .ok()
        .filter(|&n| n < u64::from(u32::MAX))
        .and_then(|n| u32::try_from(n).ok())
}

fn write_object(out: &mut Vec<u8>, map: &Map<String, Value>) {
    out.push(b'{');
    let mut first = true;
    let mut entry = |out: &mut Vec<u8>, k: &str, v: &Value| {
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(out, k);
        out.push(b':');
        write_value(out, v);
    };
    let mut indices: Vec<(u32, &String, &Value)> = map
        .iter()
        .filter_map(|(k, v)| array_index(k).map(|i| (i, k, v)))
        .collect();
    if indices.is_empty() {
        for (k, v) in map {
            entry(out, k, v);
        }
    } else {
        indices.sort_unstable_by_key(|(i, _, _)| *i);
        for (_, k, v) in &indices {
            entry(out, k, v);
        }
        for (k, v) in map.iter().filter(|(k, _)| array_index(k).is_none()) {
            entry(out, k, v);
        }
    }
    out.push(b'}');
}

/// The path of the first integer in `value` that JavaScript cannot hold exactly (beyond
/// ±(2^53 − 1)), e.g. `data.metadata.order_id`.
///
/// Linear in the size of `value`: the path is built only for the integer found, from a stack of
/// borrowed segments, never as a string per visited element (a long key over a wide array made
/// that quadratic).
#[must_use]
pub fn find_unsafe_integer(value: &Value, root: &str) -> Option<String> {
    enum Seg<'a> {
        Key(&'a str),
        Index(usize),
    }
    fn walk<'a>(value: &'a Value, path: &mut Vec<Seg<'a>>) -> bool {
        match value {
            Value::Number(n) => {
                n.as_u64().is_some_and(|u| u > MAX_SAFE_INTEGER)
                    || n.as_i64()
                        .is_some_and(|i| i.unsigned_abs() > MAX_SAFE_INTEGER)
            }
            Value::Array(items) => items.iter().enumerate().any(|(i, v)| {
                path.push(Seg::Index(i));
                let found = walk(v, path);
                if !found {
                    path.pop();
                }
                found
            }),
            Value::Object(map) => map.iter().any(|(k, v)| {
                path.push(Seg::Key(k));
                let found = walk(v, path);
                if !found {
                    path.pop();
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = Vec::new();
    if !walk(value, &mut path) {
        return None;
    }
    let mut out = root.to_string();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    Some(out)
}

/// `text` with every integer literal beyond ±2^53 (outside strings) turned into a string of its
/// digits, so parsing it loses no digit: how bodies received from other systems keep their big
/// ids (a JavaScript receiver could not hold them as numbers). One pass; borrowed when nothing
/// changes. Not a validator: malformed JSON stays malformed.
#[must_use]
pub fn quote_big_integers(text: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let is_big = |digits: &[u8]| {
        digits.len() > 16
            || (digits.len() == 16
                && std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse::<u64>().ok())
                    .is_some_and(|n| n > MAX_SAFE_INTEGER))
    };
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    let mut in_string = false;
    while i < text.len() {
        let b = text[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                let digits_from = if b == b'-' { i + 1 } else { i };
                let mut end = digits_from;
                while end < text.len() && text[end].is_ascii_digit() {
                    end += 1;
                }
                let fraction = end < text.len() && matches!(text[end], b'.' | b'e' | b'E');
                let mut token_end = end;
                while token_end < text.len()
                    && matches!(
                        text[token_end],
                        b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-'
                    )
                {
                    token_end += 1;
                }
                if !fraction && is_big(&text[digits_from..end]) {
                    let buf = out.get_or_insert_with(|| Vec::with_capacity(text.len() + 16));
                    buf.extend_from_slice(&text[copied..start]);
                    buf.push(b'"');
                    buf.extend_from_slice(&text[start..end]);
                    buf.push(b'"');
                    copied = end;
                }
                i = token_end;
            }
            _ => i += 1,
        }
    }
    match out {
        Some(mut buf) => {
            buf.extend_from_slice(&text[copied..]);
            std::borrow::Cow::Owned(buf)
        }
        None => std::borrow::Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_integers_become_strings_of_their_digits() {
        let q = |t: &str| {
            String::from_utf8(quote_big_integers(t.as_bytes()).into_owned()).expect("utf8")
        };
        assert_eq!(
            q(r#"{"id":12345678901234567890123,"n":9007199254740991,"m":-9007199254740993}"#),
            r#"{"id":"12345678901234567890123","n":9007199254740991,"m":"-9007199254740993"}"#
        );
        assert_eq!(
            q(r#"{"s":"12345678901234567890 \"9007199254740993\"","f":1.2345678901234567890e3}"#),
            r#"{"s":"12345678901234567890 \"9007199254740993\"","f":1.2345678901234567890e3}"#
        );
        assert!(matches!(
            quote_big_integers(b"[1,2,3]"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    fn js(text: &str) -> String {
        let v: Value = serde_json::from_str(text).expect("json");
        String::from_utf8(to_js_json(&v)).expect("utf8")
    }

    #[test]
    fn numbers_as_ecmascript_prints_them() {
        let cases = [
            ("1.0", "1"),
            ("-0", "0"),
            ("-0.0", "0"),
            ("1e21", "1e+21"),
            ("1E21", "1e+21"),
            ("123456789012345678901234567890", "1.2345678901234568e+29"),
            ("1e20", "100000000000000000000"),
            ("1.5e-7", "1.5e-7"),
            ("0.000001", "0.000001"),
            ("0.0000001", "1e-7"),
            ("1694046470.93", "1694046470.93"),
            ("0.1", "0.1"),
            ("2.5e+3", "2500"),
            ("9007199254740991", "9007199254740991"),
            ("9007199254740993", "9007199254740992"),
            ("-9007199254740993", "-9007199254740992"),
            ("18446744073709551615", "18446744073709552000"),
            ("-42", "-42"),
        ];
        for (input, want) in cases {
            assert_eq!(js(input), want, "{input}");
        }
    }

    #[test]
    fn strings_escape_like_json_stringify() {
        assert_eq!(js(r#""a\"b\\c\/d""#), r#""a\"b\\c/d""#);
        assert_eq!(
            js(r#""\b\f\n\r\t\u0001\u001f\u007f""#),
            "\"\\b\\f\\n\\r\\t\\u0001\\u001f\u{7f}\""
        );
        assert_eq!(
            js(r#""\u2028\u2029 é ☃ 𝄞 \ud834\udd1e""#),
            "\"\u{2028}\u{2029} é ☃ 𝄞 𝄞\""
        );
        assert_eq!(js(r#""<script>""#), r#""<script>""#);
    }

    #[test]
    fn integer_like_keys_come_first_in_numeric_order() {
        assert_eq!(
            js(r#"{"b":1,"2":2,"a":3,"10":4,"1":5}"#),
            r#"{"1":5,"2":2,"10":4,"b":1,"a":3}"#
        );
        assert_eq!(
            js(r#"{"01":1,"-1":2,"1.5":3,"4294967295":4,"4294967294":5}"#),
            r#"{"4294967294":5,"01":1,"-1":2,"1.5":3,"4294967295":4}"#
        );
        // A repeated key keeps its first position and its last value, as JSON.parse does.
        assert_eq!(js(r#"{"a":1,"b":2,"a":3}"#), r#"{"a":3,"b":2}"#);
    }

    #[test]
    fn nested_structures_are_compact() {
        assert_eq!(
            js("[ 1 , { \"x\" : [ ] , \"y\" : { } } , null , true ]"),
            r#"[1,{"x":[],"y":{}},null,true]"#
        );
    }

    #[test]
    fn unsafe_integers_are_found_by_path() {
        let v: Value =
            serde_json::from_str(r#"{"a":[1,{"b":9007199254740993}],"c":1.5}"#).expect("json");
        assert_eq!(
            find_unsafe_integer(&v, "data"),
            Some("data.a[1].b".to_string())
        );
        let deep: Value =
            serde_json::from_str(r#"[[0,{"x":[1,[2,-9007199254740992]]}]]"#).expect("json");
        assert_eq!(
            find_unsafe_integer(&deep, "m"),
            Some("m[0][1].x[1][1]".to_string())
        );
        let ok: Value = serde_json::from_str(r#"{"a":9007199254740991,"f":1e300}"#).expect("json");
        assert_eq!(find_unsafe_integer(&ok, "data"), None);
    }
}
