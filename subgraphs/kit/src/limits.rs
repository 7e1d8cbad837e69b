//! Input limits every subgraph applies before async-graphql executes a request, on HTTP
//! and websockets alike (the executor is wrapped): a document nested deeper than
//! `max_nesting` brackets, or with more than `max_aliases` aliases, is refused with
//! `QUERY_TOO_COMPLEX`. Both are counted in one linear scan of the text, so a hostile
//! document (a list nested 2,000 deep is 4 KB) costs microseconds and never reaches the
//! recursive parser, whose stack it would overflow. A document that passes is parsed
//! once more to count its root fields (fragments at the root included): each root field
//! is a resolver that may hit the database, so more than `max_root_fields` in one
//! operation is refused the same way before any of them runs.

use std::future::Future;
use std::sync::Arc;

use async_graphql::{Data, ErrorExtensions, Executor, Request, Response};
use futures::StreamExt;
use futures::stream::BoxStream;

/// The limits of one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    /// Brackets (`{`, `[`, `(`) open at once.
    pub max_nesting: usize,
    /// Aliased fields.
    pub max_aliases: usize,
    /// Fields selected at the root of one operation (the router's own default is 64, and
    /// a router fetch never selects more root fields than its client did).
    pub max_root_fields: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            max_nesting: 64,
            max_aliases: 128,
            max_root_fields: 64,
        }
    }
}

/// What one scan of a document found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub nesting: usize,
    pub aliases: usize,
    /// Names (identifiers outside strings and comments): every field selected, at the
    /// root or not, is one, so no operation has more root fields than this.
    pub names: usize,
}

