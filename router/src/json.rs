//! The router's own JSON value for the execution hot path: subgraph answers are parsed
//! straight into it, merged into one data tree, and projected from it.
//!
//! `serde_json::Value` is built with `preserve_order` in this workspace, so each of its
//! objects is an `IndexMap` hashing every key with SipHash. GraphQL objects are small,
//! so here an object is a vector of entries searched linearly (no hashing at all), and
//! keys and strings are `CompactString`s (up to 24 bytes inline, without allocating).

use std::fmt;

use compact_str::CompactString;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Number, Value};

/// A key or a string of a [`JValue`].
pub type Str = CompactString;

#[derive(Debug, Clone, PartialEq, Default)]
pub enum JValue {
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    String(Str),
    Array(Vec<JValue>),
    Object(JObject),
}

/// A JSON object: its entries in order, each key once (a parsed object that repeats a
/// key keeps it at its first position with its last value, as `serde_json` does).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JObject(Vec<(Str, JValue)>);

impl JObject {
    pub fn new() -> Self {
        Self(Vec::new())
    }

    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&JValue> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut JValue> {
        self.0
            .iter_mut()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key`: in place when it is there (its position kept), else at the end.
    /// Returns the value it replaced.
    pub fn insert(&mut self, key: impl Into<Str> + AsRef<str>, value: JValue) -> Option<JValue> {
        match self.get_mut(key.as_ref()) {
            Some(slot) => Some(std::mem::replace(slot, value)),
            None => {
                self.0.push((key.into(), value));
                None
            }
        }
    }

    /// Removes `key`, the last entry taking its position (as `serde_json::Map::remove`
    /// does with `preserve_order`, so rewritten objects keep the same key order).
    pub fn remove(&mut self, key: &str) -> Option<JValue> {
        let i = self.0.iter().position(|(k, _)| k.as_str() == key)?;
        Some(self.0.swap_remove(i).1)
    }

    /// [`JObject::get`], trying the position in `hint` first and leaving there the
    /// position found: objects of one list usually share their layout, so a hint kept
    /// per selected field finds each key at the first try.
    pub fn get_hinted(&self, key: &str, hint: &std::cell::Cell<usize>) -> Option<&JValue> {
        if let Some((k, v)) = self.0.get(hint.get())
            && k.as_str() == key
        {
            return Some(v);
        }
        let i = self.0.iter().position(|(k, _)| k.as_str() == key)?;
        hint.set(i);
        Some(&self.0[i].1)
    }

    /// Appends an entry without looking for the key: the caller knows it is new.
    pub fn push(&mut self, key: Str, value: JValue) {
        self.0.push((key, value));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Str, &JValue)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl IntoIterator for JObject {
    type Item = (Str, JValue);
    type IntoIter = std::vec::IntoIter<(Str, JValue)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl FromIterator<(Str, JValue)> for JObject {
    fn from_iter<I: IntoIterator<Item = (Str, JValue)>>(iter: I) -> Self {
        let mut obj = JObject::new();
        for (k, v) in iter {
            obj.insert(k, v);
        }
        obj
    }
}

impl JValue {
    /// The member `key` of an object (`None` for anything else).
    pub fn get(&self, key: &str) -> Option<&JValue> {
        match self {
            JValue::Object(o) => o.get(key),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut JValue> {
        match self {
            JValue::Object(o) => o.get_mut(key),
            _ => None,
        }
    }

    /// The item `i` of an array (`None` for anything else).
    pub fn get_index_mut(&mut self, i: usize) -> Option<&mut JValue> {
        match self {
            JValue::Array(a) => a.get_mut(i),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            JValue::String(s) => Some(s.as_str()),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&JObject> {
        match self {
            JValue::Object(o) => Some(o),
            _ => None,
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self, JValue::Object(_))
    }

    pub fn take(&mut self) -> JValue {
        std::mem::take(self)
    }

    /// The `__typename` member of an object.
    pub fn typename(&self) -> Option<&str> {
        self.get("__typename").and_then(JValue::as_str)
    }
}

impl From<Value> for JValue {
    fn from(v: Value) -> Self {
        match v {
            Value::Null => JValue::Null,
            Value::Bool(b) => JValue::Bool(b),
            Value::Number(n) => JValue::Number(n),
            Value::String(s) => JValue::String(s.into()),
            Value::Array(items) => JValue::Array(items.into_iter().map(JValue::from).collect()),
            Value::Object(map) => JValue::Object(
                map.into_iter()
                    .map(|(k, v)| (Str::from(k), JValue::from(v)))
                    .collect(),
            ),
        }
    }
}

impl From<&JValue> for Value {
    fn from(v: &JValue) -> Self {
        match v {
            JValue::Null => Value::Null,
            JValue::Bool(b) => Value::Bool(*b),
            JValue::Number(n) => Value::Number(n.clone()),
            JValue::String(s) => Value::String(s.to_string()),
            JValue::Array(items) => Value::Array(items.iter().map(Value::from).collect()),
            JValue::Object(obj) => Value::Object(
                obj.iter()
                    .map(|(k, v)| (k.to_string(), Value::from(v)))
                    .collect(),
            ),
        }
    }
}

/// The bytes `serde_json` escapes in a string.
static ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Writes a GraphQL name (`[_A-Za-z][_0-9A-Za-z]*`, which JSON never escapes) as a
/// JSON string.
pub fn write_name(out: &mut Vec<u8>, name: &str) {
    out.reserve(name.len() + 2);
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.push(b'"');
}

/// Writes `s` as a JSON string, escaped as `serde_json` escapes it (only control
/// characters, quotes and backslashes); most strings need no escape and are copied as they are.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    if !s.bytes().any(|b| ESCAPED[usize::from(b)]) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
    }
}

/// Writes `v` as JSON (what `serde_json::to_writer` writes for it, without going
/// through a serializer for every value).
pub fn write_value(out: &mut Vec<u8>, v: &JValue) {
    match v {
        JValue::Null => out.extend_from_slice(b"null"),
        JValue::Bool(true) => out.extend_from_slice(b"true"),
        JValue::Bool(false) => out.extend_from_slice(b"false"),
        JValue::Number(n) => {
            serde_json::to_writer(&mut *out, n).expect("writing to a Vec cannot fail")
        }
        JValue::String(s) => write_str(out, s),
        JValue::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        JValue::Object(obj) => {
            out.push(b'{');
            for (i, (k, v)) in obj.0.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_value(out, v);
            }
            out.push(b'}');
        }
    }
}

impl fmt::Display for JValue {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl Serialize for JValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            JValue::Null => s.serialize_unit(),
            JValue::Bool(b) => s.serialize_bool(*b),
            JValue::Number(n) => n.serialize(s),
            JValue::String(x) => s.serialize_str(x),
            JValue::Array(items) => s.collect_seq(items),
            JValue::Object(obj) => {
                let mut map = s.serialize_map(Some(obj.len()))?;
                for (k, v) in &obj.0 {
                    map.serialize_entry(k.as_str(), v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for JValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JValueVisitor)
    }
}

struct JValueVisitor;

/// Which bit of the duplicate filter a key takes (from its length and end bytes).
fn key_bit(key: &str) -> u32 {
    let b = key.as_bytes();
    let first = u32::from(b.first().copied().unwrap_or(0));
    let last = u32::from(b.last().copied().unwrap_or(0));
    ((b.len() as u32).wrapping_mul(7) ^ first ^ (last << 2)) & 63
}

impl<'de> Visitor<'de> for JValueVisitor {
    type Value = JValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<JValue, E> {
        Ok(JValue::Null)
    }

    fn visit_none<E>(self) -> Result<JValue, E> {
        Ok(JValue::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<JValue, D::Error> {
        JValue::deserialize(d)
    }

    fn visit_bool<E>(self, b: bool) -> Result<JValue, E> {
        Ok(JValue::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<JValue, E> {
        Ok(JValue::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<JValue, E> {
        Ok(JValue::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<JValue, E> {
        Ok(Number::from_f64(n).map_or(JValue::Null, JValue::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<JValue, E> {
        Ok(JValue::String(Str::from(s)))
    }

    fn visit_string<E>(self, s: String) -> Result<JValue, E> {
        Ok(JValue::String(Str::from(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JValue, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element::<JValue>()? {
            items.push(item);
        }
        Ok(JValue::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JValue, A::Error> {
        let mut obj = JObject::with_capacity(map.size_hint().unwrap_or(0));
        // A 64-bit filter of the keys seen: only a key whose bit is set already is
        // looked for among the entries (almost never, in a GraphQL response).
        let mut seen = 0u64;
        while let Some(key) = map.next_key::<Str>()? {
            let value = map.next_value::<JValue>()?;
            let bit = 1u64 << key_bit(&key);
            if seen & bit != 0
                && let Some(slot) = obj.get_mut(&key)
            {
                *slot = value;
                continue;
            }
            seen |= bit;
            obj.push(key, value);
        }
        Ok(JValue::Object(obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json_text() {
        let text = r#"{"b":1,"a":[true,null,-2,1.5,"x\"y"],"c":{"z":{},"y":[]},"long key that does not fit inline":"é"}"#;
        let v: JValue = serde_json::from_str(text).expect("parses");
        assert_eq!(serde_json::to_string(&v).expect("writes"), text);
        let s: Value = serde_json::from_str(text).expect("parses");
        assert_eq!(JValue::from(s.clone()), v);
        assert_eq!(Value::from(&v), s);
    }

    #[test]
    fn a_repeated_key_keeps_its_first_position_and_last_value() {
        let text = r#"{"a":1,"b":2,"a":3,"ab":4,"ba":5,"b":6}"#;
        let v: JValue = serde_json::from_str(text).expect("parses");
        let s: Value = serde_json::from_str(text).expect("parses");
        assert_eq!(serde_json::to_string(&v).expect("writes"), s.to_string());
        assert_eq!(v.get("a"), Some(&JValue::Number(3.into())));
    }

    #[test]
    fn a_hint_finds_keys_at_other_positions_too() {
        let v: JValue = serde_json::from_str(r#"{"a":1,"b":2,"c":3}"#).expect("parses");
        let obj = v.as_object().expect("an object");
        let hint = std::cell::Cell::new(0);
        assert_eq!(obj.get_hinted("c", &hint), Some(&JValue::Number(3.into())));
        assert_eq!(hint.get(), 2);
        assert_eq!(obj.get_hinted("c", &hint), Some(&JValue::Number(3.into())));
        assert_eq!(obj.get_hinted("a", &hint), Some(&JValue::Number(1.into())));
        assert_eq!(obj.get_hinted("z", &hint), None);
        assert_eq!(hint.get(), 0);
    }

    #[test]
    fn written_json_is_what_serde_json_writes() {
        let text = r#"{"s":"tab\there \"q\" back\\slash \u0001 é 𝄞","n":[0,-1,18446744073709551615,1.5,1e300],"b":[true,false,null],"o":{}}"#;
        let v: JValue = serde_json::from_str(text).expect("parses");
        let mut out = Vec::new();
        write_value(&mut out, &v);
        let ours = String::from_utf8(out).expect("utf-8");
        assert_eq!(ours, serde_json::to_string(&v).expect("writes"));
    }

    #[test]
    fn remove_moves_the_last_entry_into_the_gap() {
        let JValue::Object(mut o) = serde_json::from_str(r#"{"a":1,"b":2,"c":3}"#).expect("parses")
        else {
            panic!("an object")
        };
        assert_eq!(o.remove("a"), Some(JValue::Number(1.into())));
        o.insert("d", JValue::Null);
        let text = serde_json::to_string(&JValue::Object(o)).expect("writes");
        assert_eq!(text, r#"{"c":3,"b":2,"d":null}"#);
    }
}
