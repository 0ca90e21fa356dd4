#[path = "../../../../edge/src/visitor/h1/framing.rs"]
pub mod framing;
#[path = "../../../../edge/src/visitor/h1/head.rs"]
pub mod head;
