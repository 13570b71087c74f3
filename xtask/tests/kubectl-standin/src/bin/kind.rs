//! The `kind` stand-in: `kind get clusters`, the one kind call xtask makes outside
//! `cluster up|down` (`dashboards`, `cluster status`): each cluster's name on its own
//! line, or "No kind clusters found." on stderr (sigs.k8s.io/kind
//! pkg/cmd/kind/get/clusters/clusters.go). Anything else fails as kind fails ("ERROR:
//! ..." and exit 1, pkg/cmd/kind/app/main.go), so a new kind call in xtask needs a
//! stand-in here before its test can pass.

use kubectl_standin::{Cluster, die_of_sigpipe_like_go, fail};

fn main() {
    die_of_sigpipe_like_go();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cluster = Cluster::open();
    cluster.record_call("kind", &args);
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["get", "clusters"] => {
            let names: Vec<&str> = cluster.state["kind_clusters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|name| name.as_str())
                .collect();
            if names.is_empty() {
                eprintln!("No kind clusters found.");
            }
            for name in names {
                println!("{name}");
            }
        }
        _ => fail(&format!(
            "ERROR: (stand-in) `kind {}` is not modelled",
            args.join(" ")
        )),
    }
}
