//! `cargo xtask local` refuses to start when a port one of its tools would listen on is
//! taken, naming the port and the tool, before it builds or starts anything: here
//! Jaeger's query gRPC port (16685), with a stand-in `jaeger` as the only program on
//! PATH (it is never run: the check comes first).

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use crate::support::serial;

/// The check binds each port for an instant, and 16685 is the test's own: run under
/// `flock /tmp/mesh-ports.lock` (see COMMON rules) so no other mesh starts meanwhile.
#[test]
fn local_refuses_a_taken_jaeger_query_port_naming_it_and_the_tool() {
    let _serial = serial();
    let bin = std::env::temp_dir().join(format!("xtask-ports-bin-{}", std::process::id()));
    std::fs::create_dir_all(&bin).expect("create the PATH dir");
    let jaeger = bin.join("jaeger");
    std::fs::write(&jaeger, "#!/bin/false\n").expect("write the stand-in jaeger");
    std::fs::set_permissions(&jaeger, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // Held for the whole run; if something else holds it already, it is taken anyway.
    let _held = std::net::TcpListener::bind("127.0.0.1:16685").ok();

    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("local")
        .env("PATH", &bin)
        .output()
        .expect("run xtask local");
    std::fs::remove_dir_all(&bin).expect("remove the PATH dir");

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "local started: {stderr}");
    assert!(
        stderr.contains("port 16685 (for jaeger's query gRPC API) is in use"),
        "{stderr}"
    );
}
