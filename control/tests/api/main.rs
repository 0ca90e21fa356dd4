//! API tests of `warren-control`: each runs against PostgreSQL and SQLite, through
//! `tower::ServiceExt::oneshot` and over real HTTP (see `common::api_tests!`).
//!
//! PostgreSQL comes from `WARREN_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); every test creates a fresh database there.

mod accounts;
// The testkit's real DNS server, included by path: depending on the testkit would build the
// edge and the CLI for control's tests. Not every helper is used here.
#[allow(dead_code)]
#[path = "../../../testkit/src/challtestsrv.rs"]
mod challtestsrv;
mod common;
mod domains;
mod errors;
mod grants;
mod history;
mod names_held;
mod openapi;
mod reports;
mod subdomains;
mod tokens;
