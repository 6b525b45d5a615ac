//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations as the routers register them (so a route cannot exist undocumented),
//! plus what every command shares: the bearer key, the command headers and the
//! problem answers of the shared middleware. Served at `/openapi.json`, with Swagger
//! UI at `/docs`.

use utoipa::{
    openapi::{
        path::{HttpMethod, Operation, Parameter, ParameterBuilder, ParameterIn},
        response::{Response as ResponseDoc, ResponseBuilder},
        schema::SchemaType,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
        ContentBuilder, HeaderBuilder, InfoBuilder, ObjectBuilder, OpenApi, Ref, RefOr, Required, Schema, Type,
    },
    PartialSchema, ToSchema,
};

use super::problem::{FieldProblem, Problem};

pub const OPENAPI_PATH: &str = "/openapi.json";
pub const DOCS_PATH: &str = "/docs";

/// The security scheme name; the handlers' `security(("api_key" = [scope]))`
/// annotations repeat it (the macro takes only a literal).
pub const BEARER: &str = "api_key";

const PROBLEM_JSON: &str = super::problem::PROBLEM_JSON;

/// Completes the document the routers collected.
pub fn complete(mut doc: OpenApi) -> OpenApi {
    doc.info = InfoBuilder::new()
        .title("Vectis command API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Commands for accounts, inventory and orders. Each successful command appends events to the \
             event store and answers with the stream's new version, the events and a consistency token \
             to pass to the query API as `X-Consistency-Token`. Errors are `application/problem+json` \
             (RFC 9457). Every request needs `Authorization: Bearer <API key>` with the scope the \
             operation names.",
        ))
        .build();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("An API key (`vk_…`) created with `vectis keys create`"))
                .build(),
        ),
    );
    for schema in components.schemas.values_mut() {
        describe_inline_fields_in_place(schema);
    }
    components.schemas.insert(Problem::name().into(), Problem::schema());
    components.schemas.insert(FieldProblem::name().into(), FieldProblem::schema());
    for (path, path_item) in doc.paths.paths.iter_mut() {
        for method in [HttpMethod::Get, HttpMethod::Post, HttpMethod::Put] {
            let is_command = method != HttpMethod::Get;
            let Some(operation) = operation(path_item, method) else { continue };
            // Handler names repeat across areas (`approve`); ids must be unique.
            if let (Some(tag), Some(id)) = (operation.tags.as_ref().and_then(|t| t.first()), &operation.operation_id) {
                operation.operation_id = Some(format!("{tag}_{id}").replace(' ', "_"));
            }
            add_shared_answers(operation, is_command, path.contains('{'));
            if is_command {
                body_may_be_omitted(operation);
                operation.parameters.get_or_insert_with(Vec::new).extend(command_headers().into_iter().map(RefOr::T));
            }
        }
    }
    super::openapi_links::add(&mut doc);
    doc
}

/// utoipa writes a documented field of an inlined type as `allOf [its schema, {type:
/// object, description}]`, which no string or number can satisfy: the field's schema
/// takes the description instead, its rule after it.
fn describe_inline_fields_in_place(schema: &mut RefOr<Schema>) {
    let RefOr::T(Schema::Object(object)) = schema else { return };
    for field in object.properties.values_mut() {
        let RefOr::T(Schema::AllOf(all_of)) = field else { continue };
        let [RefOr::T(Schema::Object(inlined)), RefOr::T(Schema::Object(described))] = &all_of.items[..] else {
            continue;
        };
        if described.schema_type != SchemaType::Type(Type::Object) || !described.properties.is_empty() {
            continue;
        }
        let mut merged = inlined.clone();
        merged.description = match (&described.description, &inlined.description) {
            (Some(doc), Some(rule)) => Some(format!("{doc}\n\nIt {rule}.")),
            (doc, rule) => doc.clone().or_else(|| rule.clone()),
        };
        *field = RefOr::T(Schema::Object(merged));
    }
}

fn operation(item: &mut utoipa::openapi::PathItem, method: HttpMethod) -> Option<&mut Operation> {
    match method {
        HttpMethod::Get => item.get.as_mut(),
        HttpMethod::Post => item.post.as_mut(),
        HttpMethod::Put => item.put.as_mut(),
        _ => None,
    }
}

