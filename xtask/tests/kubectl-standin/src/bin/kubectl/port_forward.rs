//! `kubectl port-forward pod/NAME [LOCAL]:REMOTE`: real TCP forwarding from 127.0.0.1 to
//! the pod's REAL admin API (the mock-service process the state file names), with the
//! real program's output, which is what can kill it:
//!
//! - client-go tools/portforward/portforward.go, `getListener`: for `localhost` (the
//!   default address) one listener on 127.0.0.1 and one on ::1, each announced on stdout
//!   as "Forwarding from 127.0.0.1:N -> REMOTE" / "Forwarding from [::1]:N -> REMOTE";
//!   a failed ::1 listener is passed over when 127.0.0.1 worked;
//! - same file, `handleConnection`: "Handling connection for N" on stdout (kubectl's
//!   `out`) for EVERY accepted connection, before it dials the pod. A Go program dies
//!   of SIGPIPE writing to a closed stdout (`die_of_sigpipe_like_go`), so a caller that
//!   stopped reading kills the forward on its next connection;
//! - an error on a connection (nothing listens on REMOTE in the pod) is logged ("an
//!   error occurred forwarding N -> REMOTE: ...") and closes the stream connection:
//!   kubectl exits with "error: lost connection to pod" (k8s.io/kubectl
//!   pkg/cmd/portforward/portforward.go, `ErrLostConnectionToPod`);
//! - a pod that is not running: "error: unable to forward port because pod is not
//!   running. Current status=Pending" (same kubectl file).

use std::{
    io,
    net::{Shutdown, TcpListener, TcpStream},
    thread,
};

use kubectl_standin::{Cluster, end_with_the_cluster, fail};

use crate::Call;

/// The one port the pods' containers serve the admin API on (ADMIN_PORT in the manifests).
const ADMIN_PORT: u16 = 9901;

pub fn run(cluster: &Cluster, call: &Call) {
    let flags = call.flags(&[], &[]);
    let Some((target, ports)) = flags.words.split_first() else {
        fail("error: TYPE/NAME and list of ports are required for port-forward");
    };
    let name = match target.split_once('/') {
        Some(("pod" | "pods" | "po", name)) => name,
        None => target.as_str(),
        Some(_) => fail(&format!(
            "error: (stand-in) port-forward to `{target}` is not modelled (only pods)"
        )),
    };
    let Some(pod) = cluster
        .running_pods(&call.namespace)
        .into_iter()
        .find(|p| p.name == name)
    else {
        fail(&format!(
            "Error from server (NotFound): pods \"{name}\" not found"
        ));
    };
    if pod.forward_fails {
        fail("error: unable to forward port because pod is not running. Current status=Pending");
    }
    let [spec] = ports else {
        fail(&format!(
            "error: (stand-in) port-forward of {} ports is not modelled",
            ports.len()
        ));
    };
    let (local, remote) = parse_ports(spec);
    let Ok(v4) = TcpListener::bind(("127.0.0.1", local)) else {
        eprintln!(
            "Unable to listen on port {local}: Listeners failed to create with the following errors: [unable to create listener: Error listen tcp4 127.0.0.1:{local}: bind: address already in use]"
        );
        fail(&format!(
            "error: unable to listen on any of the requested ports: [{{{local} {remote}}}]"
        ));
    };
    let port = v4.local_addr().map_or(local, |a| a.port());
    println!("Forwarding from 127.0.0.1:{port} -> {remote}");
    let v6 = TcpListener::bind(("::1", port)).ok();
    if v6.is_some() {
        println!("Forwarding from [::1]:{port} -> {remote}");
    }
    end_with_the_cluster(cluster.path());
    // What listens on REMOTE inside the pod: the admin API, on 9901 only.
    let upstream = pod.admin_port.filter(|_| remote == ADMIN_PORT);
    let pod = pod.name;
    if let Some(v6) = v6 {
        let pod = pod.clone();
        thread::spawn(move || accept(&v6, port, remote, &pod, upstream));
    }
    accept(&v4, port, remote, &pod, upstream);
}

/// ":9901" (a free local port), "8080:9901" or "9901" (the same port on both sides).
fn parse_ports(spec: &str) -> (u16, u16) {
    let number = |text: &str, side: &str| {
        text.parse::<u16>().unwrap_or_else(|error| {
            fail(&format!(
                "error: Error parsing {side} port '{text}': {error}"
            ))
        })
    };
    match spec.split_once(':') {
        Some(("", remote)) => (0, number(remote, "remote")),
        Some((local, remote)) => (number(local, "local"), number(remote, "remote")),
        None => {
            let port = number(spec, "local");
            (port, port)
        }
    }
}

fn accept(listener: &TcpListener, port: u16, remote: u16, pod: &str, upstream: Option<u16>) {
    // Ends with the process (killed, SIGPIPE, or `end_with_the_cluster`).
    for connection in listener.incoming() {
        let Ok(connection) = connection else { continue };
        println!("Handling connection for {port}");
        let pod = pod.to_owned();
        thread::spawn(move || forward(connection, port, remote, &pod, upstream));
    }
}

fn forward(client: TcpStream, port: u16, remote: u16, pod: &str, upstream: Option<u16>) {
    let Some(server) = upstream.and_then(|p| TcpStream::connect(("127.0.0.1", p)).ok()) else {
        eprintln!(
            "E0000 00:00:00.000000 portforward.go:424] \"Unhandled Error\" err=\"an error occurred forwarding {port} -> {remote}: error forwarding port {remote} to pod {pod}: failed to connect to localhost:{remote} inside namespace: connect: connection refused\""
        );
        fail("error: lost connection to pod");
    };
    let (Ok(mut client_reader), Ok(mut server_writer)) = (client.try_clone(), server.try_clone())
    else {
        return;
    };
    let upload = thread::spawn(move || {
        let _ = io::copy(&mut client_reader, &mut server_writer);
        let _ = server_writer.shutdown(Shutdown::Write);
    });
    let (mut server_reader, mut client_writer) = (server, client);
    let _ = io::copy(&mut server_reader, &mut client_writer);
    let _ = client_writer.shutdown(Shutdown::Both);
    let _ = upload.join();
}
