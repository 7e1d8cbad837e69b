//! The GraphQL request pipeline: parse, validate, select the operation, coerce
//! variables, normalise and plan (cached), execute, project.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use graphql_tools::static_graphql::query::{
    Definition, Document, FragmentDefinition, OperationDefinition, Selection, SelectionSet,
    VariableDefinition,
};
use graphql_tools::validation::validate::validate;
use hive_router_query_planner::ast::normalization::normalize_operation;
use hive_router_query_planner::planner::plan_nodes::QueryPlan;
use lru::LruCache;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::coerce::coerce_variables;
use crate::error::{GraphQLError, codes};
use crate::execute::{Execution, FetchObserver};
use crate::project::Projector;
use crate::subgraph::{ForwardHeaders, SubgraphClient};
use crate::supergraph::Supergraph;

/// A GraphQL-over-HTTP request.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphQLRequest {
    #[serde(default)]
    pub query: Option<String>,
    #[serde(default)]
    pub operation_name: Option<String>,
    #[serde(default)]
    pub variables: Option<Value>,
    #[serde(default)]
    pub extensions: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Query,
    Mutation,
    Subscription,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Query => "query",
            OpKind::Mutation => "mutation",
            OpKind::Subscription => "subscription",
        }
    }
}

/// A parsed, validated operation with its plan, ready to execute with variables.
pub struct Prepared {
    pub doc: Document,
    pub fragments: HashMap<String, FragmentDefinition>,
    pub op_index: usize,
    pub kind: OpKind,
    pub root_type: String,
    pub plan: Option<Arc<QueryPlan>>,
    pub has_introspection: bool,
    /// A query with deferred fragments: what its incremental delivery needs.
    pub defer: Option<Arc<Deferral>>,
}

/// The incremental delivery of a query with `@defer`.
pub struct Deferral {
    /// The operation without its deferred fragments: the initial payload.
    pub initial: Prepared,
    pub fragments: Vec<crate::defer::DeferredFragment>,
    /// Variables of `@defer(if: $v)`: when one is false nothing is deferred.
    pub if_variables: Vec<String>,
}

impl Prepared {
    pub fn operation(&self) -> (&[VariableDefinition], &SelectionSet) {
        match &self.doc.definitions[self.op_index] {
            Definition::Operation(op) => op_parts(op),
            Definition::Fragment(_) => unreachable!("op_index always points at an operation"),
        }
    }
}

fn op_parts(op: &OperationDefinition) -> (&[VariableDefinition], &SelectionSet) {
    match op {
        OperationDefinition::SelectionSet(s) => (&[], s),
        OperationDefinition::Query(q) => (&q.variable_definitions, &q.selection_set),
        OperationDefinition::Mutation(m) => (&m.variable_definitions, &m.selection_set),
        OperationDefinition::Subscription(s) => (&s.variable_definitions, &s.selection_set),
    }
}

fn op_name(op: &OperationDefinition) -> Option<&str> {
    match op {
        OperationDefinition::SelectionSet(_) => None,
        OperationDefinition::Query(q) => q.name.as_deref(),
        OperationDefinition::Mutation(m) => m.name.as_deref(),
        OperationDefinition::Subscription(s) => s.name.as_deref(),
    }
}

/// Outcome of preparing an operation: request errors carry the HTTP status class.
#[derive(Debug, Clone)]
pub struct RequestError {
    pub errors: Vec<GraphQLError>,
    /// Whether the failure is the client's (4xx) rather than the router's.
    pub client_error: bool,
    /// HTTP method not allowed (mutation over GET).
    pub method_not_allowed: bool,
}

impl RequestError {
    pub fn client(errors: Vec<GraphQLError>) -> Self {
        Self {
            errors,
            client_error: true,
            method_not_allowed: false,
        }
    }
}

pub struct PipelineOptions {
    pub limits: crate::config::LimitsConfig,
    pub introspection: bool,
    pub plan_cache_size: usize,
    pub parser_token_limit: usize,
    pub planning_timeout: Duration,
}

