//! Choosing a backend for a model from the ones compiled in.

use crate::backend::{Assessment, BackendFactory};
use crate::inspection::{Evidence, Finding, ModelInspection, Severity};

/// The compiled-in backends, in priority order (earlier wins when several can serve a model).
#[derive(Debug, Clone)]
pub struct Registry {
    factories: Vec<&'static dyn BackendFactory>,
}

/// The backend picked for a model and why.
#[derive(Debug, Clone)]
pub struct Chosen {
    /// The factory.
    pub factory: &'static dyn BackendFactory,
    /// Architecture and variant, in words.
    pub architecture: String,
    /// The facts that decided it.
    pub evidence: Vec<Evidence>,
    /// Warnings and notes from the backend.
    pub findings: Vec<Finding>,
    /// The longest input its position scheme supports ([`Assessment::Serves`]).
    pub max_positions: Option<usize>,
    /// The pooling the architecture implies where the model configures none.
    pub pooling: Option<crate::ImpliedPooling>,
}

/// What each backend said, and the one chosen.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The chosen backend, if any could serve the model.
    pub chosen: Option<Chosen>,
    /// Backends that declined, with their reasons.
    pub declined: Vec<(&'static str, Vec<Finding>)>,
    /// Backends that could also serve it but lost on priority (or to `--backend`).
    pub passed_over: Vec<&'static str>,
}

impl Selection {
    /// A finding that sums up why nothing serves the model, naming what each backend said.
    pub fn no_backend_finding(&self) -> Finding {
        let reasons = self
            .declined
            .iter()
            .map(|(name, reasons)| {
                let why = reasons
                    .iter()
                    .filter(|f| f.severity == Severity::Error)
                    .map(|f| f.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; ");
                format!("{name}: {why}")
            })
            .collect::<Vec<_>>()
            .join(" | ");
        Finding::error(
            "no-backend",
            format!("no compiled backend can serve this model ({reasons})"),
        )
        .fix("fix the findings above, or build tessera with the cargo feature of the backend for this architecture")
    }
}

/// Why a backend could not be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectError {
    /// `--backend` names a backend that is not compiled in.
    #[error("unknown backend `{name}` (compiled in: {available})")]
    Unknown {
        /// The requested name.
        name: String,
        /// The names available.
        available: String,
    },
}

impl Registry {
    /// A registry over `factories`, in priority order.
    pub fn new(factories: &[&'static dyn BackendFactory]) -> Self {
        Self {
            factories: factories.to_vec(),
        }
    }

    /// Names of the compiled-in backends, in priority order.
    pub fn names(&self) -> Vec<&'static str> {
        self.factories.iter().map(|f| f.name()).collect()
    }

    /// Asks every backend about the model; picks the first that serves it, or `forced`.
    pub fn select(&self, inspection: &ModelInspection, forced: Option<&str>) -> Result<Selection, SelectError> {
        if let Some(name) = forced {
            if !self.factories.iter().any(|f| f.name() == name) {
                return Err(SelectError::Unknown {
                    name: name.to_string(),
                    available: self.names().join(", "),
                });
            }
        }
        let mut selection = Selection {
            chosen: None,
            declined: Vec::new(),
            passed_over: Vec::new(),
        };
        for factory in &self.factories {
            match factory.assess(inspection) {
                Assessment::Serves {
                    architecture,
                    evidence,
                    findings,
                    max_positions,
                    pooling,
                } => {
                    let wanted = forced.is_none_or(|name| name == factory.name());
                    if wanted && selection.chosen.is_none() {
                        selection.chosen = Some(Chosen {
                            factory: *factory,
                            architecture,
                            evidence,
                            findings,
                            max_positions,
                            pooling,
                        });
                    } else {
                        selection.passed_over.push(factory.name());
                    }
                }
                Assessment::Declines { reasons } => {
                    selection.declined.push((factory.name(), reasons));
                }
            }
        }
        Ok(selection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, LoadRequest};
    use crate::error::LoadError;

    /// A backend that serves or declines every model, as told.
    #[derive(Debug)]
    struct Stub {
        name: &'static str,
        serves: bool,
    }

    impl BackendFactory for Stub {
        fn name(&self) -> &'static str {
            self.name
        }

        fn assess(&self, _: &ModelInspection) -> Assessment {
            if self.serves {
                Assessment::Serves {
                    architecture: format!("{} arch", self.name),
                    evidence: Vec::new(),
                    findings: Vec::new(),
                    max_positions: Some(512),
                    pooling: None,
                }
            } else {
                Assessment::Declines {
                    reasons: vec![Finding::error("stub-declines", format!("{} says no", self.name))],
                }
            }
        }

        fn load(&self, _: &LoadRequest<'_>) -> Result<Box<dyn Backend>, LoadError> {
            unreachable!("selection never loads")
        }
    }

    static FAST: Stub = Stub {
        name: "fast",
        serves: true,
    };
    static PADDED: Stub = Stub {
        name: "padded",
        serves: true,
    };
    static OTHER: Stub = Stub {
        name: "other",
        serves: false,
    };

    fn registry() -> Registry {
        Registry::new(&[&OTHER, &FAST, &PADDED])
    }

    #[test]
    fn the_first_backend_that_serves_wins_and_the_rest_are_passed_over() {
        let s = registry().select(&ModelInspection::default(), None).unwrap();
        assert_eq!(s.chosen.map(|c| c.factory.name()), Some("fast"));
        assert_eq!(s.passed_over, vec!["padded"]);
        assert_eq!(s.declined.len(), 1);
        assert_eq!(s.declined[0].0, "other");
    }

    #[test]
    fn a_forced_backend_wins_a_tie_it_would_lose() {
        let s = registry().select(&ModelInspection::default(), Some("padded")).unwrap();
        assert_eq!(s.chosen.map(|c| c.factory.name()), Some("padded"));
        assert_eq!(s.passed_over, vec!["fast"]);
    }

    #[test]
    fn a_forced_backend_that_declines_is_not_chosen_and_says_why() {
        let s = registry().select(&ModelInspection::default(), Some("other")).unwrap();
        assert!(s.chosen.is_none());
        let finding = s.no_backend_finding();
        assert!(finding.message.contains("other says no"), "{}", finding.message);
    }

    #[test]
    fn an_unknown_forced_backend_is_an_error_listing_the_compiled_ones() {
        let err = registry().select(&ModelInspection::default(), Some("gpu")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown backend `gpu` (compiled in: other, fast, padded)"
        );
    }
}
