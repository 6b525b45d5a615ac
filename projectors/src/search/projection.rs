//! A search index as a projection: the runtime consumes, orders and checkpoints as for
//! any read model; this folds each batch over the documents it touches, keeps their
//! state in PostgreSQL (table `documents` of the version's schema, in the batch's
//! transaction) and writes what changed to the engine before returning. So the
//! checkpoint commits only after the engine confirmed the write; if the commit then
//! fails, the replay recomputes the same documents from the old state and writes them
//! again, which changes nothing.

use std::{collections::HashSet, sync::Arc};
use vectis_read_side::version_of_schema;

use futures::{future::BoxFuture, FutureExt};
use serde_json::Value;
use sqlx::PgConnection;

use super::{
    backend::{EngineError, SearchBackend},
    document::Body,
    documents::{DocKey, DocumentModel, Documents},
    engine_index_name,
    metrics::SearchMetrics,
};
use vectis_consumer::{
    event::ProjectedEvent,
    handler::{ApplyError, Handler},
};

use crate::projection::Projection;

pub struct SearchProjection {
    model: Arc<dyn DocumentModel>,
    backend: Arc<dyn SearchBackend>,
    namespace: String,
    metrics: SearchMetrics,
}

/// An engine's refusal or failure, as the runtime retries (transient) or parks it.
fn engine_failure(error: EngineError) -> ApplyError {
    ApplyError::Engine { transient: error.is_transient(), message: error.to_string() }
}

impl SearchProjection {
    pub fn new(
        model: Arc<dyn DocumentModel>,
        backend: Arc<dyn SearchBackend>,
        namespace: String,
        metrics: SearchMetrics,
    ) -> Self {
        Self { model, backend, namespace, metrics }
    }

    /// The engine's name for `version` of this index.
    pub fn engine_index(&self, version: i32) -> String {
        engine_index_name(&self.namespace, self.model.declaration().name, version)
    }

    async fn apply_events(
        &self,
        conn: &mut PgConnection,
        schema: &str,
        events: &[ProjectedEvent],
    ) -> Result<(), ApplyError> {
        let version = version_of_schema(schema)
            .ok_or_else(|| ApplyError::Engine { message: format!("unversioned schema {schema}"), transient: false })?;
        let declaration = self.model.declaration();
        let touched = events.iter().flat_map(|e| self.model.touches(e));
        let mut docs = load(conn, schema, self.model.link_field(), touched).await?;
        for event in events {
            self.model.apply(&mut docs, event);
        }
        save(conn, schema, self.model.link_field(), docs.changed_state()).await?;
        let changes = docs.engine_changes(declaration);
        if !changes.is_empty() {
            self.backend.write(&self.engine_index(version), declaration, &changes).await.map_err(engine_failure)?;
            self.metrics.indexed.get_or_create(&SearchMetrics::label(declaration.name)).inc_by(changes.len() as u64);
        }
        Ok(())
    }
}

/// The documents `keys` name, as stored.
async fn load(
    conn: &mut PgConnection,
    schema: &str,
    link_field: Option<&'static str>,
    keys: impl Iterator<Item = DocKey>,
) -> Result<Documents, sqlx::Error> {
    let (mut ids, mut links) = (HashSet::new(), HashSet::new());
    for key in keys {
        match key {
            DocKey::Id(id) => ids.insert(id),
            DocKey::Linked(value) => links.insert(value),
        };
    }
    let ids: Vec<String> = ids.into_iter().collect();
    let links: Vec<String> = links.into_iter().collect();
    let rows: Vec<(String, Value)> = sqlx::query_as(&format!(
        "SELECT doc_id, body FROM {schema}.documents WHERE doc_id = ANY($1) OR link = ANY($2)"
    ))
    .bind(&ids)
    .bind(&links)
    .fetch_all(&mut *conn)
    .await?;
    let rows = rows.into_iter().filter_map(|(id, body)| match body {
        Value::Object(body) => Some((id, body)),
        _ => None,
    });
    Ok(Documents::loaded(rows, link_field))
}

async fn save(
    conn: &mut PgConnection,
    schema: &str,
    link_field: Option<&str>,
    changed: Vec<(String, Option<Body>)>,
) -> Result<(), sqlx::Error> {
    let (mut upsert_ids, mut links, mut bodies, mut deleted) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (id, body) in changed {
        match body {
            Some(body) => {
                upsert_ids.push(id);
                links.push(link_field.and_then(|f| body.get(f)).and_then(Value::as_str).map(str::to_string));
                bodies.push(Value::Object(body));
            }
            None => deleted.push(id),
        }
    }
    if !upsert_ids.is_empty() {
        sqlx::query(&format!(
            "INSERT INTO {schema}.documents (doc_id, link, body)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::jsonb[])
             ON CONFLICT (doc_id) DO UPDATE SET link = EXCLUDED.link, body = EXCLUDED.body"
        ))
        .bind(&upsert_ids)
        .bind(&links)
        .bind(&bodies)
        .execute(&mut *conn)
        .await?;
    }
    if !deleted.is_empty() {
        sqlx::query(&format!("DELETE FROM {schema}.documents WHERE doc_id = ANY($1)"))
            .bind(&deleted)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

impl Handler for SearchProjection {
    fn spec(&self) -> &'static vectis_read_side::ProjectionSpec {
        self.model.declaration().projection
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        schema: &'a str,
        events: &'a [ProjectedEvent],
    ) -> BoxFuture<'a, Result<(), ApplyError>> {
        self.apply_events(conn, schema, events).boxed()
    }

    fn prepare_version(&self, version: i32) -> BoxFuture<'_, Result<(), ApplyError>> {
        async move {
            self.backend.prepare(&self.engine_index(version), self.model.declaration()).await.map_err(engine_failure)
        }
        .boxed()
    }

    fn release_version(&self, version: i32) {
        self.backend.release(&self.engine_index(version));
    }
}

impl Projection for SearchProjection {
    fn tables_ddl(&self) -> &'static str {
        // `link`: the value of the model's link field, by which another stream's event
        // finds the documents it updates (B-tree: a GIN index on the body answered
        // such lookups in ~0.7 ms each while its pending list grew, 1.5k events/s).
        "CREATE TABLE IF NOT EXISTS {schema}.documents (doc_id text PRIMARY KEY, link text, body jsonb NOT NULL);
         CREATE INDEX IF NOT EXISTS documents_link ON {schema}.documents (link) WHERE link IS NOT NULL;"
    }

    /// None: readers search the engine, not PostgreSQL.
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn drop_version_outside(&self, version: i32) -> BoxFuture<'_, Result<(), ApplyError>> {
        async move { self.backend.delete_index(&self.engine_index(version)).await.map_err(engine_failure) }.boxed()
    }
}
