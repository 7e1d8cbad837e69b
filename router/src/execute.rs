//! Execution of a query plan: root and entity fetches, sequences, parallel branches,
//! flatten paths with type conditions, conditions on variables, batched entity fetches,
//! and input/output rewrites. Results are merged into one data tree; the projection
//! step then shapes the client's response from it.

use std::time::Instant;

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, join_all};
use hive_router_query_planner::ast::selection_item::SelectionItem;
use hive_router_query_planner::ast::selection_set::SelectionSet;
use hive_router_query_planner::planner::plan_nodes::{
    BatchFetchNode, FetchNode, FetchNodePathSegment, FetchRewrite, FlattenNodePathSegment, PlanNode,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{GraphQLError, codes};
use crate::json::{JObject, JValue};
use crate::subgraph::{FetchError, ForwardHeaders, SubgraphClient};
use crate::supergraph::Supergraph;

/// One step of a path into the data tree (keys borrowed from the query plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathSeg<'p> {
    Key(&'p str),
    Index(usize),
}

impl PathSeg<'_> {
    pub fn to_json(&self) -> Value {
        match self {
            PathSeg::Key(k) => Value::String((*k).to_owned()),
            PathSeg::Index(i) => Value::from(*i),
        }
    }
}

/// Entity representations of one fetch, deduplicated and already written as a JSON
/// array (they are sent as they are), and for every entity position its response path
/// and the index of its representation.
struct Representations<'p> {
    json: Vec<u8>,
    count: usize,
    targets: Vec<(Vec<PathSeg<'p>>, usize)>,
}

#[derive(Deserialize)]
struct SubgraphResponse {
    #[serde(default)]
    data: Option<JValue>,
    #[serde(default)]
    errors: Option<Vec<Value>>,
}

#[derive(Serialize)]
struct SubgraphBody<'a> {
    query: &'a str,
    #[serde(skip_serializing_if = "Map::is_empty")]
    variables: &'a Map<String, Value>,
}

/// Observer of subgraph calls (metrics); kept abstract so the executor stays plain.
pub trait FetchObserver: Send + Sync {
    fn fetched(&self, subgraph: &str, elapsed: std::time::Duration, ok: bool);
}

pub struct Execution<'a> {
    pub client: &'a SubgraphClient,
    pub supergraph: &'a Supergraph,
    pub variables: &'a Map<String, Value>,
    pub headers: ForwardHeaders,
    /// Identical queries may share one subgraph request; never mutations.
    pub dedupe: bool,
    pub observer: Option<&'a dyn FetchObserver>,
    /// Executing for a subscription event: the primary fetch already happened upstream.
    pub subscription_event: bool,
    pub data: Mutex<JValue>,
    pub errors: Mutex<Vec<GraphQLError>>,
}

impl<'a> Execution<'a> {
    pub fn new(
        client: &'a SubgraphClient,
        supergraph: &'a Supergraph,
        variables: &'a Map<String, Value>,
        headers: ForwardHeaders,
        dedupe: bool,
    ) -> Self {
        Self {
            client,
            supergraph,
            variables,
            headers,
            dedupe,
            observer: None,
            subscription_event: false,
            data: Mutex::new(JValue::Object(JObject::new())),
            errors: Mutex::new(Vec::new()),
        }
    }

    pub fn into_parts(self) -> (JValue, Vec<GraphQLError>) {
        (self.data.into_inner(), self.errors.into_inner())
    }

