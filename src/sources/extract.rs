//! Reading a few values out of a body without building it: one pass over the JSON that follows
//! only the wanted pointers and skips everything else unbuilt (serde's `IgnoredAny`), so the hot
//! path's cost is the scan, not a tree. Form bodies (`application/x-www-form-urlencoded`) are read
//! as an object of their fields.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A JSON pointer split into its unescaped segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer(Vec<String>);

impl Pointer {
    /// `"/event/type"` → `["event", "type"]` (`~1` is `/`, `~0` is `~`).
    #[must_use]
    pub fn new(pointer: &str) -> Self {
        Self(
            pointer
                .split('/')
                .skip(1)
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect(),
        )
    }
}

/// A scalar as text: strings as they are, numbers and booleans as written; objects, arrays and
/// null are not scalars.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The scalar at each of `pointers` in the JSON `body` (`None` where absent or not a scalar).
///
/// # Errors
/// When `body` is not JSON.
pub fn json(body: &[u8], pointers: &[&Pointer]) -> Result<Vec<Option<String>>, serde_json::Error> {
    let mut out = vec![None; pointers.len()];
    let active: Vec<usize> = (0..pointers.len()).collect();
    let mut de = serde_json::Deserializer::from_slice(body);
    Walker {
        pointers,
        depth: 0,
        active,
        out: &mut out,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(out)
}

/// The values of a form body's fields named by one-segment pointers (`/command`).
#[must_use]
pub fn form(body: &[u8], pointers: &[&Pointer]) -> Vec<Option<String>> {
    let mut out = vec![None; pointers.len()];
    for (k, v) in url::form_urlencoded::parse(body) {
        for (i, p) in pointers.iter().enumerate() {
            if out[i].is_none() && p.0.len() == 1 && p.0[0] == k {
                out[i] = Some(v.to_string());
            }
        }
    }
    out
}

/// A form body as an object of its fields (a repeated field keeps its last value).
#[must_use]
pub fn form_object(body: &[u8]) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        m.insert(k.into_owned(), Value::String(v.into_owned()));
    }
    Value::Object(m)
}

/// Follows the pointers in `active` (all of which matched the path so far, `depth` segments).
struct Walker<'a> {
    pointers: &'a [&'a Pointer],
    depth: usize,
    active: Vec<usize>,
    out: &'a mut [Option<String>],
}

impl Walker<'_> {
    /// Which active pointers go on through `segment`, and whether one of them ends there.
    fn through(&self, segment: &str) -> (Vec<usize>, bool) {
        let next: Vec<usize> = self
            .active
            .iter()
            .copied()
            .filter(|&i| {
                self.pointers[i]
                    .0
                    .get(self.depth)
                    .is_some_and(|s| s == segment)
            })
            .collect();
        let ends = next
            .iter()
            .any(|&i| self.pointers[i].0.len() == self.depth + 1);
        (next, ends)
    }

    /// Stores what the pointers in `next` find in `value`, the node at `depth + 1` segments.
    fn take_from(&mut self, next: &[usize], value: &Value) {
        for &i in next {
            let rest = &self.pointers[i].0[self.depth + 1..];
            let mut v = Some(value);
            for seg in rest {
                v = v.and_then(|v| match v {
                    Value::Object(m) => m.get(seg),
                    Value::Array(a) => seg.parse::<usize>().ok().and_then(|n| a.get(n)),
                    _ => None,
                });
            }
            if self.out[i].is_none() {
                self.out[i] = v.and_then(scalar);
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walker<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walker<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            let (next, ends) = self.through(&key);
            if next.is_empty() {
                map.next_value::<IgnoredAny>()?;
            } else if ends {
                let value: Value = map.next_value()?;
                self.take_from(&next, &value);
            } else {
                map.next_value_seed(Walker {
                    pointers: self.pointers,
                    depth: self.depth + 1,
                    active: next,
                    out: self.out,
                })?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        loop {
            let (next, ends) = self.through(&index.to_string());
            let more = if next.is_empty() {
                seq.next_element::<IgnoredAny>()?.is_some()
            } else if ends {
                match seq.next_element::<Value>()? {
                    Some(value) => {
                        self.take_from(&next, &value);
                        true
                    }
                    None => false,
                }
            } else {
                seq.next_element_seed(Walker {
                    pointers: self.pointers,
                    depth: self.depth + 1,
                    active: next,
                    out: self.out,
                })?
                .is_some()
            };
            if !more {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(body: &str, pointers: &[&str]) -> Vec<Option<String>> {
        let ps: Vec<Pointer> = pointers.iter().map(|p| Pointer::new(p)).collect();
        let refs: Vec<&Pointer> = ps.iter().collect();
        json(body.as_bytes(), &refs).expect("json")
    }

    #[test]
    fn finds_nested_values_in_one_pass() {
        let body = r#"{"id":"evt_1","data":{"object":{"big":[1,2]}},"event":{"type":"message","n":3},"type":"event_callback","list":[{"x":"a"},{"x":"b"}],"t":true}"#;
        assert_eq!(
            get(
                body,
                &[
                    "/id",
                    "/event/type",
                    "/type",
                    "/missing",
                    "/list/1/x",
                    "/event/n",
                    "/t",
                    "/data"
                ]
            ),
            vec![
                Some("evt_1".into()),
                Some("message".into()),
                Some("event_callback".into()),
                None,
                Some("b".into()),
                Some("3".into()),
                Some("true".into()),
                None
            ]
        );
    }

    #[test]
    fn a_pointer_that_ends_where_another_goes_on() {
        assert_eq!(
            get(r#"{"event":{"type":"x"}}"#, &["/event", "/event/type"]),
            vec![None, Some("x".into())]
        );
        assert_eq!(
            get(r#"{"a/b":{"~":1}}"#, &["/a~1b/~0"]),
            vec![Some("1".into())]
        );
    }

    #[test]
    fn not_json_is_an_error_and_forms_are_fields() {
        assert!(json(b"token=x&team_id=T1", &[]).is_err());
        assert!(json(br#"{"a":1} trailing"#, &[]).is_err());
        let p = Pointer::new("/command");
        assert_eq!(
            form(b"token=x&command=%2Fweather", &[&p]),
            vec![Some("/weather".into())]
        );
        assert_eq!(form_object(b"a=1&b=two+words")["b"], "two words");
    }
}
