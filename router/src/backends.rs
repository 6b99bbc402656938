//! The backends compiled into this binary, in priority order.

use tessera_core::{BackendFactory, Registry};

/// Order breaks ties between backends that can both serve a model.
pub(crate) const BUILTIN: &[&dyn BackendFactory] = &[
    #[cfg(feature = "flash")]
    &tessera_flash::FlashBackend,
    #[cfg(feature = "encoder")]
    &tessera_encoder::JINA_BERT,
    #[cfg(feature = "encoder")]
    &tessera_encoder::BERT,
    #[cfg(feature = "encoder")]
    &tessera_encoder::ROBERTA,
    #[cfg(feature = "encoder")]
    &tessera_encoder::DISTILBERT,
    #[cfg(feature = "encoder")]
    &tessera_encoder::MPNET,
    #[cfg(feature = "encoder")]
    &tessera_encoder::DEBERTA,
    #[cfg(feature = "encoder")]
    &tessera_encoder::MODERNBERT,
    #[cfg(feature = "encoder")]
    &tessera_encoder::QWEN3,
    #[cfg(feature = "encoder")]
    &tessera_encoder::QWEN2,
    #[cfg(feature = "encoder")]
    &tessera_encoder::LLAMA,
    #[cfg(feature = "encoder")]
    &tessera_encoder::GEMMA2,
    #[cfg(feature = "encoder")]
    &tessera_encoder::GEMMA3,
    #[cfg(feature = "encoder")]
    &tessera_encoder::NOMIC_BERT,
    #[cfg(feature = "encoder")]
    &tessera_encoder::GTE,
    #[cfg(feature = "encoder")]
    &tessera_encoder::JINA_V3,
    #[cfg(feature = "encoder")]
    &tessera_encoder::T5_ENCODER,
    #[cfg(feature = "encoder")]
    &tessera_encoder::STATIC,
];

pub(crate) fn registry() -> Registry {
    Registry::new(BUILTIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_feature_is_registered() {
        let names = registry().names();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        if cfg!(feature = "encoder") {
            assert!(names.contains(&"bert") && names.contains(&"roberta"));
        }
        if cfg!(feature = "flash") {
            assert_eq!(names[0], "flash", "flash wins ties");
        }
        if cfg!(feature = "encoder") {
            assert!(names.contains(&"jina-bert"));
        }
    }
}
