//! `/v1/imports`: a bulk import as an asynchronous job. The file is the request body;
//! the answer (202) names the job, which `GET /v1/imports/{id}` reports on while this
//! process runs it. An upload is kept in the database until its import finishes, so a
//! restarted process resumes it (see [`ImportWorker::resume_unfinished`]).

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use vectis_runtime::auth::{require_any_scope, ApiKeys, Principal, Scope};

use super::path::{ApiPath, ApiQuery};
use super::{
    fields::{Bounded, Field, FreeText, Text},
    problem::{ApiError, FieldProblem},
    AppState,
};
use crate::{
    domain::DomainError,
    imports::{
        jobs::{self, Begun, ImportState, ImportStatus, NewImport},
        kinds::ImportKind,
        rows::{parse_mapping, Format},
        survey, ImportError, Importer,
    },
};

/// The largest file `POST /v1/imports` takes (`IMPORT_MAX_BYTES`); larger files go
/// through `vectis import`, which streams them.
pub const DEFAULT_IMPORT_MAX_BYTES: usize = 64 << 20;

/// Runs uploaded imports in this process, one run per import at a time.
#[derive(Clone)]
pub struct ImportWorker {
    importer: Importer,
    running: Arc<Mutex<HashSet<Uuid>>>,
    pub max_bytes: usize,
}

impl ImportWorker {
    pub fn new(importer: Importer, max_bytes: usize) -> Self {
        Self { importer, running: Arc::default(), max_bytes }
    }

    /// Starts a run of `import` unless this process is running it already.
    pub fn start(&self, import: ImportStatus) {
        if !self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(import.import_id) {
            return;
        }
        let worker = self.clone();
        tokio::spawn(async move {
            let id = import.import_id;
            let pool = worker.importer.pool().clone();
            match jobs::content(&pool, id).await {
                Ok(Some(content)) => {
                    if let Err(error) = worker.importer.run(&import, &content[..], |_| {}).await {
                        tracing::warn!(import_id = %id, %error, "an uploaded import stopped");
                    }
                }
                Ok(None) => tracing::warn!(import_id = %id, "an uploaded import has no file kept; it cannot run"),
                Err(error) => tracing::warn!(import_id = %id, %error, "cannot read an uploaded import's file"),
            }
            worker.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        });
    }

    /// Resumes every upload whose import has not finished (after a restart).
    pub async fn resume_unfinished(&self) -> Result<(), ImportError> {
        let pool = self.importer.pool().clone();
        for id in jobs::unfinished_uploads(&pool).await? {
            if let Some(import) = jobs::find(&pool, id, 0).await? {
                tracing::info!(import_id = %id, rows_through = import.rows_through, "resuming an uploaded import");
                self.start(import);
            }
        }
        Ok(())
    }
}

pub fn router(keys: &ApiKeys) -> OpenApiRouter<AppState> {
    // The scope an import needs is its kind's (checked in the handler).
    const IMPORTERS: &[Scope] = &[Scope::InventoryWrite, Scope::AccountsWrite];
    OpenApiRouter::new()
        .routes(routes!(start_import))
        .routes(routes!(import_status))
        .route_layer(axum::middleware::from_fn_with_state((keys.clone(), IMPORTERS), require_any_scope))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StartParams {
    /// What the rows are.
    kind: ImportKind,
    /// The file's name, for the record (its extension tells the format when the
    /// content type does not).
    #[param(inline)]
    file_name: Option<Text<255>>,
    /// Header renames, `HEADER=field`, comma-separated: `List Price=unit_price_minor`.
    #[param(inline)]
    map: Option<FreeText<2000>>,
}

/// Answers 202 with the new job, or 200 with the import this file already is.
#[utoipa::path(post, path = "/v1/imports", tag = "imports", params(StartParams),
    request_body(content = String, description = "The file: CSV with a header line (text/csv) or NDJSON (application/x-ndjson)", content_type = "text/csv"),
    responses(
        (status = 202, description = "Accepted: the import runs; poll its Location", body = ImportStatus),
        (status = 200, description = "This file was imported already (or is importing)", body = ImportStatus)),
    security(("api_key" = ["inventory:write", "accounts:write"])))]
