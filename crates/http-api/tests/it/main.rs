//! Integration tests of the HTTP API: the OpenAPI document against the committed copy and
//! against the routes a real engine serves.

mod full_pool;
mod openapi;
mod routes;
