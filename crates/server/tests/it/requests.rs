//! Requests that once broke the API or answered outside its contract: huge and odd `wait`
//! values, a deletion that outlasts its wait, oversized and NUL-carrying fields, and requests the
//! router refuses before any handler (bad UTF-8, long targets and headers, big bodies). Each
//! answers, with `{code, message}` JSON on every error.

use serde_json::{Value, json};

use crate::harness::{PASSWORD, TOKEN, TestServer, clone_request};

/// Sends a request with the token and returns the status, the content type and the body.
async fn send(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, String)],
    body: String,
) -> (u16, String, Value) {
    let mut request = server
        .http
        .request(method, format!("{}{path}", server.url))
        .header("Verification-Token", TOKEN)
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.unwrap();
    (status, content_type, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Writes `request` over a plain connection and reads the answer to its end, for requests no
/// HTTP client library would send.
async fn send_raw(server: &TestServer, request: &str) -> (u16, String, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    // The server may answer and close before it has read everything: a failed write is fine.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.get(9..12).and_then(|code| code.parse().ok()).unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase().strip_prefix("content-type: ").map(str::to_owned)
        })
        .unwrap_or_default();
    (status, content_type, serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())))
}

fn assert_error(answer: &(u16, String, Value), status: u16, code: &str, what: &str) {
    let (got, content_type, body) = answer;
    assert_eq!(*got, status, "{what}: {body}");
    assert!(content_type.starts_with("application/json"), "{what}: {content_type} {body}");
    assert_eq!(body["code"], code, "{what}: {body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
}

#[tokio::test]
async fn any_wait_gets_an_answer() {
    let server = TestServer::start("").await;
    server.create_clone("waiter").await;
    // 2^64 seconds and more once panicked in `Duration::from_secs_f64`.
    for wait in ["18446744073709551616", "1e300", "inf", "0", "0.5"] {
        let (status, _, clone) = send(
            &server,
            reqwest::Method::POST,
            &format!("/clone/waiter/reset?wait={wait}"),
            &[],
            String::new(),
        )
        .await;
        assert_eq!(status, 200, "wait={wait}: {clone}");
        server.wait_while("waiter", "RESETTING").await;
    }
    for wait in ["-1", "NaN", "-inf", "soon"] {
        let answer = send(
            &server,
            reqwest::Method::POST,
            &format!("/clone/waiter/reset?wait={wait}"),
            &[],
            String::new(),
        )
        .await;
        assert_error(&answer, 400, "BAD_REQUEST", &format!("wait={wait}"));
    }
    let (status, _, clone) = send(
        &server,
        reqwest::Method::POST,
        "/clone?wait=1e30",
        &[],
        clone_request("huge-wait").to_string(),
    )
    .await;
    assert_eq!(status, 201, "{clone}");
    assert_eq!(clone["status"]["code"], "OK", "{clone}");
}

#[tokio::test]
async fn a_deletion_that_outlasts_its_wait_is_answered_as_started() {
    let server = TestServer::start("").await;
    server.create_clone("short-wait").await;
    let (status, _, body) =
        send(&server, reqwest::Method::DELETE, "/clone/short-wait?wait=0", &[], String::new())
            .await;
    assert_eq!((status, &body), (200, &Value::String(String::new())), "DBLab's empty 200");
    assert_eq!(server.wait_while("short-wait", "DELETING").await, None, "the deletion goes on");
}

#[tokio::test]
async fn fields_postgres_cannot_take_are_refused() {
    let server = TestServer::start("").await;
    let with_db = |db: Value| json!({"id": "odd", "db": db}).to_string();
    let cases = [
        (
            "a password over 1024 bytes",
            with_db(
                json!({"username": "u", "password": format!("{PASSWORD}{}", "x".repeat(1024))}),
            ),
            "1024",
        ),
        (
            "a NUL in the password",
            with_db(json!({"username": "u", "password": format!("{PASSWORD}\u{0}")})),
            "NUL",
        ),
        (
            "a NUL in db_name",
            with_db(json!({"username": "u", "password": PASSWORD, "db_name": "a\u{0}b"})),
            "NUL",
        ),
        (
            "a db_name over 63 bytes",
            with_db(json!({"username": "u", "password": PASSWORD, "db_name": "d".repeat(64)})),
            "63",
        ),
        (
            "a NUL in the username",
            with_db(json!({"username": "u\u{0}v", "password": PASSWORD})),
            "NUL",
        ),
    ];
    for (what, body, says) in cases {
        let answer = send(&server, reqwest::Method::POST, "/clone", &[], body).await;
        assert_error(&answer, 400, "BAD_REQUEST", what);
        assert!(answer.2["message"].as_str().unwrap().contains(says), "{what}: {}", answer.2);
    }
    assert_eq!(server.get("/clones").await.1, json!([]), "no refused create left a clone");
}

#[tokio::test]
async fn requests_refused_before_a_handler_carry_json() {
    let server = TestServer::start("").await;
    let get = reqwest::Method::GET;
    let answer = send(&server, get.clone(), "/clone/%FF%FE", &[], String::new()).await;
    assert_error(&answer, 400, "BAD_REQUEST", "a path that is not UTF-8");
    let long_path = format!("/clone/{}", "a".repeat(http_api::MAX_URI_BYTES));
    let answer = send(&server, get.clone(), &long_path, &[], String::new()).await;
    assert_error(&answer, 414, "URI_TOO_LONG", "an over-long URL");
    let long_header = [("X-Long", "h".repeat(http_api::MAX_HEADER_BYTES))];
    let answer = send(&server, get.clone(), "/clones", &long_header, String::new()).await;
    assert_error(&answer, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE", "an over-long header");
    let big = json!({"id": "big", "db": {"username": "u", "password": PASSWORD},
        "extra_conf": {"application_name": "b".repeat(http_api::MAX_BODY_BYTES)}});
    let answer = send(&server, reqwest::Method::POST, "/clone", &[], big.to_string()).await;
    assert_error(&answer, 413, "PAYLOAD_TOO_LARGE", "a body over the limit");
    let answer = send(&server, reqwest::Method::PUT, "/clones", &[], String::new()).await;
    assert_error(&answer, 405, "METHOD_NOT_ALLOWED", "a method the path does not take");
    // Past hyper's own limits, which it answers itself before any layer of the router (and past
    // what a URL library builds: these go over a raw connection).
    let huge_path = format!("GET /clone/{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
    let answer = send_raw(&server, &huge_path).await;
    assert_error(&answer, 414, "URI_TOO_LONG", "a URL past hyper's limit");
    let huge_header =
        format!("GET /clones HTTP/1.1\r\nHost: x\r\nX-Huge: {}\r\n\r\n", "h".repeat(500_000));
    let answer = send_raw(&server, &huge_header).await;
    assert_error(&answer, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE", "headers past hyper's buffer");
    let many: String = (0..120).map(|index| format!("X-Many-{index}: v\r\n")).collect();
    let answer = send_raw(&server, &format!("GET /clones HTTP/1.1\r\nHost: x\r\n{many}\r\n")).await;
    assert_error(&answer, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE", "more headers than hyper takes");
    let answer = send_raw(&server, "GET /clones HTTP/9.9\r\nHost: x\r\n\r\n").await;
    assert_error(&answer, 400, "BAD_REQUEST", "a request hyper cannot parse");
}

/// The log without terminal colours.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequences end with a letter.
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn a_server_error_is_logged_with_its_method_and_path() {
    // One clone port: the second create finds none and is a 503.
    let server = TestServer::start_with_ports("", 1).await;
    server.create_clone("only").await;
    let answer =
        send(&server, reqwest::Method::POST, "/clone", &[], clone_request("second").to_string())
            .await;
    assert_eq!(answer.0, 503, "{}", answer.2);
    let log = plain(&server.log());
    let line = log
        .lines()
        .find(|line| line.contains("WARN") && line.contains("server error"))
        .unwrap_or_else(|| panic!("no error line for the 503:\n{log}"));
    assert!(line.contains("method=POST") && line.contains("path=/clone"), "{line}");
    assert!(line.contains("503"), "{line}");
}
