//! Response projection: shapes the client's response from the merged data tree by
//! executing the client's own selection set against it (field collection with
//! fragments, @skip/@include, aliases, `__typename`), with GraphQL null propagation
//! and error paths. Introspection fields are answered here from the API schema.
//! The JSON is written straight into a byte buffer; a null that propagates rewinds
//! the buffer to the nearest nullable position.

use std::collections::HashMap;
use std::rc::Rc;

use graphql_tools::static_graphql::query::{
    Directive, Field, FragmentDefinition, Selection, SelectionSet, TypeCondition, Value as QValue,
};
use graphql_tools::static_graphql::schema::{
    Definition as SDef, Directive as SchemaDirective, Document as SchemaDocument,
    Field as SchemaField, InputValue, Type, TypeDefinition,
};
use serde_json::{Map, Value};

use crate::error::GraphQLError;
use crate::json::{JObject, JValue};
use crate::schema::{SchemaIndex, TypeInfo, TypeKind, named_type};

#[derive(Debug, Clone, Copy)]
enum PathElem<'a> {
    Key(&'a str),
    Index(usize),
}

/// Marker: a null reached a non-null position and must propagate to the parent.
struct Propagate;

type Groups<'a> = Vec<(&'a str, Vec<&'a Field>)>;

pub struct Projector<'a> {
    schema: &'a SchemaIndex,
    api: &'a SchemaDocument,
    fragments: &'a HashMap<String, FragmentDefinition>,
    variables: &'a Map<String, Value>,
    existing: &'a [GraphQLError],
    errors: Vec<GraphQLError>,
    out: Vec<u8>,
    path: Vec<PathElem<'a>>,
    /// The fields collected for a (runtime type, merged fields) pair, computed once per
    /// response rather than once per object of a list. Keyed by the addresses of the
    /// type name and of the field list, which the groups held here keep alive.
    memo: rustc_hash::FxHashMap<(usize, usize, usize), Rc<Collected<'a>>>,
}

/// The fields of a selection that apply to one type, grouped by response key, with
/// each group's field type (`None` for a field the schema does not know).
struct Collected<'a> {
    groups: Groups<'a>,
    types: Vec<Option<&'a Type>>,
    /// Each group's innermost named type, looked up once.
    infos: Vec<Option<&'a TypeInfo>>,
    /// What each group writes before its value: `"key":`, after a comma but for the
    /// first.
    heads: Vec<Vec<u8>>,
    /// Where each group's key was last found in an object (see [`JObject::get_hinted`]).
    hints: Vec<std::cell::Cell<usize>>,
}

/// Evaluates @skip / @include on a selection.
pub fn should_include(directives: &[Directive], variables: &Map<String, Value>) -> bool {
    for d in directives {
        let wanted = match d.name.as_str() {
            "skip" => false,
            "include" => true,
            _ => continue,
        };
        let cond = d
            .arguments
            .iter()
            .find(|(n, _)| n == "if")
            .map(|(_, v)| match v {
                QValue::Boolean(b) => *b,
                QValue::Variable(name) => variables
                    .get(name)
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                _ => false,
            })
            .unwrap_or(false);
        if cond != wanted {
            return false;
        }
    }
    true
}

/// Converts a literal (with variables substituted) to JSON.
pub fn value_to_json(v: &QValue, variables: &Map<String, Value>) -> Value {
    match v {
        QValue::Variable(name) => variables.get(name).cloned().unwrap_or(Value::Null),
        QValue::Int(n) => n.as_i64().map(Value::from).unwrap_or(Value::Null),
        QValue::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        QValue::String(s) => Value::String(s.clone()),
        QValue::Boolean(b) => Value::Bool(*b),
        QValue::Null => Value::Null,
        QValue::Enum(e) => Value::String(e.clone()),
        QValue::List(items) => {
            Value::Array(items.iter().map(|i| value_to_json(i, variables)).collect())
        }
        QValue::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), value_to_json(v, variables)))
                .collect(),
        ),
    }
}