    pub fn run<'b>(&'b self, node: &'b PlanNode) -> BoxFuture<'b, ()> {
        async move {
            match node {
                PlanNode::Fetch(fetch) => {
                    if fetch.requires.is_some() {
                        self.entity_fetch(&[], fetch).await
                    } else {
                        self.root_fetch(fetch).await
                    }
                }
                PlanNode::BatchFetch(batch) => self.batch_fetch(batch).await,
                PlanNode::Sequence(seq) => {
                    for child in &seq.nodes {
                        self.run(child).await;
                    }
                }
                PlanNode::Parallel(par) => {
                    join_all(par.nodes.iter().map(|child| self.run(child))).await;
                }
                PlanNode::Flatten(flatten) => match flatten.node.as_ref() {
                    PlanNode::Fetch(fetch) => {
                        self.entity_fetch(flatten.path.as_slice(), fetch).await
                    }
                    other => self.run(other).await,
                },
                PlanNode::Condition(cond) => {
                    let value = self
                        .variables
                        .get(&cond.condition)
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    let branch = if value {
                        cond.if_clause.as_deref()
                    } else {
                        cond.else_clause.as_deref()
                    };
                    if let Some(branch) = branch {
                        self.run(branch).await;
                    }
                }
                PlanNode::Defer(defer) => {
                    // No incremental delivery: everything is sent in one response.
                    if let Some(primary) = defer.primary.node.as_deref() {
                        self.run(primary).await;
                    }
                    for deferred in &defer.deferred {
                        if let Some(node) = deferred.node.as_deref() {
                            self.run(node).await;
                        }
                    }
                }
                PlanNode::Subscription(sub) => {
                    if !self.subscription_event {
                        self.root_fetch(&sub.primary).await
                    }
                }
            }
        }
        .boxed()
    }

    fn variables_for(
        &self,
        usages: Option<&std::collections::BTreeSet<String>>,
    ) -> Map<String, Value> {
        variables_used(usages, self.variables)
    }

    async fn send(
        &self,
        subgraph: &str,
        query: &str,
        variables: &Map<String, Value>,
        raw: &[(&str, &[u8])],
    ) -> Result<SubgraphResponse, GraphQLError> {
        let body = if raw.is_empty() {
            serde_json::to_vec(&SubgraphBody { query, variables })
                .expect("JSON values always serialize")
        } else {
            body_with_raw(query, variables, raw)
        };
        tracing::trace!(subgraph, body = %String::from_utf8_lossy(&body), "subgraph request");
        let started = Instant::now();
        let result = self
            .client
            .send(subgraph, Bytes::from(body), &self.headers, self.dedupe)
            .await;
        if let Some(observer) = self.observer {
            observer.fetched(subgraph, started.elapsed(), result.is_ok());
        }
        let bytes = result.map_err(|e| fetch_error(subgraph, &e))?;
        let invalid = || {
            GraphQLError::with_code(
                format!("subgraph '{subgraph}' returned an invalid GraphQL response"),
                codes::SUBGRAPH_BAD_RESPONSE,
            )
            .with_extension("serviceName", subgraph)
        };
        // The body checked as UTF-8 once, in one pass, rather than string by string.
        let text = std::str::from_utf8(&bytes).map_err(|_| invalid())?;
        serde_json::from_str::<SubgraphResponse>(text).map_err(|_| invalid())
    }

    /// `send`, with a failed fetch recorded among the response errors: one error per
    /// response position the fetch was to fill in (`paths`), or one without a path
    /// when there is none.
    async fn send_or_record(
        &self,
        subgraph: &str,
        query: &str,
        variables: &Map<String, Value>,
        raw: &[(&str, &[u8])],
        paths: impl FnOnce() -> Vec<Vec<Value>>,
    ) -> Option<SubgraphResponse> {
        match self.send(subgraph, query, variables, raw).await {
            Ok(response) => Some(response),
            Err(e) => {
                // Only a failure needs the positions; they are not built otherwise.
                let paths = paths();
                let mut sink = self.errors.lock();
                if paths.is_empty() {
                    sink.push(e);
                } else {
                    sink.extend(paths.into_iter().map(|p| e.clone().with_path(p)));
                }
                None
            }
        }
    }

    /// Records errors a subgraph returned, as they are.
    fn push_subgraph_errors(&self, errors: &[Value]) {
        let mut sink = self.errors.lock();
        for e in errors {
            sink.push(GraphQLError::from_subgraph(e));
        }
    }

