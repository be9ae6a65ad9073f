//! The bounds of a request body that WebDAV hands to its library: `max_upload_size` and
//! `body_timeout`, as the REST API applies them in its own loop (`api::files_put`). A body
//! past either bound ends in an error, so the library gives the upload up (nothing is
//! committed; `upload.failed` says so, and `cut` is told why, for the record). Never
//! buffers: bytes pass through as they come.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use bytes::Bytes;
use futures_util::StreamExt;

/// Why a body was cut off.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyCut {
    #[error("request body stalled")]
    Stalled,
    #[error("request body larger than max_upload_size ({0} bytes)")]
    TooLarge(u64),
    #[error("request body failed: {0}")]
    Failed(String),
}

/// `request` with its body ended by an error once it passes `max` bytes or stalls for
/// `stall` between two pieces; `cut` is called with the reason (not when the client breaks
/// the body off).
pub(crate) fn bounded(
    request: Request,
    max: u64,
    stall: Duration,
    cut: impl Fn(&BodyCut) + Send + Sync + 'static,
) -> Request {
    let cut = std::sync::Arc::new(cut);
    let (parts, body) = request.into_parts();
    let data = body.into_data_stream();
    let bounded =
        futures_util::stream::unfold((data, 0u64, false), move |(mut data, total, ended)| {
            let cut = std::sync::Arc::clone(&cut);
            async move {
                if ended {
                    return None;
                }
                let next = match tokio::time::timeout(stall, data.next()).await {
                    Err(_) => Err(BodyCut::Stalled),
                    Ok(None) => return None,
                    Ok(Some(Err(e))) => Err(BodyCut::Failed(e.to_string())),
                    Ok(Some(Ok(piece))) => {
                        let sum = total.saturating_add(piece.len() as u64);
                        if sum > max {
                            Err(BodyCut::TooLarge(max))
                        } else {
                            return Some((Ok::<Bytes, BodyCut>(piece), (data, sum, false)));
                        }
                    }
                };
                // A refusal is recorded; a body the client broke off is the upload's own
                // failure (upload.failed), not a refusal.
                if let Err(why @ (BodyCut::Stalled | BodyCut::TooLarge(_))) = &next {
                    cut(why);
                }
                Some((next, (data, total, true)))
            }
        });
    Request::from_parts(parts, Body::from_stream(bounded))
}
