//! The Tiltfile, evaluated offline: Tilt cannot run here (no cluster, no Tilt binary),
//! but its Tiltfile is Starlark. This test evaluates the real file with the `starlark`
//! crate, Tilt's builtins replaced by recording stubs that have the parameters Tilt
//! documents (internal/tiltfile/api/__init__.py in tilt-dev/tilt) and check their types.
//! A misspelled builtin, an unknown keyword or a wrongly typed argument therefore fails
//! here as it would in `tilt up`, and the tests assert what the Tiltfile asks Tilt to do.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value as Json};
use starlark::environment::{GlobalsBuilder, Module};
use starlark::eval::Evaluator;
use starlark::starlark_module;
use starlark::syntax::{AstModule, Dialect};
use starlark::values::none::NoneType;
use starlark::values::structs::AllocStruct;
use starlark::values::{Heap, Value};

/// The services the Tiltfile must make resources of: the built-in topology's, which
/// `cargo xtask codegen` writes to manifests/services.json for it.
fn services() -> Vec<String> {
    contract::topology::Topology::guide()
        .service_names()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

const OBSERVABILITY: [&str; 5] = [
    "prometheus",
    "alertmanager",
    "grafana",
    "otel-collector",
    "jaeger",
];
const BINARY_RESOURCE: &str = "mock-service-binary";

// ---------------------------------------------------------------------------------------
// Recording stubs
// ---------------------------------------------------------------------------------------

/// One call of a Tilt builtin: its name and the arguments given (by parameter name,
/// positional ones included; parameters left at their default are absent).
#[derive(Debug, Clone)]
struct Call {
    builtin: &'static str,
    args: Map<String, Json>,
}

thread_local! {
    /// The calls of the evaluation running on this thread. (A thread-local rather than
    /// `Evaluator::extra`: deriving `ProvidesStaticType` implements an unsafe trait, and
    /// the workspace forbids unsafe code.)
    static RECORDED: RefCell<Vec<Call>> = const { RefCell::new(Vec::new()) };
    /// What `k8s_context()` answers during the evaluation on this thread: the current
    /// kubectl context, or the one `tilt up --context NAME` names.
    static K8S_CONTEXT: RefCell<String> = const { RefCell::new(String::new()) };
    /// The directory of the Tiltfile evaluated on this thread: Tilt reads the files a
    /// Tiltfile names relative to it.
    static TILTFILE_DIR: RefCell<PathBuf> = const { RefCell::new(PathBuf::new()) };
}

/// The project's kind cluster, the only context the Tiltfile accepts.
const CONTEXT: &str = "kind-monitoring-demo";

/// The types Tilt's documentation gives its parameters, as far as the stubs check them.
#[derive(Debug, Clone, Copy)]
enum Ty {
    Str,
    Bool,
    Int,
    StrList,
    StrOrList,
    StrDict,
    TriggerMode,
    /// `Union[str, Link, List[Union[str, Link]]]`
    Links,
    /// `Union[str, List[str], Blob]`
    Yaml,
    /// Values the stubs do not model (port forwards, live_update steps, probes, ...).
    Any,
}

/// Tilt's own value types (Link, Blob, TriggerMode) are structs tagged with this field.
const TILT_TYPE: &str = "tilt_type";

fn tilt_type(value: &Json) -> Option<&str> {
    value.get(TILT_TYPE).and_then(Json::as_str)
}

fn has_type(ty: Ty, value: &Json) -> bool {
    let str_list = |v: &Json| v.as_array().is_some_and(|a| a.iter().all(Json::is_string));
    let link = |v: &Json| v.is_string() || tilt_type(v) == Some("link");
    match ty {
        Ty::Str => value.is_string(),
        Ty::Bool => value.is_boolean(),
        Ty::Int => value.is_i64(),
        Ty::StrList => str_list(value),
        Ty::StrOrList => value.is_string() || str_list(value),
        Ty::StrDict => value
            .as_object()
            .is_some_and(|m| m.values().all(Json::is_string)),
        Ty::TriggerMode => tilt_type(value) == Some("trigger_mode"),
        Ty::Links => link(value) || value.as_array().is_some_and(|a| a.iter().all(link)),
        Ty::Yaml => value.is_string() || str_list(value) || tilt_type(value) == Some("blob"),
        Ty::Any => true,
    }
}

/// Checks and records one call. `None` (and an explicit Starlark `None`) means "left at
/// its default".
fn record<'v>(
    builtin: &'static str,
    params: &[(&str, Ty, Option<Value<'v>>)],
) -> anyhow::Result<()> {
    let mut args = Map::new();
    for (name, ty, value) in params {
        let Some(value) = value.filter(|v| !v.is_none()) else {
            continue;
        };
        let json = value
            .to_json_value()
            .map_err(|e| anyhow::anyhow!("{builtin}: argument `{name}`: {e}"))?;
        if !has_type(*ty, &json) {
            anyhow::bail!(
                "{builtin}: argument `{name}` must be {ty:?} (as Tilt documents it), got {} `{}`",
                value.get_type(),
                value.to_repr()
            );
        }
        args.insert((*name).to_owned(), json);
    }
    RECORDED.with_borrow_mut(|calls| calls.push(Call { builtin, args }));
    Ok(())
}

/// Tilt's builtins used by the Tiltfile, with every parameter Tilt documents, in its
/// order (Tilt accepts each of them positionally or by name, as these do).
#[starlark_module]
fn tilt_builtins(builder: &mut GlobalsBuilder) {
    /// `k8s_context() -> str`: the name of the Kubernetes context Tilt deploys to.
    fn k8s_context() -> anyhow::Result<String> {
        Ok(K8S_CONTEXT.with_borrow(Clone::clone))
    }

    /// `fail(msg: str)`: stops the Tiltfile's evaluation with `msg`; Tilt registers
    /// nothing then and shows the message.
    fn fail<'v>(msg: Value<'v>) -> anyhow::Result<NoneType> {
        let Some(msg) = msg.unpack_str() else {
            anyhow::bail!("fail: argument `msg` must be Str, got {}", msg.get_type());
        };
        Err(anyhow::anyhow!("fail: {msg}"))
    }

    fn update_settings<'v>(
        max_parallel_updates: Option<Value<'v>>,
        k8s_upsert_timeout_secs: Option<Value<'v>>,
        suppress_unused_image_warnings: Option<Value<'v>>,
        k8s_server_side_apply: Option<Value<'v>>,
    ) -> anyhow::Result<NoneType> {
        record(
            "update_settings",
            &[
                ("max_parallel_updates", Ty::Int, max_parallel_updates),
                ("k8s_upsert_timeout_secs", Ty::Int, k8s_upsert_timeout_secs),
                (
                    "suppress_unused_image_warnings",
                    Ty::StrOrList,
                    suppress_unused_image_warnings,
                ),
                ("k8s_server_side_apply", Ty::Str, k8s_server_side_apply),
            ],
        )?;
        Ok(NoneType)
    }

    #[allow(clippy::too_many_arguments)] // Tilt's parameters, one each
    fn local_resource<'v>(
        name: Value<'v>,
        cmd: Option<Value<'v>>,
        deps: Option<Value<'v>>,
        trigger_mode: Option<Value<'v>>,
        resource_deps: Option<Value<'v>>,
        ignore: Option<Value<'v>>,
        auto_init: Option<Value<'v>>,
        serve_cmd: Option<Value<'v>>,
        cmd_bat: Option<Value<'v>>,
        serve_cmd_bat: Option<Value<'v>>,
        allow_parallel: Option<Value<'v>>,
        links: Option<Value<'v>>,
        labels: Option<Value<'v>>,
        env: Option<Value<'v>>,
        serve_env: Option<Value<'v>>,
        readiness_probe: Option<Value<'v>>,
        dir: Option<Value<'v>>,
        serve_dir: Option<Value<'v>>,
    ) -> anyhow::Result<NoneType> {
        record(
            "local_resource",
            &[
                ("name", Ty::Str, Some(name)),
                ("cmd", Ty::StrOrList, cmd),
                ("deps", Ty::StrOrList, deps),
                ("trigger_mode", Ty::TriggerMode, trigger_mode),
                ("resource_deps", Ty::StrList, resource_deps),
                ("ignore", Ty::StrOrList, ignore),
                ("auto_init", Ty::Bool, auto_init),
                ("serve_cmd", Ty::StrOrList, serve_cmd),
                ("cmd_bat", Ty::StrOrList, cmd_bat),
                ("serve_cmd_bat", Ty::StrOrList, serve_cmd_bat),
                ("allow_parallel", Ty::Bool, allow_parallel),
                ("links", Ty::Links, links),
                ("labels", Ty::StrOrList, labels),
                ("env", Ty::StrDict, env),
                ("serve_env", Ty::StrDict, serve_env),
                ("readiness_probe", Ty::Any, readiness_probe),
                ("dir", Ty::Str, dir),
                ("serve_dir", Ty::Str, serve_dir),
            ],
        )?;
        Ok(NoneType)
    }

    #[allow(clippy::too_many_arguments)] // Tilt's parameters, one each
    fn docker_build<'v>(
        r#ref: Value<'v>,
        context: Value<'v>,
        build_args: Option<Value<'v>>,
        dockerfile: Option<Value<'v>>,
        dockerfile_contents: Option<Value<'v>>,
        live_update: Option<Value<'v>>,
        match_in_env_vars: Option<Value<'v>>,
        ignore: Option<Value<'v>>,
        only: Option<Value<'v>>,
        entrypoint: Option<Value<'v>>,
        target: Option<Value<'v>>,
        ssh: Option<Value<'v>>,
        network: Option<Value<'v>>,
        secret: Option<Value<'v>>,
        extra_tag: Option<Value<'v>>,
        container_args: Option<Value<'v>>,
        cache_from: Option<Value<'v>>,
        pull: Option<Value<'v>>,
        platform: Option<Value<'v>>,
        extra_hosts: Option<Value<'v>>,
    ) -> anyhow::Result<NoneType> {
        record(
            "docker_build",
            &[
                ("ref", Ty::Str, Some(r#ref)),
                ("context", Ty::Str, Some(context)),
                ("build_args", Ty::StrDict, build_args),
                ("dockerfile", Ty::Str, dockerfile),
                ("dockerfile_contents", Ty::Any, dockerfile_contents),
                ("live_update", Ty::Any, live_update),
                ("match_in_env_vars", Ty::Bool, match_in_env_vars),
                ("ignore", Ty::StrOrList, ignore),
                ("only", Ty::StrOrList, only),
                ("entrypoint", Ty::StrOrList, entrypoint),
                ("target", Ty::Str, target),
                ("ssh", Ty::StrOrList, ssh),
                ("network", Ty::Str, network),
                ("secret", Ty::StrOrList, secret),
                ("extra_tag", Ty::StrOrList, extra_tag),
                ("container_args", Ty::StrList, container_args),
                ("cache_from", Ty::StrOrList, cache_from),
                ("pull", Ty::Bool, pull),
                ("platform", Ty::Str, platform),
                ("extra_hosts", Ty::StrOrList, extra_hosts),
            ],
        )?;
        Ok(NoneType)
    }

    fn kustomize<'v>(
        #[allow(non_snake_case)] // as Tilt documents it
        pathToDir: Value<'v>,
        kustomize_bin: Option<Value<'v>>,
        flags: Option<Value<'v>>,
        heap: Heap<'v>,
    ) -> anyhow::Result<Value<'v>> {
        record(
            "kustomize",
            &[
                ("pathToDir", Ty::Str, Some(pathToDir)),
                ("kustomize_bin", Ty::Str, kustomize_bin),
                ("flags", Ty::StrList, flags),
            ],
        )?;
        // The Blob Tilt would return, standing for the rendered YAML.
        let flags = flags.unwrap_or_else(|| heap.alloc(Vec::<String>::new()));
        Ok(heap.alloc(AllocStruct([
            (TILT_TYPE, heap.alloc("blob")),
            ("kustomize", pathToDir),
            ("flags", flags),
        ])))
    }

    fn k8s_yaml<'v>(
        yaml: Value<'v>,
        allow_duplicates: Option<Value<'v>>,
    ) -> anyhow::Result<NoneType> {
        record(
            "k8s_yaml",
            &[
                ("yaml", Ty::Yaml, Some(yaml)),
                ("allow_duplicates", Ty::Bool, allow_duplicates),
            ],
        )?;
        Ok(NoneType)
    }

    /// `read_json(path, default=None)`: the file at `path` (relative to the Tiltfile's
    /// directory) parsed as JSON; `default` when it does not exist and one is given. Tilt
    /// also watches the file, re-running the Tiltfile when it changes.
    fn read_json<'v>(
        path: Value<'v>,
        default: Option<Value<'v>>,
        heap: Heap<'v>,
    ) -> anyhow::Result<Value<'v>> {
        record(
            "read_json",
            &[("path", Ty::Str, Some(path)), ("default", Ty::Any, default)],
        )?;
        let relative = path.unpack_str().unwrap_or_default();
        let file = TILTFILE_DIR.with_borrow(|dir| dir.join(relative));
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(_) if default.is_some_and(|d| !d.is_none()) => {
                return Ok(default.unwrap_or_else(Value::new_none));
            }
            Err(e) => anyhow::bail!("read_json: {}: {e}", file.display()),
        };
        let json: Json = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("read_json: {}: {e}", file.display()))?;
        Ok(heap.alloc(&json))
    }

    fn watch_file<'v>(file_path: Value<'v>) -> anyhow::Result<NoneType> {
        record("watch_file", &[("file_path", Ty::Str, Some(file_path))])?;
        Ok(NoneType)
    }

    fn link<'v>(
        url: Value<'v>,
        name: Option<Value<'v>>,
        heap: Heap<'v>,
    ) -> anyhow::Result<Value<'v>> {
        record(
            "link",
            &[("url", Ty::Str, Some(url)), ("name", Ty::Str, name)],
        )?;
        let name = name.unwrap_or_else(|| heap.alloc(""));
        Ok(heap.alloc(AllocStruct([
            (TILT_TYPE, heap.alloc("link")),
            ("url", url),
            ("name", name),
        ])))
    }

    #[allow(clippy::too_many_arguments)] // Tilt's parameters, one each
    fn k8s_resource<'v>(
        workload: Option<Value<'v>>,
        new_name: Option<Value<'v>>,
        port_forwards: Option<Value<'v>>,
        extra_pod_selectors: Option<Value<'v>>,
        trigger_mode: Option<Value<'v>>,
        resource_deps: Option<Value<'v>>,
        objects: Option<Value<'v>>,
        auto_init: Option<Value<'v>>,
        pod_readiness: Option<Value<'v>>,
        links: Option<Value<'v>>,
        labels: Option<Value<'v>>,
        discovery_strategy: Option<Value<'v>>,
    ) -> anyhow::Result<NoneType> {
        record(
            "k8s_resource",
            &[
                ("workload", Ty::Str, workload),
                ("new_name", Ty::Str, new_name),
                ("port_forwards", Ty::Any, port_forwards),
                ("extra_pod_selectors", Ty::Any, extra_pod_selectors),
                ("trigger_mode", Ty::TriggerMode, trigger_mode),
                ("resource_deps", Ty::StrList, resource_deps),
                ("objects", Ty::StrList, objects),
                ("auto_init", Ty::Bool, auto_init),
                ("pod_readiness", Ty::Str, pod_readiness),
                ("links", Ty::Links, links),
                ("labels", Ty::StrOrList, labels),
                ("discovery_strategy", Ty::Str, discovery_strategy),
            ],
        )?;
        Ok(NoneType)
    }
}