    async fn root_fetch(&self, fetch: &FetchNode) {
        let vars = self.variables_for(fetch.variable_usages.as_ref());
        let paths = || {
            response_keys(&fetch.operation.document.operation.selection_set)
                .into_iter()
                .map(|key| vec![Value::String(key.to_owned())])
                .collect()
        };
        let Some(response) = self
            .send_or_record(
                &fetch.service_name,
                &fetch.operation.document_str,
                &vars,
                &[],
                paths,
            )
            .await
        else {
            return;
        };
        if let Some(mut data) = response.data {
            self.apply_rewrites(&mut data, fetch.output_rewrites.as_ref());
            if data.is_object() {
                deep_merge(&mut self.data.lock(), data);
            }
        }
        if let Some(errors) = response.errors {
            self.push_subgraph_errors(&errors);
        }
    }

    /// Walks `path` from the root and, for each entity object found, builds its
    /// representation from `requires`: each distinct one once, written as JSON.
    fn collect_representations<'p>(
        &self,
        paths: &[&'p [FlattenNodePathSegment]],
        requires: &SelectionSet,
        input_rewrites: Option<&Vec<FetchRewrite>>,
    ) -> Representations<'p> {
        let data = self.data.lock();
        let mut json = vec![b'['];
        let mut count = 0;
        let mut seen: rustc_hash::FxHashMap<Box<[u8]>, usize> = Default::default();
        let mut one = Vec::new();
        let mut keys = Vec::new();
        let mut targets: Vec<(Vec<PathSeg<'p>>, usize)> = Vec::new();
        let mut cur = Vec::new();
        for path in paths {
            walk_entities(&data, path, &mut cur, &mut |obj, p| {
                let typename = obj.get("__typename").and_then(JValue::as_str);
                one.clear();
                // Written straight as JSON when nothing rewrites it; otherwise (or when
                // fragments select one key twice) through a JSON value.
                let direct = if input_rewrites.is_none_or(Vec::is_empty) {
                    self.write_requires(obj, typename, requires, &mut one, &mut keys)
                } else {
                    None
                };
                match direct {
                    Some(true) => {}
                    // Entities whose type matches no fragment of `requires` are not fetched.
                    Some(false) => return,
                    None => {
                        let mut rep = JObject::new();
                        if !self.project_requires(obj, typename, requires, &mut rep)
                            || rep.is_empty()
                        {
                            return;
                        }
                        let mut rep = JValue::Object(rep);
                        self.apply_rewrites(&mut rep, input_rewrites);
                        one.clear();
                        serde_json::to_writer(&mut one, &rep)
                            .expect("JSON values always serialize");
                    }
                }
                let idx = match seen.get(one.as_slice()) {
                    Some(idx) => *idx,
                    None => {
                        if count > 0 {
                            json.push(b',');
                        }
                        json.extend_from_slice(&one);
                        seen.insert(one.as_slice().into(), count);
                        count += 1;
                        count - 1
                    }
                };
                targets.push((p.to_vec(), idx));
            });
        }
        json.push(b']');
        Representations {
            json,
            count,
            targets,
        }
    }

    async fn entity_fetch(&self, path: &[FlattenNodePathSegment], fetch: &FetchNode) {
        let Some(requires) = fetch.requires.as_ref() else {
            return self.root_fetch(fetch).await;
        };
        let reps = self.collect_representations(&[path], requires, fetch.input_rewrites.as_ref());
        if reps.count == 0 {
            return;
        }
        let targets = reps.targets;
        let vars = self.variables_for(fetch.variable_usages.as_ref());
        let paths = || {
            failure_paths(
                &targets,
                &entity_keys(&fetch.operation.document.operation.selection_set, None),
            )
        };
        let Some(response) = self
            .send_or_record(
                &fetch.service_name,
                &fetch.operation.document_str,
                &vars,
                &[("representations", &reps.json)],
                paths,
            )
            .await
        else {
            return;
        };
        let entities = response
            .data
            .and_then(|mut d| d.get_mut("_entities").map(JValue::take));
        self.merge_entities(entities, fetch.output_rewrites.as_ref(), &targets);
        if let Some(errors) = response.errors {
            self.push_entity_errors(&errors, "_entities", &targets);
        }
    }

