//! The OpenAPI shapes of the request fields the handlers read as raw JSON (`inputs`, `input`,
//! `ids`): the handlers parse them by hand to say exactly what is wrong, and these say in the
//! description what they accept, so that generated clients and schema-driven tests send what
//! the server takes. Bounds that depend on the server's flags (`--max-client-batch-size`) or on
//! the model (prompt names, `dimensions` beyond 1) are checked at request time only.

use utoipa::openapi::schema::{AnyOfBuilder, ArrayBuilder, ArrayItems, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};

fn string(min_length: Option<usize>) -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(min_length)
            .build(),
    )
}

fn token_id() -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
            .maximum(Some(u32::MAX))
            .build(),
    )
}

fn array_of(items: Schema, min: Option<usize>, max: Option<usize>) -> Schema {
    let items = ArrayItems::RefOrSchema(Box::new(RefOr::T(items)));
    Schema::Array(ArrayBuilder::new().items(items).min_items(min).max_items(max).build())
}

/// One input of the embedding routes: a text, or its token ids (at least one).
fn embed_input(min_text: Option<usize>) -> Schema {
    Schema::OneOf(
        OneOfBuilder::new()
            .item(string(min_text))
            .item(array_of(token_id(), Some(1), None))
            .build(),
    )
}

/// `inputs` of `/embed`, `/embed_sparse`, `/embed_all`: one input or a non-empty batch of them.
pub(crate) fn embed_inputs() -> Schema {
    Schema::OneOf(
        OneOfBuilder::new()
            .description(Some(
                "A string, a list of token ids, or a non-empty list of strings and lists of token ids",
            ))
            .item(embed_input(None))
            .item(array_of(embed_input(None), Some(1), None))
            .build(),
    )
}

/// `input` of `/v1/embeddings`: as OpenAI's, no empty text and at most `max` inputs.
pub(crate) fn openai_input(max: usize) -> Schema {
    Schema::OneOf(
        OneOfBuilder::new()
            .description(Some(format!(
                "A non-empty string, a list of token ids, or a list of 1 to {max} of those"
            )))
            .item(embed_input(Some(1)))
            .item(array_of(embed_input(Some(1)), Some(1), Some(max)))
            .build(),
    )
}

/// `inputs` of `/predict`. `["a", "b"]` is both a pair and a batch of two texts; it is read as
/// the pair (as TEI reads it), hence anyOf.
pub(crate) fn predict_inputs() -> Schema {
    let pair = || array_of(string(None), Some(2), Some(2));
    let one = || Schema::AnyOf(AnyOfBuilder::new().item(string(None)).item(pair()).build());
    Schema::AnyOf(
        AnyOfBuilder::new()
            .description(Some(
                "A string, a pair [string, string] (read as a pair, not two texts), or a non-empty list of those",
            ))
            .item(one())
            .item(array_of(one(), Some(1), None))
            .build(),
    )
}

/// `inputs` of `/tokenize`.
pub(crate) fn tokenize_inputs() -> Schema {
    Schema::OneOf(
        OneOfBuilder::new()
            .description(Some("A string or a non-empty list of strings"))
            .item(string(None))
            .item(array_of(string(None), Some(1), None))
            .build(),
    )
}

/// `ids` of `/decode`: one sequence (non-empty) or a non-empty batch of them (each may be empty).
pub(crate) fn decode_ids() -> Schema {
    Schema::OneOf(
        OneOfBuilder::new()
            .description(Some("A list of token ids, or a non-empty list of lists of token ids"))
            .item(array_of(token_id(), Some(1), None))
            .item(array_of(array_of(token_id(), None, None), Some(1), None))
            .build(),
    )
}

/// The body of `POST /`: one of the routes' bodies, dispatched on its shape.
pub(crate) struct RootRequest;

impl utoipa::PartialSchema for RootRequest {
    fn schema() -> RefOr<Schema> {
        let mut any = AnyOfBuilder::new().description(Some(
            "An /embed, /similarity, /predict or /rerank body, dispatched on its shape",
        ));
        for name in ["EmbedRequest", "SimilarityRequest", "PredictRequest", "RerankRequest"] {
            any = any.item(Ref::from_schema_name(name));
        }
        RefOr::T(Schema::AnyOf(any.build()))
    }
}

impl utoipa::ToSchema for RootRequest {}
