//! Names control's accounts hold are never given to a static-token session: on an edge with
//! both static tokens and control, a static-token agent's names are checked with control
//! (`POST /internal/v1/names`) before their routes are claimed. If control cannot answer, the
//! session is refused (the name might be held): static tokens never win a name by a timeout.

use async_trait::async_trait;
use warren_proto::control::{Reject, RejectCode};

use crate::control_http::ControlHttpError;

/// Asks control which of `names` (single DNS labels) its accounts hold.
#[async_trait]
pub trait HeldNames: Send + Sync + 'static {
    async fn held(&self, names: &[String]) -> Result<Vec<String>, ControlHttpError>;
}

/// Refuses the session if control holds any of `hostnames` (each `{label}.{domain}`).
pub async fn refuse_held(
    held: &dyn HeldNames,
    hostnames: impl Iterator<Item = &str>,
    domain: &str,
) -> Result<(), Reject> {
    let suffix = format!(".{}", domain.to_ascii_lowercase());
    let names: Vec<String> = hostnames
        .filter_map(|h| h.strip_suffix(&suffix))
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    match held.held(&names).await {
        Ok(taken) => match taken.first() {
            Some(name) => Err(Reject::new(
                RejectCode::SubdomainTaken,
                format!(
                    "{name}.{domain} is held by an account of this edge's control plane: choose \
                     another name with --subdomain"
                ),
            )),
            None => Ok(()),
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot ask control which names it holds");
            Err(Reject::new(
                RejectCode::Overloaded,
                "the edge cannot check with its control plane whether the name is free; try \
                 again shortly",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Holds(Result<Vec<String>, String>);

    #[async_trait]
    impl HeldNames for Holds {
        async fn held(&self, names: &[String]) -> Result<Vec<String>, ControlHttpError> {
            assert!(names.iter().all(|n| !n.contains('.')), "{names:?}");
            self.0
                .clone()
                .map_err(|reason| ControlHttpError::Unreachable {
                    url: "http://control.test/internal/v1/names".into(),
                    reason,
                })
        }
    }

    #[tokio::test]
    async fn held_names_and_an_unreachable_control_refuse() {
        let hosts = ["demo.example.net"];
        let free = refuse_held(&Holds(Ok(vec![])), hosts.into_iter(), "example.net").await;
        assert!(free.is_ok());
        let taken = refuse_held(
            &Holds(Ok(vec!["demo".into()])),
            hosts.into_iter(),
            "example.net",
        )
        .await
        .err()
        .map(|r| r.code);
        assert_eq!(taken, Some(RejectCode::SubdomainTaken));
        let down = refuse_held(&Holds(Err("down".into())), hosts.into_iter(), "example.net")
            .await
            .err()
            .map(|r| r.code);
        assert_eq!(down, Some(RejectCode::Overloaded));
    }
}