    async fn batch_fetch(&self, batch: &BatchFetchNode) {
        let vars = self.variables_for(batch.variable_usages.as_ref());
        let mut per_alias = Vec::with_capacity(batch.entity_batch.aliases.len());
        let mut raws = Vec::with_capacity(batch.entity_batch.aliases.len());
        for alias in &batch.entity_batch.aliases {
            let paths: Vec<&[FlattenNodePathSegment]> =
                alias.merge_paths.iter().map(|p| p.as_slice()).collect();
            let reps = self.collect_representations(
                &paths,
                &alias.requires,
                alias.input_rewrites.as_ref(),
            );
            raws.push(reps.json);
            per_alias.push(reps.targets);
        }
        let raw: Vec<(&str, &[u8])> = batch
            .entity_batch
            .aliases
            .iter()
            .zip(&raws)
            .map(|(alias, json)| {
                (
                    alias.representations_variable_name.as_str(),
                    json.as_slice(),
                )
            })
            .collect();
        if per_alias.iter().all(Vec::is_empty) {
            return;
        }
        let selection = &batch.operation.document.operation.selection_set;
        let paths = || {
            batch
                .entity_batch
                .aliases
                .iter()
                .zip(&per_alias)
                .flat_map(|(alias, targets)| {
                    failure_paths(targets, &entity_keys(selection, Some(&alias.alias)))
                })
                .collect()
        };
        let Some(response) = self
            .send_or_record(
                &batch.service_name,
                &batch.operation.document_str,
                &vars,
                &raw,
                paths,
            )
            .await
        else {
            return;
        };
        let mut data = response.data.unwrap_or(JValue::Null);
        for (alias, targets) in batch.entity_batch.aliases.iter().zip(&per_alias) {
            let entities = data.get_mut(&alias.alias).map(JValue::take);
            self.merge_entities(entities, alias.output_rewrites.as_ref(), targets);
        }
        if let Some(errors) = response.errors {
            for (alias, targets) in batch.entity_batch.aliases.iter().zip(&per_alias) {
                let mine: Vec<Value> = errors
                    .iter()
                    .filter(|e| {
                        e.get("path").and_then(|p| p.get(0)).and_then(Value::as_str)
                            == Some(alias.alias.as_str())
                    })
                    .cloned()
                    .collect();
                self.push_entity_errors(&mine, &alias.alias, targets);
            }
            let rest: Vec<Value> = errors
                .iter()
                .filter(|e| {
                    let head = e.get("path").and_then(|p| p.get(0)).and_then(Value::as_str);
                    !batch
                        .entity_batch
                        .aliases
                        .iter()
                        .any(|a| Some(a.alias.as_str()) == head)
                })
                .cloned()
                .collect();
            self.push_subgraph_errors(&rest);
        }
    }

    fn merge_entities(
        &self,
        entities: Option<JValue>,
        output_rewrites: Option<&Vec<FetchRewrite>>,
        targets: &[(Vec<PathSeg>, usize)],
    ) {
        let Some(JValue::Array(mut entities)) = entities else {
            return;
        };
        for entity in entities.iter_mut() {
            self.apply_rewrites(entity, output_rewrites);
        }
        // How many positions each entity still fills: the last one takes it, the
        // others get a copy.
        let mut uses = vec![0usize; entities.len()];
        for (_, idx) in targets {
            if let Some(n) = uses.get_mut(*idx) {
                *n += 1;
            }
        }
        let mut data = self.data.lock();
        for (path, idx) in targets {
            let Some(entity) = entities.get_mut(*idx) else {
                continue;
            };
            if !entity.is_object() {
                continue;
            }
            uses[*idx] -= 1;
            let entity = if uses[*idx] == 0 {
                entity.take()
            } else {
                entity.clone()
            };
            if let Some(target) = navigate_mut(&mut data, path) {
                deep_merge(target, entity);
            }
        }
    }