fn tilt_constants(builder: &mut GlobalsBuilder) {
    for (name, mode) in [
        ("TRIGGER_MODE_AUTO", "auto"),
        ("TRIGGER_MODE_MANUAL", "manual"),
    ] {
        builder.set(
            name,
            AllocStruct([(TILT_TYPE, "trigger_mode"), ("mode", mode)]),
        );
    }
}

/// Evaluates Tiltfile text as Tilt would (top-level `for`/`if` allowed), with `context`
/// as the Kubernetes context: the builtin calls it made (up to an error), and the error.
fn evaluate_in(context: &str, text: &str) -> (Vec<Call>, Result<(), String>) {
    evaluate_at(&xtask::workspace_root(), context, text)
}

/// [`evaluate_in`] for a Tiltfile in `dir`, whose files it reads.
fn evaluate_at(dir: &Path, context: &str, text: &str) -> (Vec<Call>, Result<(), String>) {
    let dialect = Dialect {
        enable_top_level_stmt: true,
        ..Dialect::Standard
    };
    let ast = match AstModule::parse("Tiltfile", text.to_owned(), &dialect) {
        Ok(ast) => ast,
        Err(e) => return (Vec::new(), Err(format!("{e}"))),
    };
    let globals = GlobalsBuilder::standard()
        .with(tilt_builtins)
        .with(tilt_constants)
        .build();
    RECORDED.with_borrow_mut(Vec::clear);
    K8S_CONTEXT.set(context.to_owned());
    TILTFILE_DIR.set(dir.to_path_buf());
    let result = Module::with_temp_heap(|module| {
        let mut eval = Evaluator::new(&module);
        eval.eval_module(ast, &globals)
            .map(drop)
            .map_err(|e| format!("{e}"))
    });
    (RECORDED.with_borrow_mut(std::mem::take), result)
}

