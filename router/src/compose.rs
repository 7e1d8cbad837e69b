//! Composition of subgraph SDLs into a Federation v2 supergraph, using the
//! `graphql-composition` crate. Output is deterministic: subgraphs are composed in
//! name order and the rendered SDL only depends on their contents.

use std::path::{Path, PathBuf};

use graphql_composition::{Subgraphs, compose, render_federated_sdl};

use crate::supergraph::Supergraph;

/// One subgraph to compose.
#[derive(Debug, Clone)]
pub struct SubgraphSdl {
    pub name: String,
    pub url: String,
    pub sdl: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("no subgraph SDL files found in {0}")]
    Empty(String),
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("subgraph '{subgraph}' does not parse:\n{report}")]
    Parse { subgraph: String, report: String },
    #[error("composition failed:\n{}", .0.join("\n"))]
    Composition(Vec<String>),
    #[error("the composed supergraph cannot be planned: {0}")]
    Unplannable(String),
    #[error("fetching the SDL of '{0}' failed: {1}")]
    Live(String, String),
}

/// Composes subgraphs; errors name the subgraph and, from the composition
/// diagnostics, the offending type and field.
pub fn compose_supergraph(subgraphs: &[SubgraphSdl]) -> Result<String, ComposeError> {
    let mut sorted: Vec<&SubgraphSdl> = subgraphs.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut set = Subgraphs::default();
    for s in sorted {
        set.ingest_str(&s.sdl, &s.name, Some(&s.url))
            .map_err(|e| ComposeError::Parse {
                subgraph: s.name.clone(),
                report: e.to_string(),
            })?;
    }
    let result = compose(&mut set);
    let graph = result.into_result().map_err(|diagnostics| {
        ComposeError::Composition(
            diagnostics
                .iter()
                .filter(|d| d.severity().is_error())
                .map(|d| format!("error: {}", d.message()))
                .collect(),
        )
    })?;
    let sdl =
        render_federated_sdl(&graph).map_err(|e| ComposeError::Composition(vec![e.to_string()]))?;
    let sdl = add_root_join_types(&sdl)?;
    // The supergraph must be usable by the planner we serve with.
    Supergraph::parse(&sdl).map_err(|e| ComposeError::Unplannable(e.to_string()))?;
    Ok(sdl)
}

/// Reads `<dir>/*.graphql` (except `supergraph.graphql`) as subgraphs named after
/// their file stem. URLs come from `<dir>/subgraphs.toml` (`name = "url"`) when
/// present, else `http://localhost:<port>/graphql` for the product's known services.
pub fn read_schema_dir(dir: &Path) -> Result<Vec<SubgraphSdl>, ComposeError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| ComposeError::Read(dir.display().to_string(), e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "graphql"))
        .filter(|p| p.file_name().is_none_or(|n| n != "supergraph.graphql"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ComposeError::Empty(dir.display().to_string()));
    }
    let urls: std::collections::HashMap<String, String> =
        std::fs::read_to_string(dir.join("subgraphs.toml"))
            .ok()
            .and_then(|t| toml::from_str(&t).ok())
            .unwrap_or_default();
    let mut out = Vec::new();
    for file in files {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let sdl = std::fs::read_to_string(&file)
            .map_err(|e| ComposeError::Read(file.display().to_string(), e))?;
        let url = urls
            .get(&name)
            .cloned()
            .unwrap_or_else(|| default_url(&name));
        out.push(SubgraphSdl { name, url, sdl });
    }
    Ok(out)
}

/// The product's default service ports (DESIGN.md).
pub fn default_url(name: &str) -> String {
    let port = match name {
        "users" => 3001,
        "expenses" => 3002,
        "budgets" => 3003,
        "analytics" => 3004,
        "notifications" => 3005,
        _ => 4000,
    };
    format!("http://127.0.0.1:{port}/graphql")
}

/// Fetches a running subgraph's SDL through `_service { sdl }`.
pub async fn fetch_live_sdl(name: &str, url: &str) -> Result<SubgraphSdl, ComposeError> {
    let client = reqwest::Client::new();
    let resp = client
        .post(url)
        .json(&serde_json::json!({ "query": "{ _service { sdl } }" }))
        .send()
        .await
        .map_err(|e| ComposeError::Live(name.to_owned(), e.to_string()))?;
    let body: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| ComposeError::Live(name.to_owned(), e.to_string()))?;
    let sdl = body
        .pointer("/data/_service/sdl")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| ComposeError::Live(name.to_owned(), format!("no _service.sdl in {body}")))?;
    Ok(SubgraphSdl {
        name: name.to_owned(),
        url: url.to_owned(),
        sdl: sdl.to_owned(),
    })
}

/// `graphql-composition` leaves root operation types without `@join__type`; the
/// planner (like Apollo's) resolves root fields through them. Adds
/// `@join__type(graph: G)` for every subgraph graph to root types lacking them.
fn add_root_join_types(sdl: &str) -> Result<String, ComposeError> {
    use graphql_tools::parser::Pos;
    use graphql_tools::parser::schema::{Definition, Directive, TypeDefinition, Value};
    let mut doc = graphql_tools::parser::parse_schema::<String>(sdl)
        .map_err(|e| {
            ComposeError::Composition(vec![format!("rendered supergraph does not parse: {e}")])
        })?
        .into_static();
    let mut roots = vec![
        "Query".to_owned(),
        "Mutation".to_owned(),
        "Subscription".to_owned(),
    ];
    let mut graphs: Vec<String> = Vec::new();
    for def in &doc.definitions {
        match def {
            Definition::SchemaDefinition(s) => {
                roots = [&s.query, &s.mutation, &s.subscription]
                    .into_iter()
                    .flatten()
                    .cloned()
                    .collect();
            }
            Definition::TypeDefinition(TypeDefinition::Enum(e)) if e.name == "join__Graph" => {
                graphs = e.values.iter().map(|v| v.name.clone()).collect();
            }
            _ => {}
        }
    }
    for def in &mut doc.definitions {
        if let Definition::TypeDefinition(TypeDefinition::Object(o)) = def
            && roots.contains(&o.name)
            && !o.directives.iter().any(|d| d.name == "join__type")
        {
            for g in &graphs {
                o.directives.push(Directive {
                    position: Pos::default(),
                    name: "join__type".to_owned(),
                    arguments: vec![("graph".to_owned(), Value::Enum(g.clone()))],
                });
            }
        }
    }
    Ok(doc.to_string())
}
