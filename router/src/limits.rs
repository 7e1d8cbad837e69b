//! Operation limits checked before planning: depth, aliases, root fields and an
//! estimated cost where list fields multiply their children by `first`/`limit`.

use std::collections::HashMap;

use graphql_tools::static_graphql::query::{FragmentDefinition, Selection, SelectionSet, Value};
use graphql_tools::static_graphql::schema::Type;

use crate::config::LimitsConfig;
use crate::error::{GraphQLError, codes};
use crate::schema::{SchemaIndex, named_type};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Measure {
    pub depth: usize,
    pub aliases: usize,
    pub root_fields: usize,
    pub cost: u64,
}

/// The largest measure of every operation and every fragment of a document, each on
/// its own root or type condition, in one linear walk: each fragment is walked once and
/// its measure reused at every spread (a fragment spreading another twice, N deep,
/// costs N walks, not 2^N), and a spread cycle counts nothing (validation reports it): what [`check`] looks at before validation, so a
/// document built to be expensive is refused before anything walks it twice.
pub fn measure_document(
    schema: &SchemaIndex,
    operations: &[(&str, &SelectionSet)],
    fragments: &HashMap<String, FragmentDefinition>,
    default_list_size: u64,
) -> Measure {
    let mut walker = Walker::new(schema, fragments, default_list_size);
    let mut worst = Measure::default();
    for (root_type, selection) in operations {
        worst = worst.max(walker.selection(root_type, selection));
    }
    let mut names: Vec<&String> = fragments.keys().collect();
    names.sort();
    for name in names {
        let m = walker.fragment(name);
        worst = worst.max(Measure {
            depth: m.depth,
            aliases: m.aliases,
            root_fields: 0,
            cost: m.cost,
        });
    }
    worst
}

impl Measure {
    fn max(self, other: Measure) -> Measure {
        Measure {
            depth: self.depth.max(other.depth),
            aliases: self.aliases.max(other.aliases),
            root_fields: self.root_fields.max(other.root_fields),
            cost: self.cost.max(other.cost),
        }
    }
}

/// The measure of one selection set, relative to it.
#[derive(Debug, Default, Clone, Copy)]
struct Part {
    depth: usize,
    cost: u64,
    aliases: usize,
    /// Fields at this level once fragments are expanded (root fields at the root).
    fields: usize,
}

struct Walker<'a> {
    schema: &'a SchemaIndex,
    fragments: &'a HashMap<String, FragmentDefinition>,
    default_list_size: u64,
    /// Each fragment's measure, computed once.
    memo: HashMap<&'a str, Part>,
    /// Fragments being walked now (a spread of one of them is a cycle).
    visiting: Vec<&'a str>,
}

/// Nesting beyond this many selection sets is refused on depth anyway.
const MAX_NESTING: usize = 256;

impl<'a> Walker<'a> {
    fn new(
        schema: &'a SchemaIndex,
        fragments: &'a HashMap<String, FragmentDefinition>,
        default_list_size: u64,
    ) -> Self {
        Walker {
            schema,
            fragments,
            default_list_size,
            memo: HashMap::new(),
            visiting: Vec::new(),
        }
    }

    fn selection(&mut self, type_name: &str, sel: &'a SelectionSet) -> Measure {
        let p = self.walk(type_name, sel, 0);
        Measure {
            depth: p.depth,
            aliases: p.aliases,
            root_fields: p.fields,
            cost: p.cost,
        }
    }

    /// The measure of fragment `name` (memoised); a cycle or an unknown name is empty.
    fn fragment(&mut self, name: &str) -> Part {
        if let Some(p) = self.memo.get(name) {
            return *p;
        }
        let Some((key, frag)) = self.fragments.get_key_value(name) else {
            return Part::default();
        };
        let key = key.as_str();
        if self.visiting.contains(&key) {
            return Part::default();
        }
        self.visiting.push(key);
        let graphql_tools::static_graphql::query::TypeCondition::On(t) = &frag.type_condition;
        let p = self.walk(t, &frag.selection_set, 0);
        self.visiting.pop();
        self.memo.insert(key, p);
        p
    }