/// The calls of Tiltfile text evaluated against the project's cluster, or the error.
fn evaluate(text: &str) -> Result<Vec<Call>, String> {
    let (calls, result) = evaluate_in(CONTEXT, text);
    result.map(|()| calls)
}

// ---------------------------------------------------------------------------------------
// What the Tiltfile asks for
// ---------------------------------------------------------------------------------------

fn tiltfile_text() -> String {
    tiltfile_text_at(&xtask::workspace_root())
}

fn tiltfile_text_at(root: &Path) -> String {
    let path = root.join("Tiltfile");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The recorded calls of the repository's Tiltfile.
struct Plan(Vec<Call>);

impl Plan {
    fn load() -> Self {
        Self::load_at(&xtask::workspace_root())
    }

    /// The calls of the Tiltfile of the checkout at `root`.
    fn load_at(root: &Path) -> Self {
        match evaluate_at(root, CONTEXT, &tiltfile_text_at(root)) {
            (calls, Ok(())) => Self(calls),
            (_, Err(e)) => panic!("the Tiltfile does not evaluate:\n{e}"),
        }
    }

    fn calls(&self, builtin: &str) -> Vec<&Map<String, Json>> {
        self.0
            .iter()
            .filter(|c| c.builtin == builtin)
            .map(|c| &c.args)
            .collect()
    }

    fn only_call(&self, builtin: &str) -> &Map<String, Json> {
        match self.calls(builtin).as_slice() {
            [one] => one,
            calls => panic!("expected one {builtin}() call, found {}", calls.len()),
        }
    }

    fn local_resource(&self, name: &str) -> &Map<String, Json> {
        let found: Vec<_> = self
            .calls("local_resource")
            .into_iter()
            .filter(|a| a.get("name").and_then(Json::as_str) == Some(name))
            .collect();
        match found.as_slice() {
            [one] => one,
            _ => panic!(
                "expected one local_resource named {name}, found {}",
                found.len()
            ),
        }
    }

    fn k8s_resource(&self, workload: &str) -> &Map<String, Json> {
        let found: Vec<_> = self
            .calls("k8s_resource")
            .into_iter()
            .filter(|a| a.get("workload").and_then(Json::as_str) == Some(workload))
            .collect();
        match found.as_slice() {
            [one] => one,
            _ => panic!(
                "expected one k8s_resource for {workload}, found {}",
                found.len()
            ),
        }
    }

    /// Every Tilt resource name: local resources and (renamed) k8s workloads.
    fn resource_names(&self) -> BTreeSet<String> {
        let locals = self
            .calls("local_resource")
            .into_iter()
            .map(|a| str_of(a, "name"));
        let k8s = self.calls("k8s_resource").into_iter().map(|a| {
            a.get("new_name")
                .or_else(|| a.get("workload"))
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned()
        });
        locals.chain(k8s).collect()
    }
}

fn str_of(args: &Map<String, Json>, key: &str) -> String {
    args.get(key)
        .and_then(Json::as_str)
        .unwrap_or_else(|| panic!("`{key}` is not a string in {args:?}"))
        .to_owned()
}

/// A `Union[str, List[str]]` argument as a list (absent: empty).
fn strings(args: &Map<String, Json>, key: &str) -> Vec<String> {
    match args.get(key) {
        None => Vec::new(),
        Some(Json::String(s)) => vec![s.clone()],
        Some(Json::Array(items)) => items
            .iter()
            .map(|i| i.as_str().unwrap_or_default().to_owned())
            .collect(),
        Some(other) => panic!("`{key}` is neither a string nor a list: {other}"),
    }
}

/// The links of a resource as (url, name) pairs.
fn links(args: &Map<String, Json>) -> Vec<(String, String)> {
    let one = |l: &Json| match l {
        Json::String(url) => (url.clone(), String::new()),
        link => (
            link["url"].as_str().unwrap_or_default().to_owned(),
            link["name"].as_str().unwrap_or_default().to_owned(),
        ),
    };
    match args.get("links") {
        None => Vec::new(),
        Some(Json::Array(items)) => items.iter().map(one).collect(),
        Some(single) => vec![one(single)],
    }
}

fn is_manual(args: &Map<String, Json>) -> bool {
    args.get("trigger_mode").and_then(|m| m["mode"].as_str()) == Some("manual")
}

#[test]
fn tilt_deploys_to_the_kind_cluster() {
    let (calls, result) = evaluate_in(CONTEXT, &tiltfile_text());
    assert_eq!(result, Ok(()), "with the context {CONTEXT}");
    assert!(
        calls.iter().any(|call| call.builtin == "k8s_yaml"),
        "with the context {CONTEXT} the manifests are registered: {calls:?}"
    );
}

/// Every other context, the local ones Tilt would accept by itself included, stops the
/// Tiltfile before it registers anything, with one sentence saying what to run instead.
#[test]
fn tilt_refuses_any_other_context_and_says_what_to_run() {
    for other in ["kind-kind", "docker-desktop", "minikube", "prod-eu"] {
        let (calls, result) = evaluate_in(other, &tiltfile_text());
        let error = result.expect_err(other);
        let sentence = format!(
            "Tilt deploys only to kind-monitoring-demo, and the current context is {other}: \
             run `cargo xtask cluster up` (it makes kind-monitoring-demo current), \
             or `tilt up --context kind-monitoring-demo`."
        );
        assert!(
            error.contains(&format!("fail: {sentence}")),
            "{other}: {error}"
        );
        assert!(
            calls.is_empty(),
            "{other}: registered before failing: {calls:?}"
        );
    }
}

#[test]
fn the_binary_is_compiled_on_the_host_by_xtask() {
    let plan = Plan::load();
    let binary = plan.local_resource(BINARY_RESOURCE);
    assert_eq!(str_of(binary, "cmd"), "cargo xtask images --binary-only");
    let deps = strings(binary, "deps");
    for dep in ["services", "Cargo.toml", "Cargo.lock"] {
        assert!(
            deps.iter().any(|d| d == dep),
            "{dep} is not a dep: {deps:?}"
        );
    }
    for dep in &deps {
        let path = xtask::workspace_root().join(dep);
        assert!(path.exists(), "dep {dep} does not exist");
    }
    // In the cluster the topology comes from a ConfigMap: editing it must not recompile.
    let ignored = strings(binary, "ignore");
    assert!(
        ignored
            .iter()
            .any(|i| i == "services/mock-service/topology.yaml"),
        "ignore: {ignored:?}"
    );
    assert_eq!(strings(binary, "labels"), ["build"]);
    assert!(
        !is_manual(binary),
        "the binary must rebuild on every change"
    );
    assert_ne!(binary.get("auto_init"), Some(&Json::Bool(false)));
}

#[test]
fn the_image_is_the_binary_alone_and_has_no_live_update() {
    let plan = Plan::load();
    let build = plan.only_call("docker_build");
    assert_eq!(str_of(build, "ref"), "mock-service");
    assert_eq!(str_of(build, "context"), "target/image");
    assert_eq!(str_of(build, "dockerfile"), "Dockerfile");
    assert_eq!(strings(build, "only"), ["mock-service"]);
    // FROM scratch: no tar, no shell, so nothing Tilt could live-update.
    assert!(
        build
            .get("live_update")
            .is_none_or(|steps| steps.as_array().is_some_and(Vec::is_empty)),
        "live_update needs tar in the container: {build:?}"
    );
    // The Dockerfile copies what `only` lets into the context.
    let dockerfile = std::fs::read_to_string(xtask::workspace_root().join("Dockerfile"))
        .expect("the repository's Dockerfile");
    assert!(
        dockerfile
            .lines()
            .any(|l| l.trim_start().starts_with("COPY mock-service ")),
        "the Dockerfile does not COPY mock-service:\n{dockerfile}"
    );
}

#[test]
fn the_manifests_are_the_kind_overlay_with_the_relaxed_load_restrictor() {
    let plan = Plan::load();
    let call = plan.only_call("k8s_yaml");
    let yaml = &call["yaml"];
    assert_eq!(
        tilt_type(yaml),
        Some("blob"),
        "k8s_yaml({yaml}) is not kustomize()"
    );
    assert_eq!(yaml["kustomize"], "manifests/overlays/kind");
    let flags: Vec<_> = yaml["flags"].as_array().cloned().unwrap_or_default();
    assert!(
        flags.contains(&Json::from("--load-restrictor=LoadRestrictionsNone")),
        "flags: {flags:?}"
    );
}

#[test]
fn every_workload_is_a_labelled_resource() {
    let plan = Plan::load();
    for service in &services() {
        let resource = plan.k8s_resource(service);
        assert_eq!(strings(resource, "labels"), ["services"], "{service}");
        assert!(
            strings(resource, "resource_deps").contains(&BINARY_RESOURCE.to_owned()),
            "{service} does not wait for {BINARY_RESOURCE}"
        );
    }
    for component in OBSERVABILITY {
        let resource = plan.k8s_resource(component);
        assert_eq!(
            strings(resource, "labels"),
            ["observability"],
            "{component}"
        );
    }
    let named: BTreeSet<_> = plan
        .calls("k8s_resource")
        .into_iter()
        .map(|a| str_of(a, "workload"))
        .collect();
    let expected: BTreeSet<_> = services()
        .into_iter()
        .chain(OBSERVABILITY.map(str::to_owned))
        .collect();
    assert_eq!(named, expected);
}

#[test]
fn the_uis_are_linked() {
    let plan = Plan::load();
    for (resource, url) in [
        ("gateway-service", "http://localhost:30080"),
        ("prometheus", "http://localhost:9090"),
        ("alertmanager", "http://localhost:9093"),
        ("grafana", "http://localhost:3000"),
        ("jaeger", "http://localhost:16686"),
    ] {
        let links = links(plan.k8s_resource(resource));
        assert!(
            links.iter().any(|(u, name)| u == url && !name.is_empty()),
            "{resource} has no named link to {url}: {links:?}"
        );
    }
    let grafana = links(plan.k8s_resource("grafana"));
    assert!(
        grafana.iter().any(|(_, name)| name.contains("admin/admin")),
        "the Grafana link should tell the login: {grafana:?}"
    );
}

#[test]
fn config_files_outside_the_overlay_are_watched() {
    let plan = Plan::load();
    let watched: BTreeSet<_> = plan
        .calls("watch_file")
        .into_iter()
        .map(|a| str_of(a, "file_path"))
        .collect();
    for path in [
        "services/mock-service/topology.yaml",
        "grafana/dashboards",
        "grafana/provisioning",
        "prometheus/rules",
        "prometheus/prometheus-kubernetes.yml",
        "prometheus/alertmanager.yml",
        "otel",
    ] {
        assert!(watched.contains(path), "{path} is not watched: {watched:?}");
    }
    for path in &watched {
        let full = xtask::workspace_root().join(path);
        assert!(full.exists(), "watched path {path} does not exist");
    }
}

#[test]
fn resource_dependencies_name_resources_and_manual_ones_stay_manual() {
    let plan = Plan::load();
    let names = plan.resource_names();
    for call in plan
        .calls("local_resource")
        .into_iter()
        .chain(plan.calls("k8s_resource"))
    {
        for dep in strings(call, "resource_deps") {
            assert!(
                names.contains(&dep),
                "resource_deps names {dep}, which is no resource: {call:?}"
            );
        }
    }
    // The smoke tests and the traffic run are buttons: they would fail (or load the
    // cluster) on every `tilt up` otherwise.
    for name in ["smoke", "traffic"] {
        if !names.contains(name) {
            continue;
        }
        let resource = plan.local_resource(name);
        assert!(is_manual(resource), "{name} should be TRIGGER_MODE_MANUAL");
        assert_eq!(
            resource.get("auto_init"),
            Some(&Json::Bool(false)),
            "{name}"
        );
        for service in services() {
            assert!(
                strings(resource, "resource_deps").contains(&service),
                "{name} does not wait for {service}"
            );
        }
    }
    let update = plan.calls("update_settings");
    assert!(
        update.len() <= 1,
        "update_settings is called {} times",
        update.len()
    );
}

/// A button's command line, parsed by xtask's own argument definitions.
fn parses_as_xtask(cmd: &str) -> Result<xtask::Cli, clap::Error> {
    let args = cmd
        .strip_prefix("cargo xtask ")
        .unwrap_or_else(|| panic!("`{cmd}` is not a cargo xtask command"));
    <xtask::Cli as clap::Parser>::try_parse_from(
        std::iter::once("xtask").chain(args.split_whitespace()),
    )
}

/// Next to `smoke` and `traffic`: a button per scenario of `cargo xtask scenario`, one
/// that verifies each, one for a new drill (`cargo xtask drill`) and one that clears
/// every fault, all acting on the cluster, manual, and waiting for the mesh.
#[test]
fn the_scenarios_a_drill_and_clearing_every_fault_are_buttons_next_to_smoke_and_traffic() {
    let plan = Plan::load();
    let smoke_labels = strings(plan.local_resource("smoke"), "labels");
    assert_eq!(
        smoke_labels,
        strings(plan.local_resource("traffic"), "labels")
    );
    // The buttons are the table's scenarios, through the generated list.
    let mut buttons: Vec<(String, String)> = incidents::scenarios::names()
        .into_iter()
        .flat_map(|name| {
            [
                (
                    format!("scenario-{name}"),
                    format!("cargo xtask scenario {name} --cluster"),
                ),
                (
                    format!("verify-{name}"),
                    format!("cargo xtask scenario {name} --verify --cluster"),
                ),
            ]
        })
        .collect();
    assert_eq!(
        buttons.len(),
        8,
        "the four scenarios, run and verified: {buttons:?}"
    );
    buttons.push((
        "clear-faults".to_owned(),
        "cargo xtask chaos all --clear --cluster".to_owned(),
    ));
    // A new incident drill in the cluster; the answer comes from a terminal.
    buttons.push((
        "drill".to_owned(),
        "cargo xtask drill --cluster --duration 900".to_owned(),
    ));
    buttons.extend(["smoke", "traffic"].map(|name| {
        let cmd = str_of(plan.local_resource(name), "cmd");
        (name.to_owned(), cmd)
    }));
    for (name, cmd) in buttons {
        let button = plan.local_resource(&name);
        assert_eq!(str_of(button, "cmd"), cmd, "{name}");
        if let Err(error) = parses_as_xtask(&cmd) {
            panic!("{name}: `{cmd}` is no valid xtask command line:\n{error}");
        }
        assert!(is_manual(button), "{name} should be TRIGGER_MODE_MANUAL");
        assert_eq!(button.get("auto_init"), Some(&Json::Bool(false)), "{name}");
        assert_eq!(strings(button, "labels"), smoke_labels, "{name}");
        assert_eq!(strings(button, "resource_deps"), services(), "{name}");
    }
    // The check itself can fail: a misspelt scenario is no xtask command line.
    assert!(parses_as_xtask("cargo xtask scenario spikes --cluster").is_err());
}

// ---------------------------------------------------------------------------------------
// The stubs are strict: a mistake Tilt would reject fails here too
// ---------------------------------------------------------------------------------------

/// The Tiltfile's text with `from` replaced (once) by `to`; the replacement must happen,
/// so that a reworded Tiltfile cannot turn these tests into no-ops.
fn tiltfile_with(from: &str, to: &str) -> String {
    let text = tiltfile_text();
    assert!(
        text.contains(from),
        "the Tiltfile no longer contains `{from}`"
    );
    text.replacen(from, to, 1)
}

fn evaluation_error(text: &str) -> String {
    match evaluate(text) {
        Ok(calls) => panic!("evaluation should fail, but it made {} calls", calls.len()),
        Err(e) => e,
    }
}

/// The services and the scenarios come from the files codegen writes, read as Tilt's
/// `read_json` reads them: relative to the Tiltfile, an error when missing unless a
/// default is given.
#[test]
fn the_services_are_read_from_the_generated_list() {
    let plan = Plan::load();
    let read: Vec<String> = plan
        .calls("read_json")
        .into_iter()
        .map(|a| str_of(a, "path"))
        .collect();
    assert_eq!(
        read,
        [
            xtask::codegen::TILT_SERVICES,
            xtask::codegen::TILT_SCENARIOS
        ]
    );
    assert!(
        !tiltfile_text().contains("'notification-service'"),
        "the Tiltfile lists services by hand again"
    );
    assert!(
        !tiltfile_text().contains("'degradation'"),
        "the Tiltfile lists scenarios by hand again"
    );
    let missing = evaluation_error("read_json('no-such.json')");
    assert!(missing.contains("no-such.json"), "{missing}");
    let calls = evaluate("x = read_json('no-such.json', default=[])\nwatch_file(str(len(x)))")
        .expect("a default stands in for a missing file");
    assert_eq!(
        calls.last().map(|c| c.args["file_path"].clone()),
        Some(Json::from("0"))
    );
}

#[test]
fn the_unmodified_tiltfile_evaluates() {
    let calls = evaluate(&tiltfile_text()).expect("the Tiltfile evaluates");
    assert!(!calls.is_empty());
}

#[test]
fn a_misspelled_builtin_fails() {
    let error = evaluation_error(&tiltfile_with("k8s_resource(", "k8s_resourse("));
    assert!(error.contains("k8s_resourse"), "{error}");
}

#[test]
fn an_unknown_keyword_argument_fails() {
    let error = evaluation_error(&tiltfile_with("dockerfile=", "docker_file="));
    assert!(error.contains("docker_file"), "{error}");
}

#[test]
fn a_wrongly_typed_argument_fails() {
    let error = evaluation_error(&tiltfile_with("auto_init=False", "auto_init='False'"));
    assert!(error.contains("auto_init"), "{error}");
}

#[test]
fn a_trigger_mode_must_be_a_tilt_constant() {
    let error = evaluation_error(&tiltfile_with(
        "trigger_mode=TRIGGER_MODE_MANUAL",
        "trigger_mode='manual'",
    ));
    assert!(error.contains("trigger_mode"), "{error}");
}

// ---------------------------------------------------------------------------------------
// The Tiltfile against the manifests it deploys
// ---------------------------------------------------------------------------------------

/// The workloads (kind, name) and their container images, rendered the way Tilt renders
/// them (`kubectl kustomize` with the Tiltfile's flags).
fn rendered_workloads(
    kubectl: &Path,
    root: &Path,
    dir: &str,
    flags: &[String],
) -> Vec<(String, String, Vec<String>)> {
    let kubeconfig = std::env::temp_dir().join("tiltfile-test-no-kubeconfig");
    let output = Command::new(kubectl)
        .arg("kustomize")
        .args(flags)
        .arg(root.join(dir))
        .current_dir(root)
        // Rendering needs no cluster; never let kubectl find a real one.
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("run kubectl");
    assert!(
        output.status.success(),
        "kubectl kustomize {dir} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8 YAML");
    let mut workloads = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let object: serde_yaml_ng::Value =
            serde::Deserialize::deserialize(document).expect("rendered YAML parses");
        let kind = object["kind"].as_str().unwrap_or_default();
        // The kinds Tilt groups into resources by default.
        if ![
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
            "Job",
            "CronJob",
            "Pod",
        ]
        .contains(&kind)
        {
            continue;
        }
        let spec = if kind == "Pod" {
            &object["spec"]
        } else {
            &object["spec"]["template"]["spec"]
        };
        let images = ["containers", "initContainers"]
            .iter()
            .filter_map(|key| spec[*key].as_sequence())
            .flatten()
            .filter_map(|c| c["image"].as_str().map(str::to_owned))
            .collect();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        workloads.push((kind.to_owned(), name.to_owned(), images));
    }
    workloads
}

