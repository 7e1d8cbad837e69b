//! `@defer`: which fragments of an operation are deferred, the operation without them
//! (the initial response), and the subsequent payload built from the complete result
//! (the GraphQL incremental delivery format: `incremental: [{data, path, label}]`,
//! `hasNext`).
//!
//! The router plans the operation twice, once whole and once without its deferred
//! fragments, runs both at once and sends the second's result first: the initial
//! payload never waits for the fields that were deferred.

use graphql_tools::static_graphql::query::{
    Definition, Directive, Document, Field, Selection, SelectionSet, Value as QValue,
};
use serde_json::{Map, Value};

use crate::error::GraphQLError;

/// One deferred fragment: where it applies and the response keys it fills in.
#[derive(Debug, Clone)]
pub struct DeferredFragment {
    pub label: Option<String>,
    /// Response keys from the root to the selection set holding the fragment.
    pub path: Vec<String>,
    /// The response keys the fragment selects at that position.
    pub keys: Vec<String>,
}

/// How @defer applies to a directive list: not at all, always, or as a variable says.
enum DeferIf {
    No,
    Yes(Option<String>),
    Variable(String, Option<String>),
}

fn defer_of(directives: &[Directive]) -> DeferIf {
    let Some(d) = directives.iter().find(|d| d.name == "defer") else {
        return DeferIf::No;
    };
    let label = d.arguments.iter().find_map(|(n, v)| match (n.as_str(), v) {
        ("label", QValue::String(s)) => Some(s.clone()),
        _ => None,
    });
    match d.arguments.iter().find(|(n, _)| n == "if").map(|(_, v)| v) {
        Some(QValue::Boolean(false)) => DeferIf::No,
        Some(QValue::Variable(v)) => DeferIf::Variable(v.clone(), label),
        _ => DeferIf::Yes(label),
    }
}

/// Whether the document uses @defer at all (cheap pre-check on the text).
pub fn may_defer(query: &str) -> bool {
    query.contains("@defer")
}

fn fragment_selection<'d>(doc: &'d Document, name: &str) -> Option<&'d SelectionSet> {
    doc.definitions.iter().find_map(|d| match d {
        Definition::Fragment(f) if f.name == name => Some(&f.selection_set),
        _ => None,
    })
}

/// The deferred fragments under `selection` (at `path`), and the variables that can
/// turn one off. Fragments nested in a deferred one arrive with it.
pub fn collect(
    doc: &Document,
    selection: &SelectionSet,
    path: &mut Vec<String>,
    out: &mut Vec<DeferredFragment>,
    if_variables: &mut Vec<String>,
    depth: usize,
) {
    if depth > 64 {
        return;
    }
    for item in &selection.items {
        let (directives, inner) = match item {
            Selection::Field(f) => {
                path.push(f.alias.clone().unwrap_or_else(|| f.name.clone()));
                collect(doc, &f.selection_set, path, out, if_variables, depth + 1);
                path.pop();
                continue;
            }
            Selection::InlineFragment(i) => (&i.directives, Some(&i.selection_set)),
            Selection::FragmentSpread(s) => {
                (&s.directives, fragment_selection(doc, &s.fragment_name))
            }
        };
        let Some(inner) = inner else { continue };
        let label = match defer_of(directives) {
            DeferIf::No => {
                collect(doc, inner, path, out, if_variables, depth + 1);
                continue;
            }
            DeferIf::Yes(label) => label,
            DeferIf::Variable(v, label) => {
                if !if_variables.contains(&v) {
                    if_variables.push(v);
                }
                label
            }
        };
        let mut keys = Vec::new();
        response_keys(doc, inner, &mut keys, depth + 1);
        out.push(DeferredFragment {
            label,
            path: path.clone(),
            keys,
        });
    }
}

fn response_keys(doc: &Document, selection: &SelectionSet, keys: &mut Vec<String>, depth: usize) {
    if depth > 64 {
        return;
    }
    for item in &selection.items {
        match item {
            Selection::Field(f) => {
                let key = f.alias.as_deref().unwrap_or(&f.name);
                if !keys.iter().any(|k| k == key) {
                    keys.push(key.to_owned());
                }
            }
            Selection::InlineFragment(i) => response_keys(doc, &i.selection_set, keys, depth + 1),
            Selection::FragmentSpread(s) => {
                if let Some(inner) = fragment_selection(doc, &s.fragment_name) {
                    response_keys(doc, inner, keys, depth + 1);
                }
            }
        }
    }
}

fn selection_sets_mut(doc: &mut Document) -> Vec<&mut SelectionSet> {
    use graphql_tools::static_graphql::query::OperationDefinition as Op;
    doc.definitions
        .iter_mut()
        .map(|d| match d {
            Definition::Fragment(f) => &mut f.selection_set,
            Definition::Operation(Op::SelectionSet(s)) => s,
            Definition::Operation(Op::Query(q)) => &mut q.selection_set,
            Definition::Operation(Op::Mutation(m)) => &mut m.selection_set,
            Definition::Operation(Op::Subscription(s)) => &mut s.selection_set,
        })
        .collect()
}