/// An optional command body (`OptionalCommandBody`) may be left out; utoipa writes
/// such a body as `oneOf [body, null]`, but a JSON `null` is not what it means.
fn body_may_be_omitted(operation: &mut Operation) {
    let Some(RefOr::T(body)) = operation.request_body.as_mut() else { return };
    if matches!(body.required, Some(Required::True)) {
        return;
    }
    for content in body.content.values_mut() {
        let RefOr::T(content) = content else { continue };
        if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema {
            let is_null = |schema: &&RefOr<Schema>| matches!(schema, RefOr::T(Schema::Object(object)) if object.schema_type == SchemaType::Type(Type::Null));
            content.schema = one_of.items.iter().find(|schema| !is_null(schema)).cloned();
        }
    }
    body.description.get_or_insert_with(|| "Optional: the body may be left out entirely".into());
}

fn problem(description: &str) -> ResponseDoc {
    ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_JSON, ContentBuilder::new().schema(Some(Ref::from_schema_name(Problem::name()))).build())
        .build()
}

fn integer_header(description: &str) -> utoipa::openapi::Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0))))
        .description(Some(description))
        .build()
}

/// The answers that the shared middleware, not the handler, gives.
fn add_shared_answers(operation: &mut Operation, is_command: bool, names_a_resource: bool) {
    let mut shared = vec![
        ("401", problem("No API key, or an unknown or revoked one")),
        ("403", problem("The API key lacks the scope this operation needs")),
        (
            "429",
            ResponseBuilder::from(problem("Rate limited: too many requests from this client to this endpoint"))
                .header("Retry-After", integer_header("Seconds until a request would be allowed"))
                .header("RateLimit-Limit", integer_header("Requests the bucket holds"))
                .header("RateLimit-Remaining", integer_header("Requests left now"))
                .header("RateLimit-Reset", integer_header("Seconds until the bucket is full"))
                .build(),
        ),
        ("500", problem("The server failed; nothing internal is revealed, the cause is logged")),
        ("503", problem("Timed out or a dependency is unavailable; retry with the same Idempotency-Key")),
    ];
    if is_command {
        shared.extend([
            ("400", problem("The body is not JSON (`/problems/malformed-body`), a header (If-Match, Idempotency-Key, X-Correlation-Id) is invalid (`/problems/bad-header`), a path parameter is not of its type (`/problems/invalid-path`), or a query parameter is missing or breaks its rule (`/problems/invalid-query`)")),
            ("409", problem("Version conflict (with `current_version`), a state that forbids the command, or an Idempotency-Key still in use")),
            ("413", problem("The body is larger than 64 KiB")),
            ("415", problem("The body is not `application/json`")),
            ("422", problem("Fields that break the rules their schemas state (`/problems/validation`, each listed in `errors`); fields valid one by one that a rule between them or of this server refuses (`/problems/field-rules`, listed in `errors`); a business rule (`/problems/business-rule`); an upload that cannot be imported (`/problems/unreadable-file`); or an Idempotency-Key reused for another request")),
        ]);
    }
    if names_a_resource {
        shared.push(("404", problem("Nothing exists under the id in the path")));
        if !is_command {
            shared.push((
                "400",
                problem("A path parameter is not of its type (`/problems/invalid-path`), or a query parameter is missing or breaks its rule (`/problems/invalid-query`)"),
            ));
        }
    }
    for (status, response) in shared {
        operation.responses.responses.entry(status.to_string()).or_insert(RefOr::T(response));
    }
}

fn header_parameter(name: &str, description: &str) -> Parameter {
    header_parameter_with(name, description, String::schema())
}

/// A header the server checks: its schema states the check, so a client (or a
/// fuzzer) generated from the document sends only what is accepted.
fn checked_header(name: &str, description: &str, pattern: &str) -> Parameter {
    let schema = ObjectBuilder::new().schema_type(Type::String).pattern(Some(pattern)).min_length(Some(1)).build();
    header_parameter_with(name, description, RefOr::T(Schema::Object(schema)))
}

fn header_parameter_with(name: &str, description: &str, schema: RefOr<Schema>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

fn command_headers() -> Vec<Parameter> {
    vec![
        checked_header(
            "If-Match",
            "The stream version the client last saw (`3` or `\"3\"`); the command is refused with 409 if the stream has moved on. Anything else (an empty value too) is a 400",
            super::command::IF_MATCH_PATTERN,
        ),
        checked_header(
            "Idempotency-Key",
            "1 to 255 visible ASCII characters, such as a UUID (an empty value is a 400). A retry with the same key and body returns the first answer byte for byte; with another body it is refused (422). Kept at least 24 h",
            super::command::IDEMPOTENCY_KEY_PATTERN,
        ),
        header_parameter_with(
            "X-Correlation-Id",
            "A UUID recorded on the events; generated when absent (anything else is a 400)",
            RefOr::T(Schema::Object(ObjectBuilder::new().schema_type(Type::String).format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Uuid))).build())),
        ),
        header_parameter("traceparent", "W3C trace context, recorded on the events and their Kafka headers"),
    ]
}
