//! The `warren-edge` binary's own command line: settings it refuses before starting.
//!
//! Needs the binary: `cargo build -p warren-edge` (the test says so if it is missing).

use std::process::Command;
use std::time::Duration;
use warren_testkit::multi::edge_binary;

/// Runs the edge with `args`; it must exit at once (a refused setting), not start serving.
fn refused(args: &[&str]) -> anyhow::Result<String> {
    let mut child = Command::new(edge_binary()?)
        .args(["--listen", "127.0.0.1:0", "--token", "t0ken-for-a-refusal"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait()? {
            assert!(!status.success(), "{args:?} was accepted");
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                std::io::Read::read_to_string(&mut pipe, &mut stderr)?;
            }
            return Ok(stderr);
        }
        if std::time::Instant::now() > deadline {
            child.kill()?;
            anyhow::bail!("the edge started with {args:?} instead of refusing it");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_worker_count_out_of_range_is_refused_naming_the_flag() -> anyhow::Result<()> {
    for bad in ["0", "1025", "many", "-1"] {
        let stderr = refused(&[&format!("--workers={bad}")])?;
        assert!(stderr.contains("--workers"), "{bad}: {stderr}");
    }
    let stderr = refused(&["--workers", "0"])?;
    assert!(stderr.contains("1..=1024"), "{stderr}");
    Ok(())
}

#[test]
fn plain_http_control_is_refused_without_the_insecure_flag() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let secret = dir.path().join("edge-secret");
    std::fs::write(&secret, "edge-secret-0123456789\n")?;
    let secret = secret.display().to_string();
    let stderr = refused(&[
        "--control-url",
        "http://127.0.0.1:9",
        "--control-secret-file",
        &secret,
    ])?;
    assert!(stderr.contains("--control-insecure-http"), "{stderr}");
    let stderr = refused(&[
        "--control-secret",
        "edge-secret-0123456789",
        "--control-secret-file",
        &secret,
    ])?;
    assert!(stderr.contains("not both"), "{stderr}");
    Ok(())
}
