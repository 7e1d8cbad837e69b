//! Coercion of request variables against the operation's variable definitions.

use graphql_tools::static_graphql::query::{Type, VariableDefinition};
use serde_json::{Map, Value};

use crate::error::{GraphQLError, codes};
use crate::project::value_to_json;
use crate::schema::{SchemaIndex, TypeKind};

pub fn coerce_variables(
    defs: &[VariableDefinition],
    provided: Option<&Map<String, Value>>,
    schema: &SchemaIndex,
) -> Result<Map<String, Value>, Vec<GraphQLError>> {
    let mut out = Map::new();
    let mut errors = Vec::new();
    let empty = Map::new();
    let provided = provided.unwrap_or(&empty);
    for def in defs {
        let name = &def.name;
        match provided.get(name) {
            Some(value) => match check_input(value, &def.var_type, schema) {
                Ok(()) => {
                    out.insert(name.clone(), value.clone());
                }
                Err(msg) => errors.push(
                    GraphQLError::with_code(
                        format!("Variable \"${name}\" got invalid value {value}; {msg}"),
                        codes::BAD_USER_INPUT,
                    )
                    .with_location(def.position.line, def.position.column),
                ),
            },
            None => {
                if let Some(default) = &def.default_value {
                    out.insert(name.clone(), value_to_json(default, &empty));
                } else if matches!(def.var_type, Type::NonNullType(_)) {
                    errors.push(
                        GraphQLError::with_code(
                            format!(
                                "Variable \"${name}\" of required type \"{}\" was not provided.",
                                def.var_type
                            ),
                            codes::BAD_USER_INPUT,
                        )
                        .with_location(def.position.line, def.position.column),
                    );
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn check_input(value: &Value, ty: &Type, schema: &SchemaIndex) -> Result<(), String> {
    match ty {
        Type::NonNullType(inner) => {
            if value.is_null() {
                Err(format!(
                    "Expected non-nullable type \"{ty}\" not to be null."
                ))
            } else {
                check_input(value, inner, schema)
            }
        }
        _ if value.is_null() => Ok(()),
        Type::ListType(inner) => match value {
            Value::Array(items) => items.iter().try_for_each(|i| check_input(i, inner, schema)),
            other => check_input(other, inner, schema),
        },
        Type::NamedType(name) => {
            let Some(info) = schema.get(name) else {
                return Err(format!("Unknown type \"{name}\"."));
            };
            match info.kind {
                TypeKind::Scalar => check_scalar(value, name),
                TypeKind::Enum => match value.as_str() {
                    Some(s) if info.enum_values.contains(s) => Ok(()),
                    _ => Err(format!("Value {value} does not exist in \"{name}\" enum.")),
                },
                TypeKind::InputObject => {
                    let Value::Object(obj) = value else {
                        return Err(format!("Expected type \"{name}\" to be an object."));
                    };
                    for key in obj.keys() {
                        if !info.input_fields.iter().any(|f| &f.name == key) {
                            return Err(format!(
                                "Field \"{key}\" is not defined by type \"{name}\"."
                            ));
                        }
                    }
                    for field in &info.input_fields {
                        match obj.get(&field.name) {
                            Some(v) => check_input(v, &field.ty, schema)
                                .map_err(|m| format!("at \"{}\": {m}", field.name))?,
                            None => {
                                if matches!(field.ty, Type::NonNullType(_)) && !field.has_default {
                                    return Err(format!(
                                        "Field \"{name}.{}\" of required type \"{}\" was not provided.",
                                        field.name, field.ty
                                    ));
                                }
                            }
                        }
                    }
                    if info.one_of {
                        let set = obj.values().filter(|v| !v.is_null()).count();
                        if set != 1 || obj.len() != 1 {
                            return Err(format!(
                                "Exactly one key must be specified for OneOf type \"{name}\"."
                            ));
                        }
                    }
                    Ok(())
                }
                _ => Err(format!("Type \"{name}\" is not an input type.")),
            }
        }
    }
}

fn check_scalar(value: &Value, name: &str) -> Result<(), String> {
    let ok = match name {
        "Int" => value.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
        "Float" => value.is_number(),
        "String" => value.is_string(),
        "Boolean" => value.is_boolean(),
        "ID" => value.is_string() || value.is_i64() || value.is_u64(),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{name} cannot represent value: {value}"))
    }
}