async fn start_import(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(params): ApiQuery<StartParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Past the command body limit, up to the import's own (an extractor would apply
    // the command limit).
    let body = axum::body::to_bytes(body, state.imports.max_bytes).await.map_err(|_| ApiError::PayloadTooLarge)?;
    check_query(|problems| {
        params.file_name.check("file_name", problems);
        params.map.check("map", problems);
    })?;
    let kind = params.kind;
    if !principal.has(kind.scope()) {
        return Err(ApiError::Forbidden(format!("importing {} needs the {} scope", kind.as_str(), kind.scope())));
    }
    let file_name = params.file_name.as_ref().map_or_else(|| format!("upload.{}", kind.as_str()), Text::trimmed);
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let format = Format::detect(content_type).or_else(|| Format::detect(&file_name)).ok_or_else(|| {
        ApiError::UnreadableFile("send text/csv or application/x-ndjson, or a file_name ending .csv or .ndjson".into())
    })?;
    let renames = params.map.iter().flat_map(|m| m.as_str().split(',')).filter(|m| !m.trim().is_empty());
    let mapping = parse_mapping(renames)
        .map_err(|message| ApiError::FieldRules(vec![FieldProblem { field: "map".into(), message }]))?;
    if body.is_empty() {
        return Err(ApiError::UnreadableFile("the body is the file to import, and it is empty".into()));
    }
    let surveyed = {
        let (body, mapping) = (body.clone(), mapping.clone());
        tokio::task::spawn_blocking(move || survey(&body[..], kind, format, &mapping))
            .await
            .map_err(|e| ApiError::Internal(format!("surveying an upload: {e}")))?
    };
    let surveyed = surveyed.map_err(|error| match error {
        ImportError::Read(_) | ImportError::MissingColumns { .. } => ApiError::UnreadableFile(error.to_string()),
        other => ApiError::Internal(other.to_string()),
    })?;
    let new = NewImport {
        kind,
        file_name,
        file_sha256: surveyed.sha256,
        format,
        mapping,
        actor: principal.actor(),
        total_rows: surveyed.rows,
        content: Some(body.to_vec()),
    };
    let worker = &state.imports;
    match jobs::begin(worker.importer.pool(), &new).await {
        Ok(Begun::New(import)) => {
            worker.start(import.clone());
            Ok(accepted(StatusCode::ACCEPTED, import))
        }
        Ok(Begun::Existing(import)) if import.status == ImportState::Finished => Ok(accepted(StatusCode::OK, import)),
        Ok(Begun::Existing(import)) => {
            // Stopped or interrupted: running it again resumes it.
            if let Some(content) = &new.content {
                jobs::keep_content(worker.importer.pool(), import.import_id, content)
                    .await
                    .map_err(|e| ApiError::Internal(format!("keeping an upload: {e}")))?;
            }
            worker.start(import.clone());
            Ok(accepted(StatusCode::ACCEPTED, import))
        }
        Err(error @ ImportError::MappingDiffers { .. }) => {
            Err(ApiError::Domain(DomainError::InvalidState(error.to_string())))
        }
        Err(other) => Err(ApiError::Internal(format!("recording an import: {other}"))),
    }
}

/// A query parameter that breaks its rule is a 400, as one the query cannot parse is.
fn check_query(checks: impl FnOnce(&mut Vec<FieldProblem>)) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    checks(&mut problems);
    match problems.is_empty() {
        true => Ok(()),
        false => Err(ApiError::InvalidQuery(
            problems.iter().map(|p| format!("{}: {}", p.field, p.message)).collect::<Vec<_>>().join("; "),
        )),
    }
}

fn accepted(status: StatusCode, import: ImportStatus) -> Response {
    let location = format!("/v1/imports/{}", import.import_id);
    (status, [(header::LOCATION, location)], Json(import)).into_response()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StatusParams {
    /// How many refused rows to list (default 100).
    #[param(inline)]
    rejected_limit: Option<Bounded<0, 10_000>>,
}

/// Counts done / failed / remaining and the refused rows with their reasons.
#[utoipa::path(get, path = "/v1/imports/{id}", tag = "imports",
    params(("id" = Uuid, Path, description = "The import id"), StatusParams),
    responses((status = 200, description = "Where the import stands", body = ImportStatus)),
    security(("api_key" = ["inventory:write", "accounts:write"])))]
async fn import_status(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(params): ApiQuery<StatusParams>,
) -> Result<Json<ImportStatus>, ApiError> {
    check_query(|problems| params.rejected_limit.check("rejected_limit", problems))?;
    let limit = params.rejected_limit.map_or(100, Bounded::get);
    let found = jobs::find(state.imports.importer.pool(), id, limit)
        .await
        .map_err(|e| ApiError::Internal(format!("reading an import: {e}")))?;
    match found {
        // Another area's import is not this key's to see.
        Some(import) if principal.has(import.kind.scope()) => Ok(Json(import)),
        _ => Err(ApiError::NotFound(format!("no import {id}"))),
    }
}
