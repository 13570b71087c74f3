//! Regression: the commands that act on the running mesh read it as `cargo xtask local`
//! started it, not as the built-in graph has it. A topology with an extra service and
//! its services in another order gets other ports; `chaos` must still reach exactly the
//! processes it names, `chaos status` must list this mesh's services, and `chaos all
//! --clear` must clear them all.

use std::collections::BTreeMap;

use serde_json::Value;
use xtask::mesh::LocalMesh;

use crate::support::{serial, start_local, stop_local, succeeded, xtask};

/// inventory-service first, an extra audit-service, and a gateway calling both.
const TOPOLOGY: &str = "\
services:
  inventory-service: {}
  audit-service: {}
  gateway-service:
    routes:
      GET /api/data:
        calls:
          - to: inventory-service
      POST /api/action:
        calls:
          - to: audit-service
";

/// Each service's fault as its own admin API reports it (`null` when none).
fn faults(mesh: &LocalMesh) -> BTreeMap<String, Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut faults = BTreeMap::new();
        for service in &mesh.services {
            let url = format!("http://127.0.0.1:{}/faults", service.admin_port);
            let text = reqwest::get(&url)
                .await
                .expect("the admin API answers")
                .text()
                .await
                .expect("a body");
            let body: Value = serde_json::from_str(&text).expect("JSON");
            assert_eq!(body["service"], service.name.as_str(), "{url}: {body}");
            faults.insert(service.name.clone(), body["fault"].clone());
        }
        faults
    })
}

#[test]
fn chaos_acts_on_the_services_of_the_running_topology() {
    let _serial = serial();
    let file = std::env::temp_dir().join(format!("xtask-topology-{}.yaml", std::process::id()));
    std::fs::write(&file, TOPOLOGY).expect("write the topology");
    let local = start_local(&[
        "--no-observability",
        "--topology",
        file.to_str().expect("utf-8"),
    ]);
    let mesh = LocalMesh::running().expect("the running mesh's record");
    let order: Vec<&str> = mesh.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        order,
        ["inventory-service", "audit-service", "gateway-service"]
    );
    // The entry keeps the gateway's port; the others follow in the file's order, so
    // inventory-service is not where the built-in graph puts it (30084).
    assert_eq!(mesh.service("gateway-service").map(|s| s.port), Some(30080));
    assert_eq!(
        mesh.service("inventory-service").map(|s| s.port),
        Some(30081)
    );

    succeeded(&xtask(&["chaos", "audit-service", "--latency", "50ms"]));
    succeeded(&xtask(&[
        "chaos",
        "inventory-service",
        "--error-rate",
        "0.5",
    ]));
    let faults = faults(&mesh);
    assert_eq!(faults["audit-service"]["latency_ms"], 50, "{faults:?}");
    assert_eq!(faults["inventory-service"]["error_rate"], 0.5, "{faults:?}");
    assert!(faults["gateway-service"].is_null(), "{faults:?}");

    let status = succeeded(&xtask(&["chaos", "status"]));
    let listed: Vec<&str> = status
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(listed, order, "{status}");

    let unknown = xtask(&["chaos", "payment-service", "--latency", "1s"]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains("`payment-service` is not a service of the local mesh"),
        "{unknown:?}"
    );

    succeeded(&xtask(&["chaos", "all", "--clear"]));
    assert!(
        self::faults(&mesh).values().all(Value::is_null),
        "a fault survived `chaos all --clear`"
    );
    stop_local(local);
    let _ = std::fs::remove_file(&file);
    assert!(
        LocalMesh::running().is_none(),
        "the record still says running"
    );
}