    fn push_entity_errors(
        &self,
        errors: &[Value],
        root_key: &str,
        targets: &[(Vec<PathSeg>, usize)],
    ) {
        let mut sink = self.errors.lock();
        for raw in errors {
            let mut error = GraphQLError::from_subgraph(raw);
            if let Some(path) = error.path.take() {
                let single = targets.iter().all(|(_, t)| *t == 0);
                // Some servers omit the index under `_entities`; with a single
                // representation the entity is still known.
                let (idx, skip) = match (path.first().and_then(Value::as_str), path.get(1)) {
                    (Some(head), Some(Value::Number(n))) if head == root_key => (n.as_u64(), 2),
                    (Some(head), _) if head == root_key && single => (Some(0), 1),
                    _ => (None, 0),
                };
                match idx.and_then(|i| targets.iter().find(|(_, t)| *t as u64 == i)) {
                    Some((target_path, _)) => {
                        let mut mapped: Vec<Value> =
                            target_path.iter().map(PathSeg::to_json).collect();
                        mapped.extend(path.into_iter().skip(skip));
                        error.path = Some(mapped);
                    }
                    None => error.path = None,
                }
            }
            sink.push(error);
        }
    }

    fn typename_matches(&self, typename: &str, names: &std::collections::BTreeSet<String>) -> bool {
        names.contains(typename)
            || names.iter().any(|n| {
                self.supergraph.schema.type_applies(typename, n)
                    || self
                        .supergraph
                        .planner
                        .supergraph
                        .interface_members(n)
                        .is_some_and(|m| m.contains(typename))
            })
    }