    /// Returns the measure of a selection set on `type_name`.
    fn walk(&mut self, type_name: &str, sel: &'a SelectionSet, level: usize) -> Part {
        if level > MAX_NESTING {
            return Part {
                depth: level,
                cost: u64::MAX / 4,
                ..Part::default()
            };
        }
        let mut out = Part::default();
        for item in &sel.items {
            match item {
                Selection::Field(f) => {
                    out.fields = out.fields.saturating_add(1);
                    if f.alias.is_some() {
                        out.aliases = out.aliases.saturating_add(1);
                    }
                    if f.name.starts_with("__") {
                        out.depth = out.depth.max(1);
                        continue;
                    }
                    let ty = self.schema.field_type(type_name, &f.name);
                    let child_type = ty.map(named_type).unwrap_or("");
                    let child = if f.selection_set.items.is_empty() {
                        Part::default()
                    } else {
                        self.walk(child_type, &f.selection_set, level + 1)
                    };
                    out.depth = out.depth.max(child.depth.saturating_add(1));
                    out.aliases = out.aliases.saturating_add(child.aliases);
                    let multiplier = if ty.is_some_and(is_list) {
                        f.arguments
                            .iter()
                            .find(|(n, _)| n == "first" || n == "limit" || n == "last")
                            .and_then(|(_, v)| match v {
                                Value::Int(i) => i.as_i64().and_then(|i| u64::try_from(i).ok()),
                                _ => None,
                            })
                            .unwrap_or(self.default_list_size)
                    } else {
                        1
                    };
                    out.cost = out
                        .cost
                        .saturating_add(multiplier.saturating_mul(1u64.saturating_add(child.cost)));
                }
                Selection::InlineFragment(i) => {
                    let t = match &i.type_condition {
                        Some(graphql_tools::static_graphql::query::TypeCondition::On(t)) => {
                            t.as_str()
                        }
                        None => type_name,
                    };
                    let inner = self.walk(t, &i.selection_set, level + 1);
                    out.merge(inner);
                }
                Selection::FragmentSpread(s) => {
                    let inner = self.fragment(&s.fragment_name);
                    out.merge(inner);
                }
            }
        }
        out
    }
}

impl Part {
    /// Adds a fragment's measure at the level it is spread at.
    fn merge(&mut self, inner: Part) {
        self.depth = self.depth.max(inner.depth);
        self.cost = self.cost.saturating_add(inner.cost);
        self.aliases = self.aliases.saturating_add(inner.aliases);
        self.fields = self.fields.saturating_add(inner.fields);
    }
}

fn is_list(t: &Type) -> bool {
    match t {
        Type::NonNullType(inner) => is_list(inner),
        Type::ListType(_) => true,
        Type::NamedType(_) => false,
    }
}

/// Checks a measure against the configured limits.
pub fn check(m: &Measure, limits: &LimitsConfig) -> Result<(), GraphQLError> {
    let fail = |what: &str, actual: u64, max: u64| {
        Err(GraphQLError::with_code(
            format!("Operation {what} {actual} exceeds the limit of {max}."),
            codes::QUERY_TOO_COMPLEX,
        )
        .with_extension("limit", what)
        .with_extension("max", max)
        .with_extension("actual", actual))
    };
    if m.depth > limits.max_depth {
        return fail("depth", m.depth as u64, limits.max_depth as u64);
    }
    if m.aliases > limits.max_aliases {
        return fail("aliases", m.aliases as u64, limits.max_aliases as u64);
    }
    if m.root_fields > limits.max_root_fields {
        return fail(
            "root fields",
            m.root_fields as u64,
            limits.max_root_fields as u64,
        );
    }
    if m.cost > limits.max_cost {
        return fail("estimated cost", m.cost, limits.max_cost);
    }
    Ok(())
}
