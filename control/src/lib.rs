//! Placeholder: the control plane arrives with the control-plane issue.
#![forbid(unsafe_code)]