impl<'a> Projector<'a> {
    pub fn new(
        schema: &'a SchemaIndex,
        api: &'a SchemaDocument,
        fragments: &'a HashMap<String, FragmentDefinition>,
        variables: &'a Map<String, Value>,
        existing: &'a [GraphQLError],
    ) -> Self {
        Self {
            schema,
            api,
            fragments,
            variables,
            existing,
            errors: Vec::new(),
            out: Vec::with_capacity(1024),
            path: Vec::new(),
            memo: Default::default(),
        }
    }

    /// Projects the root selection set. Returns the `data` JSON (possibly `null`) and
    /// the errors the projection itself produced.
    pub fn project(
        mut self,
        root_type: &'a str,
        selection: &'a SelectionSet,
        data: &JValue,
    ) -> (Vec<u8>, Vec<GraphQLError>) {
        let mut groups = Vec::new();
        self.collect_fields(root_type, selection, &mut Vec::new(), &mut groups);
        let collected = self.with_types(root_type, groups);
        let empty = JObject::new();
        let obj = data.as_object().unwrap_or(&empty);
        if self.complete_object(root_type, &collected, obj).is_err() {
            self.out.clear();
            self.out.extend_from_slice(b"null");
        }
        (self.out, self.errors)
    }

    fn collect_fields(
        &self,
        type_name: &str,
        selection: &'a SelectionSet,
        visited: &mut Vec<&'a str>,
        groups: &mut Groups<'a>,
    ) {
        for item in &selection.items {
            match item {
                Selection::Field(field) => {
                    if !should_include(&field.directives, self.variables) {
                        continue;
                    }
                    let key = field.alias.as_deref().unwrap_or(&field.name);
                    match groups.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, fields)) => fields.push(field),
                        None => groups.push((key, vec![field])),
                    }
                }
                Selection::FragmentSpread(spread) => {
                    if !should_include(&spread.directives, self.variables)
                        || visited.contains(&spread.fragment_name.as_str())
                    {
                        continue;
                    }
                    visited.push(&spread.fragment_name);
                    let Some(fragment) = self.fragments.get(&spread.fragment_name) else {
                        continue;
                    };
                    let TypeCondition::On(cond) = &fragment.type_condition;
                    if self.schema.type_applies(type_name, cond) {
                        self.collect_fields(type_name, &fragment.selection_set, visited, groups);
                    }
                }
                Selection::InlineFragment(inline) => {
                    if !should_include(&inline.directives, self.variables) {
                        continue;
                    }
                    if let Some(TypeCondition::On(cond)) = &inline.type_condition
                        && !self.schema.type_applies(type_name, cond)
                    {
                        continue;
                    }
                    self.collect_fields(type_name, &inline.selection_set, visited, groups);
                }
            }
        }
    }

    /// The fields of `fields`' selections that apply to `type_name`, grouped by response
    /// key (memoised for the response).
    fn groups_for(&mut self, type_name: &'a str, fields: &[&'a Field]) -> Rc<Collected<'a>> {
        let key = (
            type_name.as_ptr() as usize,
            fields.as_ptr() as usize,
            fields.len(),
        );
        if let Some(groups) = self.memo.get(&key) {
            return groups.clone();
        }
        let mut groups = Vec::new();
        let mut visited = Vec::new();
        for f in fields {
            self.collect_fields(type_name, &f.selection_set, &mut visited, &mut groups);
        }
        let collected = Rc::new(self.with_types(type_name, groups));
        self.memo.insert(key, collected.clone());
        collected
    }

    fn with_types(&self, type_name: &str, groups: Groups<'a>) -> Collected<'a> {
        let schema: &'a SchemaIndex = self.schema;
        let types: Vec<Option<&'a Type>> = groups
            .iter()
            .map(|(_, fields)| schema.field_type(type_name, &fields[0].name))
            .collect();
        let infos = types
            .iter()
            .map(|t| t.and_then(|t| schema.get(named_type(t))))
            .collect();
        let heads = groups
            .iter()
            .enumerate()
            .map(|(i, (key, _))| {
                let mut head = Vec::with_capacity(key.len() + 4);
                if i > 0 {
                    head.push(b',');
                }
                crate::json::write_str(&mut head, key);
                head.push(b':');
                head
            })
            .collect();
        let hints = groups
            .iter()
            .enumerate()
            .map(|(i, _)| std::cell::Cell::new(i))
            .collect();
        Collected {
            groups,
            types,
            infos,
            heads,
            hints,
        }
    }

    fn write_str(&mut self, s: &str) {
        crate::json::write_str(&mut self.out, s);
    }

    /// A GraphQL name (a response key, a type name): `[_A-Za-z][_0-9A-Za-z]*`, which
    /// JSON never escapes.
    fn write_name(&mut self, s: &str) {
        if s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            self.out.push(b'"');
            self.out.extend_from_slice(s.as_bytes());
            self.out.push(b'"');
        } else {
            self.write_str(s);
        }
    }

    fn complete_object(
        &mut self,
        type_name: &'a str,
        collected: &Collected<'a>,
        obj: &JObject,
    ) -> Result<(), Propagate> {
        self.out.push(b'{');
        for (i, ((key, fields), field_type)) in
            collected.groups.iter().zip(&collected.types).enumerate()
        {
            self.out.extend_from_slice(&collected.heads[i]);
            let field = fields[0];
            // Only meta fields start with `__` (the rest cost no string comparisons).
            let meta = field.name.starts_with("__");
            match field.name.as_str() {
                _ if !meta => {}
                "__typename" => {
                    self.write_name(type_name);
                    continue;
                }
                "__schema" if type_name == self.schema.query_type => {
                    self.intro_schema(fields);
                    continue;
                }
                "__type" if type_name == self.schema.query_type => {
                    let name = self.arg(field, "name");
                    self.intro_named_type(name.as_ref().and_then(Value::as_str), fields);
                    continue;
                }
                _ => {}
            }
            let Some(field_type) = *field_type else {
                self.out.extend_from_slice(b"null");
                continue;
            };
            self.path.push(PathElem::Key(key));
            let info = collected.infos[i];
            let value = obj.get_hinted(key, &collected.hints[i]);
            let result = self.complete_value(field_type, info, fields, value, type_name);
            self.path.pop();
            result?;
        }
        self.out.push(b'}');
        Ok(())
    }

    /// `info`: the schema's entry for the innermost named type of `ty`.
    fn complete_value(
        &mut self,
        ty: &'a Type,
        info: Option<&'a TypeInfo>,
        fields: &[&'a Field],
        value: Option<&JValue>,
        parent_type: &str,
    ) -> Result<(), Propagate> {
        match ty {
            Type::NonNullType(inner) => match value {
                None | Some(JValue::Null) => {
                    self.null_error(parent_type, &fields[0].name);
                    Err(Propagate)
                }
                Some(v) => self.complete_inner(inner, info, fields, v, parent_type),
            },
            _ => {
                let start = self.out.len();
                match value {
                    None | Some(JValue::Null) => {
                        self.out.extend_from_slice(b"null");
                        Ok(())
                    }
                    Some(v) => {
                        if self
                            .complete_inner(ty, info, fields, v, parent_type)
                            .is_err()
                        {
                            self.out.truncate(start);
                            self.out.extend_from_slice(b"null");
                        }
                        Ok(())
                    }
                }
            }
        }
    }

    fn complete_inner(
        &mut self,
        ty: &'a Type,
        info: Option<&'a TypeInfo>,
        fields: &[&'a Field],
        value: &JValue,
        parent_type: &str,
    ) -> Result<(), Propagate> {
        match ty {
            Type::NonNullType(inner) => {
                self.complete_inner(inner, info, fields, value, parent_type)
            }
            Type::ListType(inner) => {
                let JValue::Array(items) = value else {
                    self.value_error("expected a list");
                    return Err(Propagate);
                };
                self.out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    self.path.push(PathElem::Index(i));
                    let r = self.complete_value(inner, info, fields, Some(item), parent_type);
                    self.path.pop();
                    r?;
                }
                self.out.push(b']');
                Ok(())
            }
            Type::NamedType(name) => {
                let Some(info) = info else {
                    self.out.extend_from_slice(b"null");
                    return Ok(());
                };
                match info.kind {
                    TypeKind::Scalar => {
                        crate::json::write_value(&mut self.out, value);
                        Ok(())
                    }
                    TypeKind::Enum => match value.as_str() {
                        Some(s) if info.enum_values.contains(s) => {
                            self.write_str(s);
                            Ok(())
                        }
                        _ => {
                            self.value_error(&format!(
                                "Enum \"{name}\" cannot represent value: {value}"
                            ));
                            Err(Propagate)
                        }
                    },
                    TypeKind::Object | TypeKind::Interface | TypeKind::Union => {
                        let JValue::Object(obj) = value else {
                            self.value_error("expected an object");
                            return Err(Propagate);
                        };
                        let runtime: &'a str = if info.kind == TypeKind::Object {
                            name
                        } else {
                            match obj.get("__typename").and_then(JValue::as_str) {
                                Some(t) => match self.schema.types.get_key_value(t) {
                                    Some((k, _)) if info.possible_types.contains(t) => k.as_str(),
                                    // An @interfaceObject answers with the interface itself.
                                    _ if info.kind == TypeKind::Interface && t == name => name,
                                    _ => {
                                        self.value_error(&format!(
                                            "Abstract type \"{name}\" resolved to \"{t}\", which is not a possible type"
                                        ));
                                        return Err(Propagate);
                                    }
                                },
                                // Without `__typename` only the interface's own fields apply.
                                None if info.kind == TypeKind::Interface => name,
                                None => {
                                    self.value_error(&format!(
                                        "Could not resolve the concrete type of \"{name}\""
                                    ));
                                    return Err(Propagate);
                                }
                            }
                        };
                        let groups = self.groups_for(runtime, fields);
                        self.complete_object(runtime, &groups, obj)
                    }
                    TypeKind::InputObject => {
                        self.out.extend_from_slice(b"null");
                        Ok(())
                    }
                }
            }
        }
    }

    fn current_path(&self) -> Vec<Value> {
        self.path
            .iter()
            .map(|p| match p {
                PathElem::Key(k) => Value::String((*k).to_owned()),
                PathElem::Index(i) => Value::from(*i),
            })
            .collect()
    }

    /// Whether some error already explains a null at the current path.
    fn covered(&self) -> bool {
        self.existing
            .iter()
            .chain(self.errors.iter())
            .any(|e| match &e.path {
                None => true,
                Some(p) => {
                    let n = p.len().min(self.path.len());
                    p.iter()
                        .zip(self.path.iter())
                        .take(n)
                        .all(|(a, b)| match (a, b) {
                            (Value::String(s), PathElem::Key(k)) => s == k,
                            (Value::Number(x), PathElem::Index(i)) => x.as_u64() == Some(*i as u64),
                            _ => false,
                        })
                }
            })
    }

    fn null_error(&mut self, parent_type: &str, field: &str) {
        if !self.covered() {
            let e = GraphQLError::new(format!(
                "Cannot return null for non-nullable field {parent_type}.{field}."
            ))
            .with_path(self.current_path());
            self.errors.push(e);
        }
    }

    fn value_error(&mut self, message: &str) {
        let e = GraphQLError::new(message).with_path(self.current_path());
        self.errors.push(e);
    }

    fn arg(&self, field: &Field, name: &str) -> Option<Value> {
        field
            .arguments
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| value_to_json(v, self.variables))
    }

    // ---- introspection -------------------------------------------------------

    /// The API schema's definition of a type (`schema` indexes `api`).
    fn type_def(&self, name: &str) -> Option<&'a TypeDefinition> {
        let position = *self.schema.type_definitions.get(name)?;
        match self.api.definitions.get(position)? {
            SDef::TypeDefinition(t) => Some(t),
            _ => None,
        }
    }

    fn sub_groups(&self, type_name: &str, fields: &[&'a Field]) -> Groups<'a> {
        let mut groups = Vec::new();
        let mut visited = Vec::new();
        for f in fields {
            self.collect_fields(type_name, &f.selection_set, &mut visited, &mut groups);
        }
        groups
    }

    fn write_list<T>(
        &mut self,
        items: impl IntoIterator<Item = T>,
        mut each: impl FnMut(&mut Self, T),
    ) {
        self.out.push(b'[');
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            each(self, item);
        }
        self.out.push(b']');
    }

    fn write_null(&mut self) {
        self.out.extend_from_slice(b"null");
    }

    fn write_opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.write_str(s),
            None => self.write_null(),
        }
    }

    fn write_bool(&mut self, b: bool) {
        self.out
            .extend_from_slice(if b { b"true" } else { b"false" });
    }

    /// Writes one introspection object of type `type_name`: a member per response key
    /// the client selected, `__typename` answered here, every other field by `value`
    /// (given the fields merged under that key).
    fn intro_object(
        &mut self,
        type_name: &'static str,
        fields: &[&'a Field],
        mut value: impl FnMut(&mut Self, &[&'a Field]),
    ) {
        let groups = self.sub_groups(type_name, fields);
        self.out.push(b'{');
        for (i, (key, fs)) in groups.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.write_str(key);
            self.out.push(b':');
            match fs[0].name.as_str() {
                "__typename" => self.write_str(type_name),
                _ => value(self, fs),
            }
        }
        self.out.push(b'}');
    }

    /// An introspection object with a name, a description and a deprecation
    /// (`__Field`, `__InputValue`, `__EnumValue`); its other fields are left to `rest`.
    fn intro_element(
        &mut self,
        type_name: &'static str,
        (name, description, directives): (&str, Option<&str>, &[SchemaDirective]),
        fields: &[&'a Field],
        mut rest: impl FnMut(&mut Self, &[&'a Field]),
    ) {
        let dep = deprecation(directives);
        self.intro_object(type_name, fields, |s, fs| match fs[0].name.as_str() {
            "name" => s.write_str(name),
            "description" => s.write_opt_str(description),
            "isDeprecated" => s.write_bool(dep.is_some()),
            "deprecationReason" => s.write_opt_str(dep.as_deref()),
            _ => rest(s, fs),
        });
    }

    /// The `includeDeprecated` argument of an introspection list field.
    fn include_deprecated(&self, field: &Field) -> bool {
        self.arg(field, "includeDeprecated")
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }

    /// `__Type` of the named type, or null when the API schema has no such type.
    fn intro_named_type(&mut self, name: Option<&str>, fields: &[&'a Field]) {
        match name.and_then(|n| self.type_def(n)).map(type_def_name) {
            Some(n) => self.intro_type(TRef::Named(n), fields),
            None => self.write_null(),
        }
    }

    /// A list of `__Type`: the named types the API schema has.
    fn intro_named_types(&mut self, names: Vec<&str>, fields: &[&'a Field]) {
        let names: Vec<&'a str> = names
            .into_iter()
            .filter_map(|n| self.type_def(n).map(type_def_name))
            .collect();
        self.write_list(names, |s, n| s.intro_type(TRef::Named(n), fields));
    }

    /// A list of `__InputValue` (arguments, input fields); deprecated ones only when
    /// the list field asks for them.
    fn intro_input_values(&mut self, values: &'a [InputValue], fields: &[&'a Field]) {
        let inc = self.include_deprecated(fields[0]);
        let values: Vec<_> = values
            .iter()
            .filter(|v| inc || deprecation(&v.directives).is_none())
            .collect();
        self.write_list(values, |s, v| s.intro_input_value(v, fields));
    }

    fn intro_schema(&mut self, fields: &[&'a Field]) {
        self.intro_object("__Schema", fields, |s, fs| match fs[0].name.as_str() {
            "types" => {
                // Each type once, where it is first defined.
                let index = &s.schema.type_definitions;
                let names: Vec<&'a str> = s
                    .api
                    .definitions
                    .iter()
                    .enumerate()
                    .filter_map(|(position, def)| match def {
                        SDef::TypeDefinition(t) => Some((position, type_def_name(t))),
                        _ => None,
                    })
                    .filter(|(position, name)| index.get(*name) == Some(position))
                    .map(|(_, name)| name)
                    .collect();
                s.write_list(names, |s, n| s.intro_type(TRef::Named(n), fs));
            }
            "queryType" => {
                let name = s.schema.query_type.as_str();
                s.intro_named_type(Some(name), fs)
            }
            "mutationType" => {
                let name = s.schema.mutation_type.as_deref();
                s.intro_named_type(name, fs)
            }
            "subscriptionType" => {
                let name = s.schema.subscription_type.as_deref();
                s.intro_named_type(name, fs)
            }
            "directives" => {
                let directives: Vec<_> = s
                    .api
                    .definitions
                    .iter()
                    .filter_map(|d| match d {
                        SDef::DirectiveDefinition(dd) => Some(dd),
                        _ => None,
                    })
                    .collect();
                s.write_list(directives, |s, d| {
                    s.intro_object("__Directive", fs, |s, dfs| match dfs[0].name.as_str() {
                        "name" => s.write_str(&d.name),
                        "description" => s.write_opt_str(d.description.as_deref()),
                        "isRepeatable" => s.write_bool(d.repeatable),
                        "locations" => s.write_list(&d.locations, |s, l| s.write_str(l.as_str())),
                        "args" => s.intro_input_values(&d.arguments, dfs),
                        _ => s.write_null(),
                    })
                });
            }
            _ => s.write_null(),
        });
    }

    fn intro_type(&mut self, t: TRef<'a>, fields: &[&'a Field]) {
        let def = match t {
            TRef::Named(n) => self.type_def(n),
            _ => None,
        };
        self.intro_object("__Type", fields, |s, fs| match fs[0].name.as_str() {
            "kind" => {
                let kind = match (t, def) {
                    (TRef::NonNull(_), _) => "NON_NULL",
                    (TRef::List(_), _) => "LIST",
                    (_, Some(TypeDefinition::Scalar(_))) => "SCALAR",
                    (_, Some(TypeDefinition::Object(_))) => "OBJECT",
                    (_, Some(TypeDefinition::Interface(_))) => "INTERFACE",
                    (_, Some(TypeDefinition::Union(_))) => "UNION",
                    (_, Some(TypeDefinition::Enum(_))) => "ENUM",
                    (_, Some(TypeDefinition::InputObject(_))) => "INPUT_OBJECT",
                    (_, None) => "SCALAR",
                };
                s.write_str(kind);
            }
            "name" => match t {
                TRef::Named(n) => s.write_str(n),
                _ => s.write_null(),
            },
            "description" => s.write_opt_str(def.and_then(type_description)),
            "specifiedByURL" => {
                let url = match def {
                    Some(TypeDefinition::Scalar(scalar)) => scalar
                        .directives
                        .iter()
                        .find(|d| d.name == "specifiedBy")
                        .and_then(|d| d.arguments.iter().find(|(n, _)| n == "url"))
                        .and_then(|(_, v)| match v {
                            QValue::String(url) => Some(url.as_str()),
                            _ => None,
                        }),
                    _ => None,
                };
                s.write_opt_str(url);
            }
            "fields" => {
                let list = match def {
                    Some(TypeDefinition::Object(o)) => &o.fields,
                    Some(TypeDefinition::Interface(i)) => &i.fields,
                    _ => return s.write_null(),
                };
                let inc = s.include_deprecated(fs[0]);
                let items: Vec<_> = list
                    .iter()
                    .filter(|f| !f.name.starts_with("__"))
                    .filter(|f| inc || deprecation(&f.directives).is_none())
                    .collect();
                s.write_list(items, |s, f| s.intro_field(f, fs));
            }
            "interfaces" => match def {
                Some(TypeDefinition::Object(o)) => s.intro_named_types(
                    o.implements_interfaces.iter().map(String::as_str).collect(),
                    fs,
                ),
                Some(TypeDefinition::Interface(i)) => s.intro_named_types(
                    i.implements_interfaces.iter().map(String::as_str).collect(),
                    fs,
                ),
                _ => s.write_null(),
            },
            "possibleTypes" => match def {
                Some(TypeDefinition::Union(u)) => {
                    s.intro_named_types(u.types.iter().map(String::as_str).collect(), fs)
                }
                Some(TypeDefinition::Interface(i)) => {
                    let mut names: Vec<&str> = s
                        .api
                        .definitions
                        .iter()
                        .filter_map(|d| match d {
                            SDef::TypeDefinition(TypeDefinition::Object(o))
                                if o.implements_interfaces.contains(&i.name) =>
                            {
                                Some(o.name.as_str())
                            }
                            _ => None,
                        })
                        .collect();
                    names.dedup();
                    s.intro_named_types(names, fs)
                }
                _ => s.write_null(),
            },
            "enumValues" => match def {
                Some(TypeDefinition::Enum(e)) => {
                    let inc = s.include_deprecated(fs[0]);
                    let values: Vec<_> = e
                        .values
                        .iter()
                        .filter(|v| inc || deprecation(&v.directives).is_none())
                        .collect();
                    s.write_list(values, |s, v| {
                        let element =
                            (v.name.as_str(), v.description.as_deref(), &v.directives[..]);
                        s.intro_element("__EnumValue", element, fs, |s, _| s.write_null())
                    });
                }
                _ => s.write_null(),
            },
            "inputFields" => match def {
                Some(TypeDefinition::InputObject(io)) => s.intro_input_values(&io.fields, fs),
                _ => s.write_null(),
            },
            "ofType" => match t {
                TRef::NonNull(inner) | TRef::List(inner) => {
                    s.intro_type(TRef::from_type(inner), fs)
                }
                TRef::Named(_) => s.write_null(),
            },
            "isOneOf" => match def {
                Some(TypeDefinition::InputObject(io)) => {
                    s.write_bool(io.directives.iter().any(|d| d.name == "oneOf"))
                }
                _ => s.write_null(),
            },
            _ => s.write_null(),
        });
    }

    fn intro_field(&mut self, f: &'a SchemaField, fields: &[&'a Field]) {
        let element = (f.name.as_str(), f.description.as_deref(), &f.directives[..]);
        self.intro_element("__Field", element, fields, |s, fs| {
            match fs[0].name.as_str() {
                "type" => s.intro_type(TRef::from_type(&f.field_type), fs),
                "args" => s.intro_input_values(&f.arguments, fs),
                _ => s.write_null(),
            }
        });
    }

    fn intro_input_value(&mut self, v: &'a InputValue, fields: &[&'a Field]) {
        let element = (v.name.as_str(), v.description.as_deref(), &v.directives[..]);
        self.intro_element("__InputValue", element, fields, |s, fs| {
            match fs[0].name.as_str() {
                "type" => s.intro_type(TRef::from_type(&v.value_type), fs),
                "defaultValue" => {
                    let printed = v.default_value.as_ref().map(|d| d.to_string());
                    s.write_opt_str(printed.as_deref())
                }
                _ => s.write_null(),
            }
        });
    }
}

#[derive(Clone, Copy)]
enum TRef<'a> {
    Named(&'a str),
    List(&'a Type),
    NonNull(&'a Type),
}

impl<'a> TRef<'a> {
    fn from_type(t: &'a Type) -> Self {
        match t {
            Type::NamedType(n) => TRef::Named(n),
            Type::ListType(inner) => TRef::List(inner),
            Type::NonNullType(inner) => TRef::NonNull(inner),
        }
    }
}

fn type_def_name(t: &TypeDefinition) -> &str {
    match t {
        TypeDefinition::Scalar(x) => &x.name,
        TypeDefinition::Object(x) => &x.name,
        TypeDefinition::Interface(x) => &x.name,
        TypeDefinition::Union(x) => &x.name,
        TypeDefinition::Enum(x) => &x.name,
        TypeDefinition::InputObject(x) => &x.name,
    }
}

fn type_description(t: &TypeDefinition) -> Option<&str> {
    match t {
        TypeDefinition::Scalar(x) => x.description.as_deref(),
        TypeDefinition::Object(x) => x.description.as_deref(),
        TypeDefinition::Interface(x) => x.description.as_deref(),
        TypeDefinition::Union(x) => x.description.as_deref(),
        TypeDefinition::Enum(x) => x.description.as_deref(),
        TypeDefinition::InputObject(x) => x.description.as_deref(),
    }
}

/// The deprecation reason of an element, when it carries @deprecated.
fn deprecation(directives: &[SchemaDirective]) -> Option<String> {
    directives.iter().find(|d| d.name == "deprecated").map(|d| {
        d.arguments
            .iter()
            .find(|(n, _)| n == "reason")
            .and_then(|(_, v)| match v {
                QValue::String(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_else(|| "No longer supported".to_owned())
    })
}
