//! Between the gRPC messages and the service's terms: errors as gRPC statuses (TEI's codes),
//! timings as the `Metadata` message and as response metadata (the JSON API's headers).

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

use super::pb;
use crate::http::embed::{timing_headers, Direction};
use crate::http::error::{ApiError, ErrorCode, ErrorType};
use crate::infer::Timings;

/// TEI's mapping of its error types to gRPC codes (so clients' retry rules keep working), with
/// two of tessera's own: a request the model cannot answer (an embedding call to a classifier)
/// is `FAILED_PRECONDITION`, as TEI answers `Rerank` on an embedding model, and a missing API
/// key `UNAUTHENTICATED`. tessera's stable error code travels as `tessera-error-code`.
impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        let code = match (error.error_type, error.code) {
            (_, ErrorCode::WrongModelType) => Code::FailedPrecondition,
            (ErrorType::Unhealthy, _) => Code::Unavailable,
            (ErrorType::Backend | ErrorType::Tokenizer, _) => Code::FailedPrecondition,
            (ErrorType::Overloaded, _) => Code::ResourceExhausted,
            (ErrorType::Validation | ErrorType::Empty, _) => Code::InvalidArgument,
            (ErrorType::Unauthorized, _) => Code::Unauthenticated,
        };
        let mut metadata = MetadataMap::new();
        metadata.insert("tessera-error-code", MetadataValue::from_static(error.code.as_str()));
        Status::with_metadata(code, error.message, metadata)
    }
}

/// The `Metadata` message of a response, total time as of now.
pub(crate) fn metadata(t: &Timings) -> pb::Metadata {
    let nanos = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    pb::Metadata {
        compute_chars: u32::try_from(t.characters).unwrap_or(u32::MAX),
        compute_tokens: u32::try_from(t.tokens).unwrap_or(u32::MAX),
        total_time_ns: nanos(t.started.elapsed()),
        tokenization_time_ns: nanos(t.tokenization),
        queue_time_ns: nanos(t.queue),
        inference_time_ns: nanos(t.inference),
    }
}

/// A unary answer: the message, and the JSON API's `x-compute-*` / `x-*-time` headers as
/// response metadata (as TEI sends them).
pub(crate) fn answer<T>(message: T, timings: &Timings) -> tonic::Response<T> {
    let mut response = tonic::Response::new(message);
    *response.metadata_mut() = MetadataMap::from_headers(timing_headers(timings));
    response
}

/// A request's `truncation_direction`; a value the enum does not have is refused (TEI panics).
pub(crate) fn direction(value: i32) -> Result<Direction, ApiError> {
    match pb::TruncationDirection::try_from(value) {
        Ok(pb::TruncationDirection::Right) => Ok(Direction::Right),
        Ok(pb::TruncationDirection::Left) => Ok(Direction::Left),
        Err(_) => Err(ApiError::validation(
            ErrorCode::InvalidRequest,
            format!("`truncation_direction` {value} is neither TRUNCATION_DIRECTION_RIGHT (0) nor TRUNCATION_DIRECTION_LEFT (1)"),
        )),
    }
}

/// proto3's `bool truncate` cannot tell `false` from unset: `true` truncates, otherwise
/// `--auto-truncate` decides, as for a JSON request without `truncate`.
pub(crate) fn truncate(value: bool) -> Option<bool> {
    value.then_some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_take_tei_status_codes_and_carry_the_stable_code() {
        let cases = [
            (
                ApiError::validation(ErrorCode::InputTooLong, "x"),
                Code::InvalidArgument,
            ),
            (ApiError::empty("x"), Code::InvalidArgument),
            (
                ApiError::too_large(ErrorCode::PayloadTooLarge, "x"),
                Code::InvalidArgument,
            ),
            (ApiError::overloaded("x"), Code::ResourceExhausted),
            (ApiError::tokenizer("x"), Code::FailedPrecondition),
            (ApiError::backend("x"), Code::FailedPrecondition),
            (ApiError::unhealthy("x"), Code::Unavailable),
            (ApiError::unauthorized("x"), Code::Unauthenticated),
            (
                ApiError::validation(ErrorCode::WrongModelType, "x"),
                Code::FailedPrecondition,
            ),
        ];
        for (error, code) in cases {
            let stable = error.code.as_str();
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{stable}");
            assert_eq!(status.message(), "x");
            assert_eq!(status.metadata().get("tessera-error-code").unwrap(), stable);
        }
    }

    #[test]
    fn truncation_directions_are_the_enum_values_only() {
        assert!(matches!(direction(0), Ok(Direction::Right)));
        assert!(matches!(direction(1), Ok(Direction::Left)));
        let refused = direction(2).unwrap_err();
        assert_eq!(refused.code, ErrorCode::InvalidRequest);
        assert!(
            refused.message.contains("TRUNCATION_DIRECTION_LEFT (1)"),
            "{}",
            refused.message
        );
        assert_eq!(truncate(true), Some(true));
        assert_eq!(truncate(false), None, "unset: --auto-truncate decides");
    }
}
