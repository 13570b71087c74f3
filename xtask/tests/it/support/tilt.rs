//! Tilt's builtins as recording stubs, and the evaluation of a Tiltfile with them (the
//! `starlark` crate): each stub has the parameters Tilt documents, checks their types,
//! and records the call, so a test can assert what a Tiltfile asks Tilt to do.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};
use starlark::environment::{GlobalsBuilder, Module};
use starlark::eval::Evaluator;
use starlark::starlark_module;
use starlark::syntax::{AstModule, Dialect};
use starlark::values::none::NoneType;
use starlark::values::structs::AllocStruct;
use starlark::values::{Heap, Value};

// ---------------------------------------------------------------------------------------
// Recording stubs
// ---------------------------------------------------------------------------------------

/// One call of a Tilt builtin: its name and the arguments given (by parameter name,
/// positional ones included; parameters left at their default are absent).
#[derive(Debug, Clone)]
pub struct Call {
    pub builtin: &'static str,
    pub args: Map<String, Json>,
}

thread_local! {
    /// The calls of the evaluation running on this thread. (A thread-local rather than
    /// `Evaluator::extra`: deriving `ProvidesStaticType` implements an unsafe trait, and
    /// the workspace forbids unsafe code.)
    pub static RECORDED: RefCell<Vec<Call>> = const { RefCell::new(Vec::new()) };
    /// What `k8s_context()` answers during the evaluation on this thread: the current
    /// kubectl context, or the one `tilt up --context NAME` names.
    pub static K8S_CONTEXT: RefCell<String> = const { RefCell::new(String::new()) };
    /// The directory of the Tiltfile evaluated on this thread: Tilt reads the files a
    /// Tiltfile names relative to it.
    pub static TILTFILE_DIR: RefCell<PathBuf> = const { RefCell::new(PathBuf::new()) };
}

/// The types Tilt's documentation gives its parameters, as far as the stubs check them.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
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
pub const TILT_TYPE: &str = "tilt_type";

pub fn tilt_type(value: &Json) -> Option<&str> {
    value.get(TILT_TYPE).and_then(Json::as_str)
}

pub fn has_type(ty: Ty, value: &Json) -> bool {
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
pub fn record<'v>(
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
pub fn tilt_builtins(builder: &mut GlobalsBuilder) {
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

pub fn tilt_constants(builder: &mut GlobalsBuilder) {
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
pub fn evaluate_in(context: &str, text: &str) -> (Vec<Call>, Result<(), String>) {
    evaluate_at(&xtask::paths::workspace_root(), context, text)
}

/// [`evaluate_in`] for a Tiltfile in `dir`, whose files it reads.
pub fn evaluate_at(dir: &Path, context: &str, text: &str) -> (Vec<Call>, Result<(), String>) {
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