    /// [`Self::project_requires`] written straight into `out` as a JSON object:
    /// `Some(false)` when a required field is missing or nothing applies (the entity is
    /// not fetched), `None` when a key is selected twice at one level (the caller
    /// merges through a JSON value instead).
    /// `keys` is scratch space (kept by the caller so entities share one allocation).
    fn write_requires<'s>(
        &self,
        obj: &JObject,
        typename: Option<&str>,
        selection: &'s SelectionSet,
        out: &mut Vec<u8>,
        keys: &mut Vec<&'s str>,
    ) -> Option<bool> {
        let start = out.len();
        out.push(b'{');
        keys.clear();
        let ok = self.write_requires_fields(obj, typename, selection, out, keys)?;
        if !ok || keys.is_empty() {
            out.truncate(start);
            return Some(false);
        }
        out.push(b'}');
        Some(true)
    }

    fn write_requires_fields<'s>(
        &self,
        obj: &JObject,
        typename: Option<&str>,
        selection: &'s SelectionSet,
        out: &mut Vec<u8>,
        keys: &mut Vec<&'s str>,
    ) -> Option<bool> {
        for item in &selection.items {
            match item {
                SelectionItem::Field(field) => {
                    let key = field.selection_identifier();
                    let Some(value) = obj.get(field.name.as_str()).or_else(|| obj.get(key)) else {
                        return Some(false);
                    };
                    if keys.contains(&key) {
                        return None;
                    }
                    if !keys.is_empty() {
                        out.push(b',');
                    }
                    keys.push(key);
                    // A field's response key is a GraphQL name.
                    crate::json::write_name(out, key);
                    out.push(b':');
                    if field.selections.is_empty() {
                        crate::json::write_value(out, value);
                    } else if !self.write_requires_value(value, &field.selections, out)? {
                        return Some(false);
                    }
                }
                SelectionItem::InlineFragment(fragment) => {
                    if self.fragment_applies(typename, &fragment.type_condition)
                        && !self.write_requires_fields(
                            obj,
                            typename,
                            &fragment.selections,
                            out,
                            keys,
                        )?
                    {
                        return Some(false);
                    }
                }
                SelectionItem::FragmentSpread(_) => {}
            }
        }
        Some(true)
    }

    fn write_requires_value(
        &self,
        value: &JValue,
        selection: &SelectionSet,
        out: &mut Vec<u8>,
    ) -> Option<bool> {
        match value {
            JValue::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    if !self.write_requires_value(item, selection, out)? {
                        return Some(false);
                    }
                }
                out.push(b']');
                Some(true)
            }
            JValue::Object(obj) => {
                let typename = obj.get("__typename").and_then(JValue::as_str);
                out.push(b'{');
                let mut keys = Vec::new();
                let ok = self.write_requires_fields(obj, typename, selection, out, &mut keys)?;
                out.push(b'}');
                Some(ok)
            }
            other => {
                crate::json::write_value(out, other);
                Some(true)
            }
        }
    }

    /// Whether an inline fragment of `requires` applies to an entity of `typename`.
    fn fragment_applies(&self, typename: Option<&str>, condition: &str) -> bool {
        match typename {
            Some(t) => {
                t == condition
                    || self.supergraph.schema.type_applies(t, condition)
                    || self
                        .supergraph
                        .planner
                        .supergraph
                        .interface_members(condition)
                        .is_some_and(|m| m.contains(t))
            }
            None => true,
        }
    }

    /// Copies the fields selected by `requires` from an entity into its representation.
    /// Returns false when a required field is missing (the entity cannot be fetched).
    fn project_requires(
        &self,
        obj: &JObject,
        typename: Option<&str>,
        selection: &SelectionSet,
        out: &mut JObject,
    ) -> bool {
        for item in &selection.items {
            match item {
                SelectionItem::Field(field) => {
                    // In `requires`, an alias names the representation key while the
                    // field name is the key in the fetched data.
                    let key = field.selection_identifier();
                    let Some(value) = obj.get(field.name.as_str()).or_else(|| obj.get(key)) else {
                        return false;
                    };
                    if field.selections.is_empty() {
                        out.insert(key, value.clone());
                    } else {
                        match self.project_requires_value(value, &field.selections) {
                            Some(v) => {
                                out.insert(key, v);
                            }
                            None => return false,
                        }
                    }
                }
                SelectionItem::InlineFragment(fragment) => {
                    let applies = match typename {
                        Some(t) => {
                            t == fragment.type_condition
                                || self
                                    .supergraph
                                    .schema
                                    .type_applies(t, &fragment.type_condition)
                                || self
                                    .supergraph
                                    .planner
                                    .supergraph
                                    .interface_members(&fragment.type_condition)
                                    .is_some_and(|m| m.contains(t))
                        }
                        None => true,
                    };
                    if applies && !self.project_requires(obj, typename, &fragment.selections, out) {
                        return false;
                    }
                }
                SelectionItem::FragmentSpread(_) => {}
            }
        }
        true
    }

    fn project_requires_value(&self, value: &JValue, selection: &SelectionSet) -> Option<JValue> {
        match value {
            JValue::Array(items) => items
                .iter()
                .map(|v| self.project_requires_value(v, selection))
                .collect::<Option<Vec<_>>>()
                .map(JValue::Array),
            JValue::Object(obj) => {
                let mut out = JObject::new();
                let typename = obj.get("__typename").and_then(JValue::as_str);
                self.project_requires(obj, typename, selection, &mut out)
                    .then_some(JValue::Object(out))
            }
            other => Some(other.clone()),
        }
    }

    fn apply_rewrites(&self, value: &mut JValue, rewrites: Option<&Vec<FetchRewrite>>) {
        for rewrite in rewrites.into_iter().flatten() {
            let path = match rewrite {
                FetchRewrite::ValueSetter(v) => &v.path,
                FetchRewrite::KeyRenamer(k) => &k.path,
            };
            self.apply_rewrite_at(value, path, rewrite);
        }
    }

    fn apply_rewrite_at(
        &self,
        value: &mut JValue,
        path: &[FetchNodePathSegment],
        rewrite: &FetchRewrite,
    ) {
        if let JValue::Array(items) = value {
            for item in items {
                self.apply_rewrite_at(item, path, rewrite);
            }
            return;
        }
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let JValue::Object(obj) = value else {
            return;
        };
        match first {
            FetchNodePathSegment::TypenameEquals(names) => {
                let matches = obj
                    .get("__typename")
                    .and_then(JValue::as_str)
                    .is_some_and(|t| self.typename_matches(t, names));
                if matches {
                    if rest.is_empty() {
                        return;
                    }
                    self.apply_rewrite_at(value, rest, rewrite);
                }
            }
            FetchNodePathSegment::Key(key) => {
                if rest.is_empty() {
                    match rewrite {
                        FetchRewrite::ValueSetter(setter) => {
                            obj.insert(
                                key.as_str(),
                                JValue::String(setter.set_value_to.as_str().into()),
                            );
                        }
                        FetchRewrite::KeyRenamer(renamer) => {
                            if let Some(v) = obj.remove(key) {
                                obj.insert(renamer.rename_key_to.as_str(), v);
                            }
                        }
                    }
                } else if let Some(child) = obj.get_mut(key) {
                    self.apply_rewrite_at(child, rest, rewrite);
                }
            }
        }
    }
}

