//! The OpenAPI document itself: the committed `docs/api/openapi.json` is what the code
//! generates, operation IDs are unique, and every error answer carries the error object.

use std::path::PathBuf;

/// The committed document, relative to this crate.
fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/api/openapi.json")
}

#[test]
fn openapi_committed_document_is_current() {
    let generated = http_api::openapi_json().expect("serialize the document");
    let path = committed_path();
    if std::env::var_os("SCION_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write docs/api/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/api/openapi.json is not what the code generates; regenerate it with\n\
         SCION_UPDATE_OPENAPI=1 cargo test -p http-api openapi"
    );
}

#[test]
fn openapi_error_responses_carry_the_error_object() {
    let document = serde_json::to_value(http_api::openapi()).expect("the document as JSON");
    let mut operation_ids = std::collections::BTreeSet::new();
    let mut errors = 0;
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            let id = operation["operationId"].as_str().expect("an operation ID");
            assert!(operation_ids.insert(id.to_owned()), "operation ID {id} is used twice");
            for (status, response) in operation["responses"].as_object().expect("responses") {
                // 1xx (the log websocket's 101) and 2xx are not errors.
                if status.starts_with('1') || status.starts_with('2') {
                    continue;
                }
                let response = match response["$ref"].as_str() {
                    Some(reference) => {
                        let name = reference.trim_start_matches("#/components/responses/");
                        &document["components"]["responses"][name]
                    }
                    None => response,
                };
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ApiError",
                    "{method} {path} {status} must answer with the error object"
                );
                errors += 1;
            }
        }
    }
    assert!(errors > 20, "only {errors} error responses found");
}

/// Follows a `$ref` into `components/schemas`.
fn resolve<'a>(
    document: &'a serde_json::Value,
    schema: &'a serde_json::Value,
) -> &'a serde_json::Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            &document["components"]["schemas"]
                [reference.trim_start_matches("#/components/schemas/")]
        }
        None => schema,
    }
}

#[test]
fn openapi_ids_carry_their_patterns_and_are_required() {
    let document = serde_json::to_value(http_api::openapi()).expect("the document as JSON");
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                if parameter["in"] != "path" {
                    continue;
                }
                let schema = resolve(&document, &parameter["schema"]);
                assert!(
                    schema["pattern"].is_string(),
                    "{method} {path}: {parameter} has no pattern"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 11, "only {checked} path parameters");
    for (schema, field) in [
        ("CommitRequest", "cloneID"),
        ("SnapshotCloneRequest", "cloneID"),
        ("CreateBranchRequest", "branchName"),
    ] {
        let object = &document["components"]["schemas"][schema];
        let required = object["required"].as_array().expect("required fields");
        assert!(required.iter().any(|name| name == field), "{schema}.{field} is not required");
        let property = resolve(&document, &object["properties"][field]);
        assert!(property["pattern"].is_string(), "{schema}.{field} has no pattern: {property}");
    }
}

#[test]
fn openapi_reset_without_wait_promises_the_empty_body_it_sends() {
    let document = serde_json::to_value(http_api::openapi()).expect("the document as JSON");
    for (path, method) in [("/clone/{id}/reset", "post"), ("/clone/{id}", "delete")] {
        let ok = &document["paths"][path][method]["responses"]["200"];
        assert!(ok.is_object(), "{method} {path} documents no 200");
        assert!(ok["content"].is_null(), "{method} {path}: DBLab's 200 has an empty body: {ok}");
    }
}
