//! The built-in `code-interpreter-v1` template, built with the template system on first
//! use: once `debian` is built, a build of [`code_interpreter::steps`] over it, recorded as
//! the built template `code-interpreter-v1` (so it survives restarts, shows in template
//! listings and is reused like any build). A create naming it while it (or `debian` under
//! it) builds gets `TemplateBuilding` (503), as `debian` gives.

use std::sync::Arc;
use std::time::Duration;

use super::builds::{BuildRequest, RawStepOwned};
use super::{LifecycleError, Manager, lock};
use crate::state::BuildStatus;
use crate::template::code_interpreter;

/// Where the template's first build is.
#[derive(Debug, Default)]
pub(crate) enum CodeInterpreterBuild {
    /// Not building (built, or not asked for yet).
    #[default]
    Idle,
    /// `debian`, then the template's own build, under way.
    Building,
    /// The last build failed (told to the next create, which then builds again).
    Failed(String),
}

impl Manager {
    /// Makes sure `code-interpreter-v1` is built before a create uses it.
    ///
    /// # Errors
    ///
    /// `TemplateBuilding` while it builds (starting the build on first use); `Internal` once
    /// with the last build's failure.
    pub(crate) fn ensure_code_interpreter(self: &Arc<Self>) -> Result<(), LifecycleError> {
        let building = || LifecycleError::TemplateBuilding {
            name: code_interpreter::NAME.to_owned(),
        };
        let mut state = lock(&self.code_interpreter);
        match std::mem::take(&mut *state) {
            CodeInterpreterBuild::Building => {
                *state = CodeInterpreterBuild::Building;
                return Err(building());
            }
            CodeInterpreterBuild::Failed(reason) => {
                return Err(LifecycleError::internal(
                    format!("building template {}", code_interpreter::NAME),
                    reason,
                ));
            }
            CodeInterpreterBuild::Idle => {}
        }
        if matches!(self.tagged_build(code_interpreter::NAME), Ok(Some(_))) {
            return Ok(());
        }
        *state = CodeInterpreterBuild::Building;
        tracing::info!("building template {}", code_interpreter::NAME);
        let this = self.clone();
        tokio::spawn(async move {
            let result = this.build_code_interpreter().await;
            *lock(&this.code_interpreter) = match result {
                Ok(()) => {
                    tracing::info!("template {} is built", code_interpreter::NAME);
                    CodeInterpreterBuild::Idle
                }
                Err(e) => {
                    tracing::error!("template {}: {e}", code_interpreter::NAME);
                    CodeInterpreterBuild::Failed(e)
                }
            };
        });
        Err(building())
    }

    async fn build_code_interpreter(self: &Arc<Self>) -> Result<(), String> {
        loop {
            match self.debian_template() {
                Ok(_) => break,
                Err(LifecycleError::TemplateBuilding { .. }) => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        let (_, build) = self
            .request_build(code_interpreter::NAME, Vec::new(), None, None)
            .map_err(|e| e.to_string())?;
        let steps = code_interpreter::steps()
            .into_iter()
            .map(|(kind, args)| RawStepOwned {
                kind: kind.to_owned(),
                args,
                files_hash: None,
                force: false,
            })
            .collect();
        let plan = self
            .plan_build(BuildRequest {
                from_template: Some(code_interpreter::BASE.to_owned()),
                from_image: None,
                from_image_registry: None,
                steps,
                force: false,
                start_cmd: None,
                ready_cmd: None,
            })
            .map_err(|e| e.to_string())?;
        let id = build.id.clone();
        self.start_build(build, plan).map_err(|e| e.to_string())?;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let record = self
                .store
                .build(&id)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("build {id} disappeared"))?;
            match record.status {
                BuildStatus::Ready => return Ok(()),
                BuildStatus::Error => {
                    let reason = record.reason.map_or_else(String::new, |r| {
                        format!("step {}: {}", r.step.unwrap_or_default(), r.message)
                    });
                    return Err(format!("build {id} failed: {reason}"));
                }
                _ => {}
            }
        }
    }
}