/// The client's variables a subgraph operation uses (a fetch's `variable_usages`).
pub fn variables_used(
    usages: Option<&std::collections::BTreeSet<String>>,
    variables: &Map<String, Value>,
) -> Map<String, Value> {
    let mut vars = Map::new();
    for name in usages.into_iter().flatten() {
        if let Some(v) = variables.get(name) {
            vars.insert(name.clone(), v.clone());
        }
    }
    vars
}

/// The response keys a fetch's selection fills in at its own level (through inline
/// fragments; `__typename` aside).
fn response_keys(selection: &SelectionSet) -> Vec<&str> {
    let mut keys = Vec::new();
    for item in &selection.items {
        match item {
            SelectionItem::Field(field) => {
                let key = field.selection_identifier();
                if field.name != "__typename" && !keys.contains(&key) {
                    keys.push(key);
                }
            }
            SelectionItem::InlineFragment(fragment) => {
                for key in response_keys(&fragment.selections) {
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
            }
            SelectionItem::FragmentSpread(_) => {}
        }
    }
    keys
}

/// The keys an entity fetch fills in on each entity: those selected under its
/// `_entities` field (the one answering to `alias` in a batch).
fn entity_keys<'s>(selection: &'s SelectionSet, alias: Option<&str>) -> Vec<&'s str> {
    selection
        .items
        .iter()
        .find_map(|item| match item {
            SelectionItem::Field(field)
                if field.name == "_entities"
                    && alias.is_none_or(|a| field.selection_identifier() == a) =>
            {
                Some(response_keys(&field.selections))
            }
            _ => None,
        })
        .unwrap_or_default()
}

/// Where a failed entity fetch leaves nulls, for its errors' paths: on one entity, each
/// field it was to fill in; on several, the nearest position holding them all (so the
/// errors stay as many as the fields selected, not as the entities found).
fn failure_paths(targets: &[(Vec<PathSeg>, usize)], keys: &[&str]) -> Vec<Vec<Value>> {
    let Some((first, _)) = targets.first() else {
        return Vec::new();
    };
    let common = targets.iter().fold(first.len(), |n, (path, _)| {
        first
            .iter()
            .zip(path)
            .take(n)
            .take_while(|(a, b)| a == b)
            .count()
    });
    if common == 0 {
        return Vec::new();
    }
    let base: Vec<Value> = first[..common].iter().map(PathSeg::to_json).collect();
    if common < first.len() || targets.iter().any(|(p, _)| p.len() != common) || keys.is_empty() {
        return vec![base];
    }
    keys.iter()
        .map(|key| {
            let mut path = base.clone();
            path.push(Value::String((*key).to_owned()));
            path
        })
        .collect()
}