pub struct Pipeline {
    pub supergraph: Arc<Supergraph>,
    pub client: Arc<SubgraphClient>,
    pub options: PipelineOptions,
    op_cache: Mutex<LruCache<u64, Arc<Prepared>>>,
    plan_cache: Mutex<LruCache<u64, Arc<QueryPlan>>>,
    pub observer: Option<Arc<dyn PipelineObserver>>,
    /// Preparations (parse, validate, plan) running on the blocking pool now.
    preparing: tokio::sync::Semaphore,
    /// Preparations waiting for a turn; past `MAX_QUEUED_PREPARATIONS` a new one is refused.
    queued: std::sync::atomic::AtomicUsize,
}

/// Operations prepared at once off the async workers (parse, validate, plan on a cache
/// miss); the rest wait in a bounded queue.
const CONCURRENT_PREPARATIONS: usize = 4;
/// How many preparations may wait; one more is answered `RATE_LIMITED` at once.
const MAX_QUEUED_PREPARATIONS: usize = 256;

/// Hooks for metrics.
pub trait PipelineObserver: FetchObserver {
    fn plan_cache(&self, hit: bool);
}

/// Per-request context from the HTTP layer.
#[derive(Clone)]
pub struct RequestContext {
    pub headers: ForwardHeaders,
    pub is_get: bool,
}

pub struct Executed {
    /// The complete JSON response body.
    pub body: Vec<u8>,
    pub errors: Vec<GraphQLError>,
}

