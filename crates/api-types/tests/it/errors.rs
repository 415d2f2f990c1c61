//! The `{code, message}` error body, its HTTP statuses, and the generic OK body.

use api_types::{ApiError, ErrorCode, Response, WsToken};
use serde_json::json;

use crate::assert_golden;

#[test]
fn codes_and_statuses() {
    let table = [
        (ErrorCode::BadRequest, "BAD_REQUEST", 400),
        (ErrorCode::Unauthorized, "UNAUTHORIZED", 401),
        (ErrorCode::NotFound, "NOT_FOUND", 404),
        (ErrorCode::InternalError, "INTERNAL_ERROR", 500),
        (ErrorCode::Other("CONFLICT".to_owned()), "CONFLICT", 500),
    ];
    for (code, wire, status) in table {
        assert_eq!(code.as_str(), wire);
        assert_eq!(code.http_status(), status, "{wire}");
        assert_eq!(ErrorCode::from_wire(wire), code);
        assert_eq!(serde_json::to_value(&code).unwrap(), json!(wire));
    }
}

#[test]
fn error_bodies_golden() {
    assert_golden(
        &ApiError::unauthorized(),
        &json!({"code": "UNAUTHORIZED", "message": "Check your verification token."}),
    );
    assert_golden(
        &ApiError::not_found(ApiError::NOT_FOUND_MESSAGE),
        &json!({"code": "NOT_FOUND", "message": "Requested object does not exist. Specify your request."}),
    );
    let bad = ApiError::bad_request("clone with ID \"x\" already exists");
    assert_eq!(bad.http_status(), 400);
    assert_golden(
        &bad,
        &json!({"code": "BAD_REQUEST", "message": "clone with ID \"x\" already exists"}),
    );
    assert_eq!(ApiError::internal("boom").to_string(), "INTERNAL_ERROR: boom");
}

#[test]
fn swagger_only_fields_are_accepted() {
    let error: ApiError = serde_json::from_value(
        json!({"code": "BAD_REQUEST", "message": "m", "detail": "d", "hint": "h"}),
    )
    .unwrap();
    assert_eq!(error, ApiError::bad_request("m"));
}

#[test]
fn ok_response_and_ws_token() {
    assert_golden(
        &Response::ok("Deleted snapshot"),
        &json!({"status": "OK", "message": "Deleted snapshot"}),
    );
    assert_golden(&WsToken { token: "t".to_owned() }, &json!({"token": "t"}));
}