fn fetch_error(subgraph: &str, e: &FetchError) -> GraphQLError {
    GraphQLError::with_code(e.to_string(), e.code()).with_extension("serviceName", subgraph)
}

/// Called for every entity object found along a flatten path, with its path.
type EntityVisitor<'a, 'p> = dyn FnMut(&JObject, &[PathSeg<'p>]) + 'a;

fn walk_entities<'p>(
    value: &JValue,
    path: &'p [FlattenNodePathSegment],
    cur: &mut Vec<PathSeg<'p>>,
    f: &mut EntityVisitor<'_, 'p>,
) {
    match path.split_first() {
        None => match value {
            JValue::Object(obj) => f(obj, cur),
            JValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    cur.push(PathSeg::Index(i));
                    walk_entities(item, path, cur, f);
                    cur.pop();
                }
            }
            _ => {}
        },
        Some((seg, rest)) => match seg {
            FlattenNodePathSegment::Field(name) => {
                if let Some(child) = value.get(name.as_str()) {
                    cur.push(PathSeg::Key(name.as_str()));
                    walk_entities(child, rest, cur, f);
                    cur.pop();
                }
            }
            FlattenNodePathSegment::List => {
                if let JValue::Array(items) = value {
                    for (i, item) in items.iter().enumerate() {
                        cur.push(PathSeg::Index(i));
                        walk_entities(item, rest, cur, f);
                        cur.pop();
                    }
                }
            }
            FlattenNodePathSegment::TypeCondition(names) => {
                let matches = value.typename().is_some_and(|t| names.contains(t));
                if matches {
                    walk_entities(value, rest, cur, f);
                }
            }
        },
    }
}

fn navigate_mut<'v>(mut value: &'v mut JValue, path: &[PathSeg]) -> Option<&'v mut JValue> {
    for seg in path {
        value = match seg {
            PathSeg::Key(k) => value.get_mut(k)?,
            PathSeg::Index(i) => value.get_index_mut(*i)?,
        };
    }
    Some(value)
}

/// `{"query": ..., "variables": {...}}` with `raw` variables written as they are
/// (already JSON) after the others.
fn body_with_raw(query: &str, variables: &Map<String, Value>, raw: &[(&str, &[u8])]) -> Vec<u8> {
    let size = query.len() + raw.iter().map(|(_, r)| r.len() + 32).sum::<usize>() + 64;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(b"{\"query\":");
    serde_json::to_writer(&mut out, query).expect("a string always serializes");
    out.extend_from_slice(b",\"variables\":{");
    let mut first = true;
    for (name, value) in variables {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, name).expect("a string always serializes");
        out.push(b':');
        serde_json::to_writer(&mut out, value).expect("JSON values always serialize");
    }
    for (name, json) in raw {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, name).expect("a string always serializes");
        out.push(b':');
        out.extend_from_slice(json);
    }
    out.extend_from_slice(b"}}");
    out
}

/// Merges `source` into `target`: objects field by field, lists of equal length item by
/// item; anything else replaces the target.
pub fn deep_merge(target: &mut JValue, source: JValue) {
    match (target, source) {
        (JValue::Object(t), JValue::Object(s)) => {
            for (k, v) in s {
                match t.get_mut(&k) {
                    Some(existing) => deep_merge(existing, v),
                    None => t.push(k, v),
                }
            }
        }
        (JValue::Array(t), JValue::Array(s)) if t.len() == s.len() => {
            for (tv, sv) in t.iter_mut().zip(s) {
                deep_merge(tv, sv);
            }
        }
        (t, s) => *t = s,
    }
}
