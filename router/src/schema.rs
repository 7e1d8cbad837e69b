//! A lookup index over the client-facing (API) schema: type kinds, field types,
//! possible types of abstract types, enum values and input fields.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use graphql_tools::static_graphql::schema::{Definition, Document, Type, TypeDefinition};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeKind {
    Scalar,
    Object,
    Interface,
    Union,
    Enum,
    InputObject,
}

#[derive(Debug)]
pub struct TypeInfo {
    pub kind: TypeKind,
    /// Output fields (objects, interfaces): name -> type.
    pub fields: HashMap<String, Type>,
    /// Concrete object types (interfaces and unions), or the type itself for objects.
    pub possible_types: HashSet<String>,
    pub enum_values: HashSet<String>,
    /// Input fields (input objects), in declaration order.
    pub input_fields: Vec<InputField>,
    pub one_of: bool,
}

#[derive(Debug)]
pub struct InputField {
    pub name: String,
    pub ty: Type,
    pub has_default: bool,
}

#[derive(Debug)]
pub struct SchemaIndex {
    pub types: HashMap<String, TypeInfo>,
    /// Where each type is defined in the document the index was built from: the
    /// position of its (first) definition in `definitions`.
    pub type_definitions: HashMap<String, usize>,
    pub query_type: String,
    pub mutation_type: Option<String>,
    pub subscription_type: Option<String>,
}

impl SchemaIndex {
    pub fn new(doc: &Document) -> Self {
        let mut types: HashMap<String, TypeInfo> = HashMap::default();
        let mut type_definitions: HashMap<String, usize> = HashMap::default();
        let mut implementations: Vec<(String, String)> = Vec::new();
        let mut query_type = None;
        let mut mutation_type = None;
        let mut subscription_type = None;
        for (position, def) in doc.definitions.iter().enumerate() {
            match def {
                Definition::SchemaDefinition(s) => {
                    query_type = s.query.clone();
                    mutation_type = s.mutation.clone();
                    subscription_type = s.subscription.clone();
                }
                Definition::TypeDefinition(t) => {
                    let (name, info) = match t {
                        TypeDefinition::Scalar(s) => {
                            (s.name.clone(), TypeInfo::empty(TypeKind::Scalar))
                        }
                        TypeDefinition::Object(o) => {
                            let mut info = TypeInfo::empty(TypeKind::Object);
                            for f in &o.fields {
                                info.fields.insert(f.name.clone(), f.field_type.clone());
                            }
                            info.possible_types.insert(o.name.clone());
                            for i in &o.implements_interfaces {
                                implementations.push((i.clone(), o.name.clone()));
                            }
                            (o.name.clone(), info)
                        }
                        TypeDefinition::Interface(i) => {
                            let mut info = TypeInfo::empty(TypeKind::Interface);
                            for f in &i.fields {
                                info.fields.insert(f.name.clone(), f.field_type.clone());
                            }
                            (i.name.clone(), info)
                        }
                        TypeDefinition::Union(u) => {
                            let mut info = TypeInfo::empty(TypeKind::Union);
                            info.possible_types.extend(u.types.iter().cloned());
                            (u.name.clone(), info)
                        }
                        TypeDefinition::Enum(e) => {
                            let mut info = TypeInfo::empty(TypeKind::Enum);
                            info.enum_values
                                .extend(e.values.iter().map(|v| v.name.clone()));
                            (e.name.clone(), info)
                        }
                        TypeDefinition::InputObject(io) => {
                            let mut info = TypeInfo::empty(TypeKind::InputObject);
                            info.one_of = io.directives.iter().any(|d| d.name == "oneOf");
                            info.input_fields = io
                                .fields
                                .iter()
                                .map(|f| InputField {
                                    name: f.name.clone(),
                                    ty: f.value_type.clone(),
                                    has_default: f.default_value.is_some(),
                                })
                                .collect();
                            (io.name.clone(), info)
                        }
                    };
                    type_definitions.entry(name.clone()).or_insert(position);
                    types.insert(name, info);
                }
                _ => {}
            }
        }
        for (interface, object) in implementations {
            if let Some(info) = types.get_mut(&interface) {
                info.possible_types.insert(object);
            }
        }
        for builtin in ["String", "Int", "Float", "Boolean", "ID"] {
            types
                .entry(builtin.to_owned())
                .or_insert_with(|| TypeInfo::empty(TypeKind::Scalar));
        }
        let query_type = query_type.unwrap_or_else(|| "Query".to_owned());
        let mutation_type = mutation_type.or_else(|| {
            types
                .contains_key("Mutation")
                .then(|| "Mutation".to_owned())
        });
        let subscription_type = subscription_type.or_else(|| {
            types
                .contains_key("Subscription")
                .then(|| "Subscription".to_owned())
        });
        Self {
            types,
            type_definitions,
            query_type,
            mutation_type,
            subscription_type,
        }
    }

    pub fn get(&self, name: &str) -> Option<&TypeInfo> {
        self.types.get(name)
    }

    pub fn field_type(&self, type_name: &str, field: &str) -> Option<&Type> {
        self.types.get(type_name)?.fields.get(field)
    }

    /// Whether an object of concrete type `object` matches a type condition `condition`.
    pub fn type_applies(&self, object: &str, condition: &str) -> bool {
        object == condition
            || self
                .types
                .get(condition)
                .is_some_and(|t| t.possible_types.contains(object))
    }

    pub fn is_abstract(&self, name: &str) -> bool {
        matches!(
            self.types.get(name).map(|t| t.kind),
            Some(TypeKind::Interface | TypeKind::Union)
        )
    }
}

impl TypeInfo {
    fn empty(kind: TypeKind) -> Self {
        Self {
            kind,
            fields: HashMap::default(),
            possible_types: HashSet::default(),
            enum_values: HashSet::default(),
            input_fields: Vec::new(),
            one_of: false,
        }
    }
}

/// The innermost named type of a type reference.
pub fn named_type(ty: &Type) -> &str {
    match ty {
        Type::NamedType(n) => n,
        Type::ListType(inner) | Type::NonNullType(inner) => named_type(inner),
    }
}
