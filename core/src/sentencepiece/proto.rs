//! The parts of SentencePiece's `ModelProto` (sentencepiece_model.proto, proto2) that the
//! conversion reads. Every other field of the file is skipped by the decoder.

/// A trained SentencePiece model.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ModelProto {
    /// The vocabulary, in id order.
    #[prost(message, repeated, tag = "1")]
    pub pieces: Vec<Piece>,
    /// How the model was trained (algorithm, special ids).
    #[prost(message, optional, tag = "2")]
    pub trainer_spec: Option<TrainerSpec>,
    /// Text normalization applied before segmentation.
    #[prost(message, optional, tag = "3")]
    pub normalizer_spec: Option<NormalizerSpec>,
}

/// One vocabulary entry.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Piece {
    /// The piece's text, with `▁` for a space.
    #[prost(string, optional, tag = "1")]
    pub piece: Option<String>,
    /// Its log-probability (Unigram) or merge priority (BPE).
    #[prost(float, optional, tag = "2")]
    pub score: Option<f32>,
    /// What kind of piece it is.
    #[prost(enumeration = "PieceType", optional, tag = "3", default = "Normal")]
    pub kind: Option<i32>,
}

/// `SentencePiece.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub(super) enum PieceType {
    /// An ordinary piece.
    Normal = 1,
    /// The unknown piece.
    Unknown = 2,
    /// A control symbol such as `<s>`: never produced from text.
    Control = 3,
    /// A user-defined symbol: always emitted whole.
    UserDefined = 4,
    /// Kept in the vocabulary but never produced.
    Unused = 5,
    /// A byte-fallback piece `<0xNN>`.
    Byte = 6,
}

/// `TrainerSpec`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct TrainerSpec {
    /// The segmentation algorithm.
    #[prost(enumeration = "ModelType", optional, tag = "3", default = "Unigram")]
    pub model_type: Option<i32>,
    /// Whether unknown characters decompose into byte pieces.
    #[prost(bool, optional, tag = "35", default = "false")]
    pub byte_fallback: Option<bool>,
    /// Id of the unknown piece.
    #[prost(int32, optional, tag = "40", default = "0")]
    pub unk_id: Option<i32>,
}

/// `TrainerSpec.ModelType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub(super) enum ModelType {
    /// Unigram language model.
    Unigram = 1,
    /// Byte-pair encoding.
    Bpe = 2,
    /// Whitespace-delimited words.
    Word = 3,
    /// Characters.
    Char = 4,
}

/// `NormalizerSpec`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct NormalizerSpec {
    /// The compiled normalization rules (a double-array trie and its replacement strings).
    #[prost(bytes = "vec", optional, tag = "2")]
    pub precompiled_charsmap: Option<Vec<u8>>,
}
