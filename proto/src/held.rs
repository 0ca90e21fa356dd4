//! Whether control's accounts hold names: what an edge with static tokens asks control before a
//! static-token agent may serve a name, so that an agent of an edge-local account never takes
//! a name an account of control holds (`POST /internal/v1/names`, edge secret).

use serde::{Deserialize, Serialize};

/// At most this many names in one question (a session carries at most 16 tunnels).
pub const MAX_NAMES_PER_QUERY: usize = 16;

/// The names (single DNS labels, lowercase) an edge wants to give a static-token session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NamesQuery {
    #[cfg_attr(feature = "utoipa", schema(max_items = 16))]
    pub names: Vec<String>,
}

/// Which of the asked names an account of control holds: claimed (by hand or as a stable
/// name), or served by a tunnel whose grant is still valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct NamesHeld {
    pub held: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_unknown_fields() {
        let query = NamesQuery {
            names: vec!["demo".into()],
        };
        let text = serde_json::to_string(&query).unwrap_or_default();
        assert_eq!(text, r#"{"names":["demo"]}"#);
        assert_eq!(serde_json::from_str::<NamesQuery>(&text).ok(), Some(query));
        assert!(serde_json::from_str::<NamesQuery>(r#"{"names":[],"x":1}"#).is_err());
    }
}
