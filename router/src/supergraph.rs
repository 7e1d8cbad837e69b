//! Loading a Federation v2 supergraph: the planner, the API schema (what clients
//! see, used for validation and introspection) and the subgraph endpoints.

use std::sync::Arc;
use std::time::Duration;

use graphql_tools::static_graphql::schema::Document as SchemaDocument;
use graphql_tools::validation::rules::default_rules_validation_plan;
use graphql_tools::validation::validate::ValidationPlan;
use hive_router_query_planner::ast::operation::OperationDefinition;
use hive_router_query_planner::planner::plan_nodes::QueryPlan;
use hive_router_query_planner::planner::{Planner, PlannerError, QueryPlannerOptions};
use hive_router_query_planner::utils::cancellation::CancellationToken;

use crate::schema::SchemaIndex;

#[derive(Debug, thiserror::Error)]
pub enum SupergraphError {
    #[error("cannot read supergraph {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("supergraph SDL does not parse: {0}")]
    Parse(String),
    #[error("supergraph is not usable for planning: {0}")]
    Planner(String),
}

pub struct Supergraph {
    pub planner: Planner,
    /// The client-facing schema (inaccessible elements and federation internals removed).
    pub api_schema: Arc<SchemaDocument>,
    pub schema: SchemaIndex,
    /// Subgraph name -> URL, sorted by name.
    pub subgraphs: Vec<(String, String)>,
    pub validation_plan: ValidationPlan,
    /// Hash of the SDL, for logs and caches.
    pub hash: u64,
}

impl std::fmt::Debug for Supergraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supergraph")
            .field("subgraphs", &self.subgraphs)
            .field("hash", &self.hash)
            .finish()
    }
}

impl Supergraph {
    pub fn from_file(path: &std::path::Path) -> Result<Self, SupergraphError> {
        let sdl = std::fs::read_to_string(path).map_err(|source| SupergraphError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&sdl)
    }

    pub fn parse(sdl: &str) -> Result<Self, SupergraphError> {
        let parsed = graphql_tools::parser::parse_schema::<String>(sdl)
            .map_err(|e| SupergraphError::Parse(e.to_string()))?
            .into_static();
        let planner = std::panic::catch_unwind(|| {
            Planner::new_from_supergraph(&parsed, QueryPlannerOptions::default())
        })
        .map_err(|_| SupergraphError::Planner("planner panicked on this supergraph".into()))?
        .map_err(|e| SupergraphError::Planner(e.to_string()))?;
        let api_schema = with_defer(&planner.consumer_schema.document);
        let schema = SchemaIndex::new(&api_schema);
        let mut subgraphs: Vec<(String, String)> = planner
            .supergraph
            .subgraph_endpoint_map
            .iter()
            .map(|(name, url)| (name.clone(), url.clone()))
            .collect();
        subgraphs.sort();
        let hash = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            sdl.hash(&mut h);
            h.finish()
        };
        Ok(Self {
            planner,
            api_schema,
            schema,
            subgraphs,
            validation_plan: default_rules_validation_plan(),
            hash,
        })
    }

    pub fn plan(
        &self,
        operation: &OperationDefinition,
        timeout: Duration,
    ) -> Result<QueryPlan, PlannerError> {
        let token = CancellationToken::with_timeout(timeout);
        self.planner
            .plan_from_normalized_operation(operation, Default::default(), &token)
    }
}

/// The API schema with `@defer` declared (the router delivers it incrementally), unless
/// the supergraph already declares it.
fn with_defer(api: &Arc<SchemaDocument>) -> Arc<SchemaDocument> {
    use graphql_tools::static_graphql::schema::Definition;
    let declared = api
        .definitions
        .iter()
        .any(|d| matches!(d, Definition::DirectiveDefinition(dd) if dd.name == "defer"));
    if declared {
        return api.clone();
    }
    let defer = graphql_tools::parser::parse_schema::<String>(
        "directive @defer(label: String, if: Boolean! = true) on FRAGMENT_SPREAD | INLINE_FRAGMENT",
    )
    .expect("the @defer declaration parses")
    .into_static();
    let mut doc = (**api).clone();
    doc.definitions.extend(defer.definitions);
    Arc::new(doc)
}