impl Pipeline {
    pub fn new(
        supergraph: Arc<Supergraph>,
        client: Arc<SubgraphClient>,
        options: PipelineOptions,
    ) -> Self {
        let size = NonZeroUsize::new(options.plan_cache_size.max(1)).expect("max(1) is non-zero");
        Self {
            supergraph,
            client,
            options,
            op_cache: Mutex::new(LruCache::new(size)),
            plan_cache: Mutex::new(LruCache::new(size)),
            observer: None,
            preparing: tokio::sync::Semaphore::new(CONCURRENT_PREPARATIONS),
            queued: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// [`Pipeline::prepare`] for async callers: a cached operation at once; a new one is
    /// parsed, validated and planned on the blocking pool (never on an async I/O
    /// worker), a few at a time, with a bounded queue.
    pub async fn prepare_off_thread(
        self: &Arc<Self>,
        query: &str,
        operation_name: Option<&str>,
    ) -> Result<Arc<Prepared>, RequestError> {
        if let Some(hit) = self.cached(Self::cache_key(query, operation_name)) {
            return Ok(hit);
        }
        use std::sync::atomic::Ordering;
        let waiting = self.queued.fetch_add(1, Ordering::SeqCst);
        let permit = if waiting >= MAX_QUEUED_PREPARATIONS {
            Err(())
        } else {
            self.preparing.acquire().await.map_err(|_| ())
        };
        self.queued.fetch_sub(1, Ordering::SeqCst);
        let Ok(_permit) = permit else {
            return Err(RequestError::client(vec![
                GraphQLError::with_code(
                    "The router is busy preparing other operations; retry shortly.",
                    codes::RATE_LIMITED,
                )
                .with_extension("retryAfter", 1),
            ]));
        };
        let this = self.clone();
        let (query, name) = (query.to_owned(), operation_name.map(str::to_owned));
        tokio::task::spawn_blocking(move || this.prepare(&query, name.as_deref()))
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "operation preparation panicked");
                Err(RequestError {
                    errors: vec![GraphQLError::with_code(
                        "Internal server error",
                        codes::INTERNAL,
                    )],
                    client_error: false,
                    method_not_allowed: false,
                })
            })
    }

    fn cache_key(query: &str, operation_name: Option<&str>) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        query.hash(&mut h);
        operation_name.hash(&mut h);
        h.finish()
    }

    fn cached(&self, key: u64) -> Option<Arc<Prepared>> {
        let hit = self.op_cache.lock().get(&key).cloned();
        if let Some(o) = &self.observer {
            o.plan_cache(hit.is_some());
        }
        hit
    }

    /// Parses, validates and plans an operation (cached by text and operation name).
    pub fn prepare(
        &self,
        query: &str,
        operation_name: Option<&str>,
    ) -> Result<Arc<Prepared>, RequestError> {
        let key = Self::cache_key(query, operation_name);
        if let Some(hit) = self.op_cache.lock().get(&key) {
            return Ok(hit.clone());
        }
        let prepared = Arc::new(self.prepare_uncached(query, operation_name)?);
        self.op_cache.lock().put(key, prepared.clone());
        Ok(prepared)
    }

    pub fn parse(&self, query: &str) -> Result<Document, RequestError> {
        graphql_tools::parser::parse_query_with_token_limit::<String>(
            query,
            self.options.parser_token_limit,
        )
        .map(|d| d.into_static())
        .map_err(|e| {
            let msg = e.to_string();
            let msg = msg.trim().to_owned();
            RequestError::client(vec![GraphQLError::with_code(
                format!("Syntax Error: {msg}"),
                codes::GRAPHQL_PARSE_FAILED,
            )])
        })
    }

    fn prepare_uncached(
        &self,
        query: &str,
        operation_name: Option<&str>,
    ) -> Result<Prepared, RequestError> {
        let sg = &self.supergraph;
        let doc = self.parse(query)?;
        let fragments = fragment_map(&doc);
        // Limits first, in one linear walk of every operation and fragment: a document
        // built to be expensive (a fragment bomb) is refused before validation, whose
        // rules would expand it.
        {
            let roots: Vec<(&str, &SelectionSet)> = doc
                .definitions
                .iter()
                .filter_map(|d| match d {
                    Definition::Operation(op) => {
                        let root = match op {
                            OperationDefinition::Mutation(_) => sg.schema.mutation_type.as_deref(),
                            OperationDefinition::Subscription(_) => {
                                sg.schema.subscription_type.as_deref()
                            }
                            _ => Some(sg.schema.query_type.as_str()),
                        };
                        Some((root.unwrap_or(""), op_parts(op).1))
                    }
                    Definition::Fragment(_) => None,
                })
                .collect();
            let measure = crate::limits::measure_document(
                &sg.schema,
                &roots,
                &fragments,
                self.options.limits.default_list_size,
            );
            crate::limits::check(&measure, &self.options.limits)
                .map_err(|e| RequestError::client(vec![e]))?;
        }
        let validation = validate(&sg.api_schema, &doc, &sg.validation_plan);
        if !validation.is_empty() {
            return Err(RequestError::client(
                validation
                    .into_iter()
                    .map(|e| {
                        let mut g =
                            GraphQLError::with_code(e.message, codes::GRAPHQL_VALIDATION_FAILED);
                        for l in e.locations {
                            g = g.with_location(l.line, l.column);
                        }
                        g
                    })
                    .collect(),
            ));
        }
        let ops: Vec<(usize, &OperationDefinition)> = doc
            .definitions
            .iter()
            .enumerate()
            .filter_map(|(i, d)| match d {
                Definition::Operation(op) => Some((i, op)),
                Definition::Fragment(_) => None,
            })
            .collect();
        let (op_index, op) = match operation_name {
            Some(name) => ops
                .iter()
                .find(|(_, op)| op_name(op) == Some(name))
                .copied()
                .ok_or_else(|| {
                    RequestError::client(vec![GraphQLError::with_code(
                        format!("Unknown operation named \"{name}\"."),
                        codes::OPERATION_RESOLUTION_FAILURE,
                    )])
                })?,
            None if ops.len() == 1 => ops[0],
            None => {
                return Err(RequestError::client(vec![GraphQLError::with_code(
                    if ops.is_empty() {
                        "Must provide an operation."
                    } else {
                        "Must provide operation name if query contains multiple operations."
                    },
                    codes::OPERATION_RESOLUTION_FAILURE,
                )]));
            }
        };
        let kind = match op {
            OperationDefinition::SelectionSet(_) | OperationDefinition::Query(_) => OpKind::Query,
            OperationDefinition::Mutation(_) => OpKind::Mutation,
            OperationDefinition::Subscription(_) => OpKind::Subscription,
        };
        let root_type = match kind {
            OpKind::Query => Some(sg.schema.query_type.clone()),
            OpKind::Mutation => sg.schema.mutation_type.clone(),
            OpKind::Subscription => sg.schema.subscription_type.clone(),
        }
        .ok_or_else(|| {
            RequestError::client(vec![GraphQLError::with_code(
                format!("The schema has no {} type.", kind.as_str()),
                codes::GRAPHQL_VALIDATION_FAILED,
            )])
        })?;

        // Introspection root fields are answered by the router: strip them before planning.
        let mut planning_doc = doc.clone();
        let deferring = crate::defer::may_defer(query);
        if deferring {
            crate::defer::strip_directives(&mut planning_doc);
        }
        let (has_introspection, needs_plan) =
            strip_introspection(&mut planning_doc, op_index, kind);
        if has_introspection && !self.options.introspection {
            return Err(RequestError::client(vec![GraphQLError::with_code(
                "GraphQL introspection is not allowed by the router.",
                codes::INTROSPECTION_DISABLED,
            )]));
        }
        let plan = if needs_plan {
            Some(self.plan(&planning_doc, op_name(op))?)
        } else {
            None
        };
        let defer = if deferring && kind == OpKind::Query {
            self.deferral(&doc, op_index, kind, &root_type, op_name(op))?
                .map(Arc::new)
        } else {
            None
        };
        Ok(Prepared {
            doc,
            fragments,
            op_index,
            kind,
            root_type,
            plan,
            has_introspection,
            defer,
        })
    }

    /// The initial part of a query with deferred fragments, or `None` when nothing in
    /// it is deferred.
    fn deferral(
        &self,
        doc: &Document,
        op_index: usize,
        kind: OpKind,
        root_type: &str,
        name: Option<&str>,
    ) -> Result<Option<Deferral>, RequestError> {
        let Some(Definition::Operation(op)) = doc.definitions.get(op_index) else {
            return Ok(None);
        };
        let mut fragments = Vec::new();
        let mut if_variables = Vec::new();
        crate::defer::collect(
            doc,
            op_parts(op).1,
            &mut Vec::new(),
            &mut fragments,
            &mut if_variables,
            0,
        );
        if fragments.is_empty() {
            return Ok(None);
        }
        let initial_doc = crate::defer::without_deferred(doc, false);
        let mut planning_doc = crate::defer::without_deferred(doc, true);
        let (has_introspection, needs_plan) =
            strip_introspection(&mut planning_doc, op_index, kind);
        let plan = if needs_plan {
            Some(self.plan(&planning_doc, name)?)
        } else {
            None
        };
        let initial_fragments = fragment_map(&initial_doc);
        Ok(Some(Deferral {
            initial: Prepared {
                doc: initial_doc,
                fragments: initial_fragments,
                op_index,
                kind,
                root_type: root_type.to_owned(),
                plan,
                has_introspection,
                defer: None,
            },
            fragments,
            if_variables,
        }))
    }

    fn plan(&self, doc: &Document, name: Option<&str>) -> Result<Arc<QueryPlan>, RequestError> {
        let sg = &self.supergraph;
        let planning_failed = |msg: String| RequestError {
            errors: vec![GraphQLError::with_code(msg, codes::QUERY_PLANNING_FAILED)],
            client_error: false,
            method_not_allowed: false,
        };
        let normalized = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            normalize_operation(&sg.planner.supergraph, doc, name)
        }))
        .map_err(|_| planning_failed("operation normalisation failed".into()))?
        .map_err(|e| planning_failed(format!("operation normalisation failed: {e}")))?;
        let key = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            normalized.operation.hash().hash(&mut h);
            name.hash(&mut h);
            h.finish()
        };
        if let Some(hit) = self.plan_cache.lock().get(&key) {
            return Ok(hit.clone());
        }
        let timeout = self.options.planning_timeout;
        let plan = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sg.plan(&normalized.operation, timeout)
        }))
        .map_err(|_| planning_failed("query planning failed".into()))?
        .map_err(|e| planning_failed(format!("query planning failed: {e}")))?;
        let plan = Arc::new(plan);
        self.plan_cache.lock().put(key, plan.clone());
        Ok(plan)
    }

    /// Runs a GraphQL request end to end (not subscriptions: they need a stream).
    pub async fn execute(
        self: &Arc<Self>,
        request: &GraphQLRequest,
        ctx: &RequestContext,
    ) -> Result<Executed, RequestError> {
        let (prepared, variables) = self.prepare_request(request, ctx).await?;
        if prepared.kind == OpKind::Subscription {
            return Err(RequestError::client(vec![GraphQLError::with_code(
                "Subscriptions are served over WebSocket on /graphql, or over HTTP with \
                 `Accept: text/event-stream` or `multipart/mixed; subscriptionSpec=\"1.0\"`.",
                codes::BAD_REQUEST,
            )]));
        }
        Ok(self
            .run_prepared(
                &prepared,
                &variables,
                ctx.headers.clone(),
                Value::Object(Map::new()),
            )
            .await)
    }

    /// Prepares a request's operation (cached) and coerces its variables: everything
    /// before execution. Mutations over GET are refused here (subscriptions over GET
    /// are read-only: an `EventSource` sends them).
    pub async fn prepare_request(
        self: &Arc<Self>,
        request: &GraphQLRequest,
        ctx: &RequestContext,
    ) -> Result<(Arc<Prepared>, Map<String, Value>), RequestError> {
        let Some(query) = request.query.as_deref().filter(|q| !q.trim().is_empty()) else {
            return Err(RequestError::client(vec![GraphQLError::with_code(
                "Must provide query string.",
                codes::BAD_REQUEST,
            )]));
        };
        let prepared = self
            .prepare_off_thread(query, request.operation_name.as_deref())
            .await?;
        if ctx.is_get && prepared.kind == OpKind::Mutation {
            return Err(RequestError {
                errors: vec![GraphQLError::with_code(
                    format!(
                        "Can only perform a {} operation from a POST request.",
                        prepared.kind.as_str()
                    ),
                    codes::BAD_REQUEST,
                )],
                client_error: true,
                method_not_allowed: true,
            });
        }
        let variables = match &request.variables {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(map),
            Some(_) => {
                return Err(RequestError::client(vec![GraphQLError::with_code(
                    "Variables must be an object.",
                    codes::BAD_REQUEST,
                )]));
            }
        };
        let (var_defs, _) = prepared.operation();
        let variables = coerce_variables(var_defs, variables, &self.supergraph.schema)
            .map_err(RequestError::client)?;
        Ok((prepared, variables))
    }

    /// Executes a prepared operation; `initial` seeds the data tree (subscription events).
    pub async fn run_prepared(
        &self,
        prepared: &Prepared,
        variables: &Map<String, Value>,
        headers: ForwardHeaders,
        initial: Value,
    ) -> Executed {
        self.run_prepared_with(prepared, variables, headers, initial, None)
            .await
    }

    /// Resolves the rest of a subscription's selection for one event from the
    /// owning subgraph (`event_data`, with the errors it came with), through the
    /// other subgraphs.
    pub async fn run_subscription_event(
        &self,
        prepared: &Prepared,
        variables: &Map<String, Value>,
        headers: ForwardHeaders,
        event_data: Value,
        event_errors: Vec<GraphQLError>,
    ) -> Executed {
        self.run_prepared_with(prepared, variables, headers, event_data, Some(event_errors))
            .await
    }

    /// `event_errors` is given for a subscription event: those errors follow the
    /// ones of the execution in the response.
    async fn run_prepared_with(
        &self,
        prepared: &Prepared,
        variables: &Map<String, Value>,
        headers: ForwardHeaders,
        initial: Value,
        event_errors: Option<Vec<GraphQLError>>,
    ) -> Executed {
        let sg = &self.supergraph;
        let mut exec = Execution::new(
            &self.client,
            sg,
            variables,
            headers,
            prepared.kind == OpKind::Query,
        );
        if let Some(o) = &self.observer {
            exec.observer = Some(o.as_ref() as &dyn FetchObserver);
        }
        exec.subscription_event = event_errors.is_some();
        if initial.is_object() {
            *exec.data.lock() = crate::json::JValue::from(initial);
        }
        if let Some(node) = prepared.plan.as_ref().and_then(|p| p.node.as_ref()) {
            exec.run(node).await;
        }
        let (data, mut errors) = exec.into_parts();
        let (_, selection) = prepared.operation();
        let projector = Projector::new(
            &sg.schema,
            &sg.api_schema,
            &prepared.fragments,
            variables,
            &errors,
        );
        let (data_json, more) = projector.project(&prepared.root_type, selection, &data);
        errors.extend(more);
        errors.extend(event_errors.into_iter().flatten());
        let body = response_body(Some(&data_json), &errors);
        Executed { body, errors }
    }
}

