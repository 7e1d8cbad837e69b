//! Document-wide parts of the OpenAPI document that every route shares, so that each
//! `#[utoipa::path]` lists only what is particular to it:
//! - the error responses any route of its kind can give (a body is read: 400/413/415;
//!   authenticated: 401/403; an id in the path: 404; every route: 429 and the upstream
//!   failures 502/503/504), all with the `ErrorBody` shape;
//! - a description for every response (required by OpenAPI), from its status when the
//!   route gives none;
//! - operation ids unique across the document (`<tag>_<handler>`; handlers of different
//!   modules share names such as `list` or `delete`).

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

pub struct CommonResponses;

const BAD_REQUEST: (&str, &str) = (
    "400",
    "Invalid input; `details` names the fields (`[{field, message}]`)",
);
const UNAUTHORIZED: (&str, &str) = (
    "401",
    "No valid access token (`Authorization: Bearer <token>`)",
);
const FORBIDDEN: (&str, &str) = (
    "403",
    "The legacy `user-id` header names another user than the token",
);
const NOT_FOUND: (&str, &str) = ("404", "No such resource of the caller's");
const TOO_LARGE: (&str, &str) = ("413", "The request body is too large");
const UNSUPPORTED: (&str, &str) = ("415", "The request body has an unsupported content type");
const RATE_LIMITED: (&str, &str) = (
    "429",
    "Rate limited (the router's limit, or the login lockout); `Retry-After` gives seconds",
);
const BAD_GATEWAY: (&str, &str) = ("502", "A service behind the router failed");
const UNAVAILABLE: (&str, &str) = ("503", "A service behind the router is unavailable");
const TIMEOUT: (&str, &str) = ("504", "A service behind the router did not answer in time");

/// What every error status means here, for responses listed without a description.
const ALL_ERRORS: &[(&str, &str)] = &[
    BAD_REQUEST,
    UNAUTHORIZED,
    FORBIDDEN,
    NOT_FOUND,
    TOO_LARGE,
    UNSUPPORTED,
    RATE_LIMITED,
    BAD_GATEWAY,
    UNAVAILABLE,
    TIMEOUT,
];

/// A description for a response listed without one (OpenAPI requires one).
fn default_description(status: &str) -> String {
    if let Some((_, d)) = ALL_ERRORS.iter().find(|(s, _)| *s == status) {
        return (*d).to_owned();
    }
    status
        .parse::<u16>()
        .ok()
        .and_then(|code| axum::http::StatusCode::from_u16(code).ok())
        .and_then(|code| code.canonical_reason())
        .unwrap_or("Response")
        .to_owned()
}

/// The statuses a route can answer with besides its own, by what the route takes.
fn common_statuses(op: &Operation) -> Vec<(&'static str, &'static str)> {
    let params: Vec<ParameterIn> = op
        .parameters
        .iter()
        .flatten()
        .filter_map(|p| match p {
            RefOr::T(p) => Some(p.parameter_in.clone()),
            RefOr::Ref(_) => None,
        })
        .collect();
    let has_body = op.request_body.is_some();
    let in_path = params.contains(&ParameterIn::Path);
    let in_query = params.contains(&ParameterIn::Query);
    let authed = op.security.as_ref().is_some_and(|s| !s.is_empty());

    let mut statuses = Vec::new();
    if has_body || in_path || in_query {
        statuses.push(BAD_REQUEST);
    }
    if authed {
        statuses.extend([UNAUTHORIZED, FORBIDDEN]);
    }
    if in_path {
        statuses.push(NOT_FOUND);
    }
    if has_body {
        statuses.extend([TOO_LARGE, UNSUPPORTED]);
    }
    statuses.extend([RATE_LIMITED, BAD_GATEWAY, UNAVAILABLE, TIMEOUT]);
    statuses
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                for (status, description) in common_statuses(op) {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error_response(description));
                }
                for (status, response) in op.responses.responses.iter_mut() {
                    if let RefOr::T(r) = response
                        && r.description.is_empty()
                    {
                        r.description = default_description(status);
                    }
                }
                let tag = op.tags.as_ref().and_then(|t| t.first()).cloned();
                if let (Some(tag), Some(id)) = (tag, op.operation_id.as_mut())
                    && !id.starts_with(&format!("{tag}_"))
                {
                    *id = format!("{tag}_{id}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::collections::HashSet;

    use serde_json::Value;
    use utoipa::OpenApi;

    use super::super::ApiDoc;

    fn document() -> Value {
        serde_json::from_str(&ApiDoc::openapi().to_json().unwrap()).unwrap()
    }

    fn operations(doc: &Value) -> Vec<(String, &Value)> {
        let mut ops = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                ops.push((format!("{} {path}", method.to_uppercase()), op));
            }
        }
        ops
    }

    #[test]
    fn operation_ids_are_unique() {
        let doc = document();
        let mut seen = HashSet::new();
        for (name, op) in operations(&doc) {
            let id = op["operationId"].as_str().expect("an operationId");
            assert!(
                seen.insert(id.to_owned()),
                "{name}: duplicate operationId {id}"
            );
        }
    }

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    out.push(r);
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let pointer = r.strip_prefix('#').expect("a local reference");
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
    }

    #[test]
    fn every_response_has_a_description() {
        let doc = document();
        for (name, op) in operations(&doc) {
            for (status, r) in op["responses"].as_object().unwrap() {
                let d = r["description"].as_str().unwrap_or_default();
                assert!(!d.is_empty(), "{name} {status} has no description");
            }
        }
    }

    #[test]
    fn every_route_documents_the_errors_it_can_give() {
        let doc = document();
        for (name, op) in operations(&doc) {
            let responses = op["responses"].as_object().unwrap();
            let mut expected = vec!["429", "502", "503", "504"];
            if op.get("security").is_some() {
                expected.extend(["401", "403"]);
            }
            if op.get("requestBody").is_some() {
                expected.extend(["400", "413", "415"]);
            }
            if name.contains('{') {
                expected.extend(["400", "404"]);
            }
            for status in expected {
                let r = &responses
                    .get(status)
                    .unwrap_or_else(|| panic!("{name} does not list {status}"));
                assert_eq!(
                    r["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{name} {status}"
                );
            }
        }
    }
}
