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

pub fn measure(
    schema: &SchemaIndex,
    root_type: &str,
    selection: &SelectionSet,
    fragments: &HashMap<String, FragmentDefinition>,
    default_list_size: u64,
) -> Measure {
    let mut m = Measure::default();
    let mut root = 0;
    count_root(selection, fragments, &mut root, 0);
    m.root_fields = root;
    let mut walker = Walker {
        schema,
        fragments,
        default_list_size,
        aliases: 0,
    };
    let (depth, cost) = walker.walk(root_type, selection, 0);
    m.depth = depth;
    m.cost = cost;
    m.aliases = walker.aliases;
    m
}

fn count_root(
    sel: &SelectionSet,
    fragments: &HashMap<String, FragmentDefinition>,
    n: &mut usize,
    guard: usize,
) {
    if guard > 16 {
        return;
    }
    for item in &sel.items {
        match item {
            Selection::Field(_) => *n += 1,
            Selection::InlineFragment(i) => count_root(&i.selection_set, fragments, n, guard + 1),
            Selection::FragmentSpread(s) => {
                if let Some(f) = fragments.get(&s.fragment_name) {
                    count_root(&f.selection_set, fragments, n, guard + 1);
                }
            }
        }
    }
}

struct Walker<'a> {
    schema: &'a SchemaIndex,
    fragments: &'a HashMap<String, FragmentDefinition>,
    default_list_size: u64,
    aliases: usize,
}

impl Walker<'_> {
    /// Returns (depth, cost) of a selection set on `type_name`.
    fn walk(&mut self, type_name: &str, sel: &SelectionSet, level: usize) -> (usize, u64) {
        if level > 256 {
            return (level, u64::MAX / 4);
        }
        let mut depth = 0;
        let mut cost: u64 = 0;
        for item in &sel.items {
            match item {
                Selection::Field(f) => {
                    if f.alias.is_some() {
                        self.aliases += 1;
                    }
                    if f.name.starts_with("__") {
                        depth = depth.max(1);
                        continue;
                    }
                    let ty = self.schema.field_type(type_name, &f.name);
                    let child_type = ty.map(named_type).unwrap_or("");
                    let (d, c) = if f.selection_set.items.is_empty() {
                        (0, 0)
                    } else {
                        self.walk(child_type, &f.selection_set, level + 1)
                    };
                    depth = depth.max(d + 1);
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
                    cost = cost.saturating_add(multiplier.saturating_mul(1u64.saturating_add(c)));
                }
                Selection::InlineFragment(i) => {
                    let t = match &i.type_condition {
                        Some(graphql_tools::static_graphql::query::TypeCondition::On(t)) => {
                            t.as_str()
                        }
                        None => type_name,
                    };
                    let (d, c) = self.walk(t, &i.selection_set, level);
                    depth = depth.max(d);
                    cost = cost.saturating_add(c);
                }
                Selection::FragmentSpread(s) => {
                    if let Some(frag) = self.fragments.get(&s.fragment_name) {
                        let graphql_tools::static_graphql::query::TypeCondition::On(t) =
                            &frag.type_condition;
                        let (d, c) = self.walk(t, &frag.selection_set, level + 1);
                        depth = depth.max(d);
                        cost = cost.saturating_add(c);
                    }
                }
            }
        }
        (depth, cost)
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