fn fragment_map(doc: &Document) -> HashMap<String, FragmentDefinition> {
    doc.definitions
        .iter()
        .filter_map(|d| match d {
            Definition::Fragment(f) => Some((f.name.clone(), f.clone())),
            Definition::Operation(_) => None,
        })
        .collect()
}

/// Takes the introspection root fields (answered by the router) out of the operation
/// at `op_index`. Returns whether it had some, and whether what is left needs a plan.
fn strip_introspection(doc: &mut Document, op_index: usize, kind: OpKind) -> (bool, bool) {
    let mut has_introspection = false;
    if let Some(Definition::Operation(op)) = doc.definitions.get_mut(op_index) {
        let selection = match op {
            OperationDefinition::SelectionSet(s) => s,
            OperationDefinition::Query(q) => &mut q.selection_set,
            OperationDefinition::Mutation(m) => &mut m.selection_set,
            OperationDefinition::Subscription(s) => &mut s.selection_set,
        };
        if kind == OpKind::Query {
            selection.items.retain(|item| match item {
                Selection::Field(f) if f.name == "__schema" || f.name == "__type" => {
                    has_introspection = true;
                    false
                }
                _ => true,
            });
        }
    }
    let needs_plan = match doc.definitions.get(op_index) {
        Some(Definition::Operation(op)) => selection_needs_plan(op_parts(op).1, doc),
        _ => false,
    };
    (has_introspection, needs_plan)
}

/// Whether the (introspection-stripped) root selection needs subgraph data at all.
fn selection_needs_plan(selection: &SelectionSet, doc: &Document) -> bool {
    selection.items.iter().any(|item| match item {
        Selection::Field(f) => f.name != "__typename",
        Selection::InlineFragment(i) => selection_needs_plan(&i.selection_set, doc),
        Selection::FragmentSpread(s) => doc.definitions.iter().any(|d| match d {
            Definition::Fragment(f) if f.name == s.fragment_name => {
                selection_needs_plan(&f.selection_set, doc)
            }
            _ => false,
        }),
    })
}

/// Serialises `{"data": ..., "errors": [...]}`; `data` is omitted when `None`.
pub fn response_body(data: Option<&[u8]>, errors: &[GraphQLError]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.map_or(0, <[u8]>::len) + 32);
    out.push(b'{');
    if let Some(data) = data {
        out.extend_from_slice(b"\"data\":");
        out.extend_from_slice(data);
    }
    if !errors.is_empty() {
        if data.is_some() {
            out.push(b',');
        }
        out.extend_from_slice(b"\"errors\":");
        serde_json::to_writer(&mut out, errors).expect("errors always serialize");
    }
    out.push(b'}');
    out
}
