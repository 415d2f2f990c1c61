//! The `Verification-Token` check, as DBLab does it: one shared token, compared in constant
//! time; no token configured lets every request in.

use std::fmt;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiFailure;

/// The header DBLab's clients send the token in.
pub const TOKEN_HEADER: &str = "Verification-Token";

/// The shared API token; never printed.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// Wraps a token; an empty one is `None`, meaning no authentication.
    pub fn new(token: impl Into<String>) -> Option<Token> {
        let token = token.into();
        (!token.is_empty()).then_some(Token(token))
    }

    /// Compares in time independent of where the first difference is.
    fn matches(&self, offered: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        let mut difference = expected.len() ^ offered.len();
        for (index, byte) in expected.iter().enumerate() {
            difference |= usize::from(byte ^ offered.get(index).copied().unwrap_or(0));
        }
        difference == 0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

pub(crate) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &state.token {
        let offered = request.headers().get(TOKEN_HEADER).map(|value| value.as_bytes());
        if !offered.is_some_and(|offered| token.matches(offered)) {
            return ApiFailure::unauthorized().into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_exactly() {
        let token = Token::new("s3cret").unwrap();
        assert!(token.matches(b"s3cret"));
        assert!(!token.matches(b"s3cre"));
        assert!(!token.matches(b"s3cret!"));
        assert!(!token.matches(b""));
        assert!(Token::new("").is_none());
        assert_eq!(format!("{token:?}"), "Token(***)");
    }
}