/// Measures a GraphQL document's bracket nesting and alias count, skipping strings,
/// block strings and comments. An alias is a `:` in a selection (outside any
/// parentheses, where arguments, variables and their defaults live).
pub fn shape(text: &str) -> Shape {
    let bytes = text.as_bytes();
    let mut out = Shape::default();
    let (mut depth, mut parens) = (0usize, 0usize);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if bytes[i] == b'(' {
                    parens += 1;
                }
                out.nesting = out.nesting.max(depth);
            }
            b'}' | b']' | b')' => {
                depth = depth.saturating_sub(1);
                if bytes[i] == b')' {
                    parens = parens.saturating_sub(1);
                }
            }
            b':' if parens == 0 => out.aliases += 1,
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                out.names += 1;
                while i + 1 < bytes.len()
                    && matches!(bytes[i + 1], b'_' | b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9')
                {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

impl InputLimits {
    /// The refusal of a document past a limit, if it is.
    pub fn check(&self, text: &str) -> Option<Response> {
        let s = shape(text);
        let (what, actual, max) = if s.nesting > self.max_nesting {
            ("nesting", s.nesting, self.max_nesting)
        } else if s.aliases > self.max_aliases {
            ("aliases", s.aliases, self.max_aliases)
        } else if s.names <= self.max_root_fields {
            // Too few names for too many root fields: no need to parse.
            return None;
        } else {
            match root_fields(text) {
                Some(n) if n > self.max_root_fields => ("root fields", n, self.max_root_fields),
                // A document that does not parse is left to the executor's own error.
                _ => return None,
            }
        };
        let error = async_graphql::Error::new(format!(
            "Operation {what} {actual} exceeds the limit of {max}."
        ))
        .extend_with(|_, ext| {
            ext.set("code", crate::ErrorCode::QueryTooComplex.as_str());
            ext.set("limit", what);
            ext.set("max", max as u64);
        });
        Some(Response::from_errors(vec![
            error.into_server_error(async_graphql::Pos::default()),
        ]))
    }
}

/// The most root fields any one operation of `text` selects, counting the root fields
/// of fragments spread (or inlined) at the root; `None` when the text does not parse.
pub fn root_fields(text: &str) -> Option<usize> {
    use async_graphql::parser::types::{DocumentOperations, Selection, SelectionSet};
    use std::collections::HashMap;

    let doc = async_graphql::parser::parse_query(text).ok()?;
    let fragments: HashMap<&str, &SelectionSet> = doc
        .fragments
        .iter()
        .map(|(name, f)| (name.as_str(), &f.node.selection_set.node))
        .collect();
    // Fragments are expanded at most once per operation: a cycle or a fragment spread
    // twice cannot multiply the count (and a cycle is the executor's error to report).
    fn count<'a>(
        set: &'a SelectionSet,
        fragments: &HashMap<&'a str, &'a SelectionSet>,
        seen: &mut Vec<&'a str>,
    ) -> usize {
        set.items
            .iter()
            .map(|s| match &s.node {
                Selection::Field(_) => 1,
                Selection::InlineFragment(f) => count(&f.node.selection_set.node, fragments, seen),
                Selection::FragmentSpread(s) => {
                    let name = s.node.fragment_name.node.as_str();
                    match fragments.get_key_value(name) {
                        Some((key, inner)) if !seen.contains(key) => {
                            seen.push(key);
                            count(inner, fragments, seen)
                        }
                        _ => 0,
                    }
                }
            })
            .sum()
    }
    let per_operation = |set: &SelectionSet| count(set, &fragments, &mut Vec::new());
    Some(match &doc.operations {
        DocumentOperations::Single(op) => per_operation(&op.node.selection_set.node),
        DocumentOperations::Multiple(ops) => ops
            .values()
            .map(|op| per_operation(&op.node.selection_set.node))
            .max()
            .unwrap_or(0),
    })
}

/// An executor that applies [`InputLimits`] before the inner one parses anything.
#[derive(Clone)]
pub struct Guarded<E> {
    inner: E,
    limits: InputLimits,
}

impl<E> Guarded<E> {
    pub fn new(inner: E, limits: InputLimits) -> Self {
        Guarded { inner, limits }
    }
}

impl<E: Executor> Executor for Guarded<E> {
    fn execute(&self, request: Request) -> impl Future<Output = Response> + Send {
        let refusal = self.limits.check(&request.query);
        let inner = self.inner.clone();
        async move {
            match refusal {
                Some(r) => r,
                None => inner.execute(request).await,
            }
        }
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        match self.limits.check(&request.query) {
            Some(r) => futures::stream::once(async move { r }).boxed(),
            None => self.inner.execute_stream(request, session_data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_and_aliases_are_counted_outside_strings_and_arguments() {
        let s = shape(
            r#"query($a: Int = 1) { x: me(f: {a: "}}}:"}) { y: id # z: w {
            } }"#,
        );
        assert_eq!(
            s,
            Shape {
                nesting: 3,
                aliases: 2,
                // query a Int x me f a y id: not the string's or the comment's words.
                names: 9,
            }
        );
        let deep = format!("{{ f(a: {}{}) }}", "[".repeat(2000), "]".repeat(2000));
        assert_eq!(shape(&deep).nesting, 2002);
        let block = "{ f(a: \"\"\"{{{{ x: y\"\"\") }";
        assert_eq!(
            shape(block),
            Shape {
                nesting: 2,
                aliases: 0,
                names: 2,
            }
        );
    }

    #[test]
    fn documents_past_a_limit_are_refused_with_a_code() {
        let limits = InputLimits::default();
        assert!(limits.check("{ me { id } }").is_none());
        let deep = format!("{{ f(a: {}{}) }}", "[".repeat(2000), "]".repeat(2000));
        let r = limits.check(&deep).expect("refused");
        let e = &r.errors[0];
        let code = e.extensions.as_ref().and_then(|x| x.get("code")).cloned();
        assert_eq!(code, Some(async_graphql::Value::from("QUERY_TOO_COMPLEX")));
        let aliases: String = (0..200).map(|i| format!("a{i}: me ")).collect();
        assert!(limits.check(&format!("{{ {aliases} }}")).is_some());
    }

    #[test]
    fn root_fields_are_counted_through_fragments_and_limited() {
        assert_eq!(root_fields("{ a b { c d } }"), Some(2));
        assert_eq!(
            root_fields("query { a ...F ... on Query { b } } fragment F on Query { c d { e } }"),
            Some(4)
        );
        // A fragment spread twice or in a cycle counts once.
        assert_eq!(
            root_fields(
                "{ ...F ...F } fragment F on Query { a ...G } fragment G on Query { b ...F }"
            ),
            Some(2)
        );
        assert_eq!(root_fields("query A { a } query B { a b c }"), Some(3));
        assert_eq!(root_fields("{ a"), None);

        let limits = InputLimits::default();
        // 65 root fields without aliases: the same field with different arguments.
        let many: String = (0..65).map(|i| format!("me(n: {i}) ")).collect();
        let r = limits.check(&format!("{{ {many} }}")).expect("refused");
        let ext = r.errors[0].extensions.as_ref().expect("extensions");
        assert_eq!(
            ext.get("code"),
            Some(&async_graphql::Value::from("QUERY_TOO_COMPLEX"))
        );
        assert_eq!(
            ext.get("limit"),
            Some(&async_graphql::Value::from("root fields"))
        );
        let fine: String = (0..64).map(|i| format!("me(n: {i}) ")).collect();
        assert!(limits.check(&format!("{{ {fine} }}")).is_none());
    }
}