/// Removes every @defer directive (subgraphs do not know it): the whole operation.
pub fn strip_directives(doc: &mut Document) {
    fn walk(selection: &mut SelectionSet) {
        for item in &mut selection.items {
            match item {
                Selection::Field(f) => walk(&mut f.selection_set),
                Selection::InlineFragment(i) => {
                    i.directives.retain(|d| d.name != "defer");
                    walk(&mut i.selection_set);
                }
                Selection::FragmentSpread(s) => s.directives.retain(|d| d.name != "defer"),
            }
        }
    }
    for s in selection_sets_mut(doc) {
        walk(s);
    }
}

/// The operation without its deferred fragments (every @defer whose `if` is not the
/// literal `false`), with the remaining @defer directives removed. With `fill`, a
/// selection set left empty gets `__typename`, so that the operation can be planned.
pub fn without_deferred(doc: &Document, fill: bool) -> Document {
    fn walk(selection: &mut SelectionSet, fill: bool) {
        let before = selection.items.len();
        selection.items.retain(|item| match item {
            Selection::InlineFragment(i) => matches!(defer_of(&i.directives), DeferIf::No),
            Selection::FragmentSpread(s) => matches!(defer_of(&s.directives), DeferIf::No),
            Selection::Field(_) => true,
        });
        for item in &mut selection.items {
            match item {
                Selection::Field(f) => walk(&mut f.selection_set, fill),
                Selection::InlineFragment(i) => walk(&mut i.selection_set, fill),
                Selection::FragmentSpread(_) => {}
            }
        }
        if fill && before > 0 && selection.items.is_empty() {
            selection.items.push(Selection::Field(Field {
                position: selection.span.0,
                alias: None,
                name: "__typename".to_owned(),
                arguments: Vec::new(),
                directives: Vec::new(),
                selection_set: SelectionSet {
                    span: (selection.span.0, selection.span.0),
                    items: Vec::new(),
                },
            }));
        }
    }
    let mut doc = doc.clone();
    for s in selection_sets_mut(&mut doc) {
        walk(s, fill);
    }
    strip_directives(&mut doc);
    doc
}

/// Whether the variables keep every conditional @defer on.
pub fn active(if_variables: &[String], variables: &Map<String, Value>) -> bool {
    if_variables
        .iter()
        .all(|v| variables.get(v).and_then(Value::as_bool).unwrap_or(true))
}

/// The subsequent payload: for each deferred fragment, its fields at every position
/// it applies to in the complete `data`, with the errors under that position that the
/// initial payload did not carry. Ends the stream (`hasNext: false`).
pub fn subsequent_payload(
    fragments: &[DeferredFragment],
    data: &Value,
    errors: &[GraphQLError],
    initial_errors: &[GraphQLError],
) -> Vec<u8> {
    let mut items: Vec<(Vec<Value>, Map<String, Value>)> = Vec::new();
    for fragment in fragments {
        let mut found = Vec::new();
        positions(data, &fragment.path, &mut Vec::new(), &mut found);
        for (path, obj) in found {
            let mut out = Map::new();
            out.insert(
                "data".to_owned(),
                Value::Object(
                    fragment
                        .keys
                        .iter()
                        .filter_map(|k| obj.get(k).map(|v| (k.clone(), v.clone())))
                        .collect(),
                ),
            );
            out.insert("path".to_owned(), Value::Array(path.clone()));
            if let Some(label) = &fragment.label {
                out.insert("label".to_owned(), Value::String(label.clone()));
            }
            items.push((path, out));
        }
    }
    let mut leftover = Vec::new();
    for e in errors.iter().filter(|e| !initial_errors.contains(e)) {
        let home = e.path.as_ref().and_then(|p| {
            items
                .iter_mut()
                .filter(|(path, _)| p.starts_with(path))
                .max_by_key(|(path, _)| path.len())
        });
        match home {
            Some((_, item)) => {
                let list = item
                    .entry("errors")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = list {
                    list.push(serde_json::to_value(e).unwrap_or(Value::Null));
                }
            }
            None => leftover.push(e),
        }
    }
    let mut payload = Map::new();
    payload.insert(
        "incremental".to_owned(),
        Value::Array(items.into_iter().map(|(_, i)| Value::Object(i)).collect()),
    );
    if !leftover.is_empty() {
        payload.insert(
            "errors".to_owned(),
            serde_json::to_value(leftover).unwrap_or(Value::Null),
        );
    }
    payload.insert("hasNext".to_owned(), Value::Bool(false));
    serde_json::to_vec(&Value::Object(payload)).expect("JSON values always serialize")
}

/// Every object at `path` in `value` (lists crossed, nulls skipped) with its concrete
/// response path.
fn positions<'v>(
    value: &'v Value,
    path: &[String],
    cur: &mut Vec<Value>,
    out: &mut Vec<(Vec<Value>, &'v Map<String, Value>)>,
) {
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                cur.push(Value::from(i));
                positions(item, path, cur, out);
                cur.pop();
            }
        }
        Value::Object(obj) => match path.split_first() {
            None => out.push((cur.clone(), obj)),
            Some((key, rest)) => {
                if let Some(child) = obj.get(key) {
                    cur.push(Value::String(key.clone()));
                    positions(child, rest, cur, out);
                    cur.pop();
                }
            }
        },
        _ => {}
    }
}

/// `body` (a JSON object) with `"hasNext": has_next` added.
pub fn with_has_next(body: &[u8], has_next: bool) -> Vec<u8> {
    let mut out = body.to_vec();
    if out.last() == Some(&b'}') {
        out.pop();
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(if has_next {
            b"\"hasNext\":true}"
        } else {
            b"\"hasNext\":false}"
        });
    }
    out
}
