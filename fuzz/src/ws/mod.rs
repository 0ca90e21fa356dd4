#[path = "../../../session/src/ws/frame.rs"]
pub mod frame;
#[path = "../../../session/src/ws/fuzzing.rs"]
pub mod fuzzing;
