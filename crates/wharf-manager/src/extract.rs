//! The admin API's extractors: axum's JSON body, raw body (a configuration's text), query
//! and path, whose refusals (a body that is not the JSON asked for, a field unknown, a query
//! that does not parse, a body too large or cut short) answer as every other API error does,
//! `{"error": "…"}` with the status axum chose.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

fn refused(status: axum::http::StatusCode, text: String) -> Response {
    (status, Json(serde_json::json!({"error": text}))).into_response()
}

/// A JSON request body.
pub(crate) struct Body<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(e) => Err(refused(e.status(), e.body_text())),
        }
    }
}

/// A request body as it came (a configuration's text), read whole.
pub(crate) struct Raw(pub(crate) axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for Raw {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::body::Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(Raw(bytes)),
            Err(e) => Err(refused(e.status(), e.body_text())),
        }
    }
}

/// The query string's parameters.
pub(crate) struct Params<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Params(value)),
            Err(e) => Err(refused(e.status(), e.body_text())),
        }
    }
}

/// A path parameter.
pub(crate) struct Segment<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Segment<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Segment(value)),
            Err(e) => Err(refused(e.status(), e.body_text())),
        }
    }
}