#[test]
fn every_k8s_resource_is_a_workload_of_the_overlay_and_the_services_run_the_built_image() {
    let services = services();
    let Some(resources) = k8s_resources_are_the_workloads(&xtask::workspace_root(), &services)
    else {
        return;
    };
    assert!(resources.is_superset(&services.into_iter().collect()));
}

/// The Tiltfile of the checkout at `root`, evaluated there and checked against the
/// overlay it deploys (rendered as Tilt renders it): its k8s_resource() calls are
/// exactly the overlay's workloads, and exactly `services` run the image it builds. The
/// resources' names, or `None` (after SKIPPED) without kubectl.
pub fn k8s_resources_are_the_workloads(
    root: &Path,
    services: &[String],
) -> Option<BTreeSet<String>> {
    let plan = Plan::load_at(root);
    let yaml = &plan.only_call("k8s_yaml")["yaml"];
    let dir = yaml["kustomize"].as_str().expect("kustomize directory");
    let flags: Vec<String> = yaml["flags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect();
    assert!(
        root.join(dir).is_dir(),
        "{dir}, which the Tiltfile deploys, does not exist"
    );
    let kubectl = crate::support::require("kubectl", "kubectl 1.32 or later, or nix develop")?;
    let workloads = rendered_workloads(&kubectl, root, dir, &flags);
    let workload_names: BTreeSet<_> = workloads.iter().map(|(_, name, _)| name.clone()).collect();
    let resources: BTreeSet<_> = plan
        .calls("k8s_resource")
        .into_iter()
        .map(|a| str_of(a, "workload"))
        .collect();
    // Tilt fails on a k8s_resource naming no workload; a workload left out would show
    // up unlabelled.
    assert_eq!(
        resources, workload_names,
        "k8s_resource() calls vs workloads of {dir}"
    );
    let image_ref = str_of(plan.only_call("docker_build"), "ref");
    for (kind, name, images) in &workloads {
        let built = images
            .iter()
            .any(|i| i.split([':', '@']).next() == Some(image_ref.as_str()));
        assert_eq!(
            built,
            services.contains(name),
            "{kind} {name} runs {images:?}: only the services {services:?} run {image_ref}"
        );
    }
    Some(resources)
}

/// Every button of the Tiltfile (a manual `local_resource`): its name and `cmd`, for the
/// tests that run each against the kubectl stand-in (kubectl.rs).
pub fn buttons() -> Vec<(String, String)> {
    Plan::load()
        .calls("local_resource")
        .into_iter()
        .filter(|args| is_manual(args))
        .map(|args| (str_of(args, "name"), str_of(args, "cmd")))
        .collect()
}
