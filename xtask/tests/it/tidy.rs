//! Rules about the code itself, read from the sources with `syn`: a test that stops early
//! does so only because a skip helper said it cannot run here (so it printed `SKIPPED:`
//! and, under `CI`, failed; a bare `return` would pass without checking anything); no
//! function is longer than sixty lines; every source file opens with a `//!` line.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use syn::visit::Visit;
use xtask::paths::workspace_root;

/// The function every skip goes through (each package's `support::skip`).
const SKIP: &str = "skip";

#[test]
fn a_test_returns_early_only_through_a_skip_helper() {
    let files = rust_sources();
    assert!(
        files.len() > 50,
        "found only {} Rust files under the workspace",
        files.len()
    );
    let parsed: Vec<(PathBuf, syn::File)> = files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("read a source file");
            let file = syn::parse_file(&text)
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
            (path, file)
        })
        .collect();
    // The skip helpers live in the test support code (`tests/`), never in a library.
    let skipping = skipping_functions(
        parsed
            .iter()
            .filter(|(path, _)| path.components().any(|c| c.as_os_str() == "tests"))
            .map(|(_, file)| file),
    );
    let mut tests = 0;
    let mut silent = Vec::new();
    for (path, file) in &parsed {
        let mut finder = TestFinder::default();
        finder.visit_file(file);
        for test in finder.tests {
            tests += 1;
            let returns = silent_returns(&test, &skipping);
            if returns > 0 {
                silent.push(format!(
                    "{}: fn {} ({returns} silent return(s))",
                    relative(path),
                    test.sig.ident
                ));
            }
        }
    }
    assert!(tests > 100, "found only {tests} tests");
    assert!(
        silent.is_empty(),
        "these tests return early without a skip helper having said why (use `let Some(x) = \
         support::require(..) else {{ return; }};` or `if !support::require_...() {{ return; }}`), \
         so they pass without checking anything:\n  {}",
        silent.join("\n  ")
    );
}

/// The rule itself, on code written for the purpose: it must catch a silent return and
/// let a skip through.
#[test]
fn the_rule_tells_a_skip_from_a_silent_return() {
    let file: syn::File = syn::parse_quote! {
        fn skip(what: &str, how: &str) {}
        fn require_tool() -> Option<u8> { skip("tool", "install it"); None }
        fn wraps() -> Option<u8> { require_tool() }
        fn unrelated() -> Option<u8> { None }
        #[test] fn skips_by_let_else() { let Some(_t) = wraps() else { return; }; }
        #[test] fn skips_by_if() { if require_tool().is_none() { return; } }
        #[test] fn skips_in_block() { if !ready() { skip("x", "y"); return; } }
        #[test] fn silent_let_else() { let Some(_t) = unrelated() else { return; }; }
        #[test] fn silent_if() { if unrelated().is_none() { return; } }
        #[tokio::test] async fn silent_in_loop() { loop { if done() { return; } } }
        #[test] fn closures_are_not_the_test() { let _ = [1].iter().map(|x| { return x; }); }
        #[test] fn nor_async_blocks() { let _ = async { return 1; }; }
    };
    let skipping = skipping_functions([&file]);
    for name in ["skip", "require_tool", "wraps"] {
        assert!(skipping.contains(name), "{name} skips: {skipping:?}");
    }
    assert!(!skipping.contains("unrelated"), "{skipping:?}");
    let mut finder = TestFinder::default();
    finder.visit_file(&file);
    let silent: Vec<String> = finder
        .tests
        .iter()
        .filter(|test| silent_returns(test, &skipping) > 0)
        .map(|test| test.sig.ident.to_string())
        .collect();
    assert_eq!(silent, ["silent_let_else", "silent_if", "silent_in_loop"]);
}

/// Every `.rs` file of the workspace's packages (not `target/`).
fn rust_sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir)
            .expect("read a source directory")
            .flatten()
        {
            let path = entry.path();
            let name = entry.file_name();
            if name == "target" || name.to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    let root = workspace_root();
    let mut found = Vec::new();
    for package in ["services", "loadgen", "xtask", "incidents"] {
        if root.join(package).is_dir() {
            walk(&root.join(package), &mut found);
        }
    }
    found.sort();
    found
}

fn relative(path: &Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The names of the free functions that may skip: `skip` itself, and every free function
/// that calls one of them (to a fixed point: `kind_overlay` → `renderings` → `require` →
/// `skip`). Functions are known by name, and methods not at all: a test that skips
/// through a method is reported, which errs on the strict side.
fn skipping_functions<'a>(files: impl IntoIterator<Item = &'a syn::File>) -> BTreeSet<String> {
    let mut calls: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let mut functions = FunctionCalls::default();
        functions.visit_file(file);
        for (name, called) in functions.calls {
            calls.entry(name).or_default().extend(called);
        }
    }
    let mut skipping = BTreeSet::from([SKIP.to_owned()]);
    loop {
        let more: Vec<String> = calls
            .iter()
            .filter(|(name, called)| {
                !skipping.contains(*name) && called.iter().any(|c| skipping.contains(c))
            })
            .map(|(name, _)| name.clone())
            .collect();
        if more.is_empty() {
            return skipping;
        }
        skipping.extend(more);
    }
}

/// How many of `test`'s early returns no skipping function guards.
fn silent_returns(test: &syn::ItemFn, skipping: &BTreeSet<String>) -> usize {
    let mut returns = Returns {
        skipping,
        guarded: 0,
        silent: 0,
    };
    returns.visit_block(&test.block);
    returns.silent
}

/// Collects the functions marked `#[test]` or `#[<runtime>::test]`.
#[derive(Default)]
struct TestFinder {
    tests: Vec<syn::ItemFn>,
}

impl Visit<'_> for TestFinder {
    fn visit_item_fn(&mut self, function: &syn::ItemFn) {
        let is_test = function.attrs.iter().any(|attr| {
            attr.path()
                .segments
                .last()
                .is_some_and(|segment| segment.ident == "test")
        });
        if is_test {
            self.tests.push(function.clone());
        }
        syn::visit::visit_item_fn(self, function);
    }
}

/// For each free function, the names of the functions it calls by path (`f()`,
/// `support::require()`).
#[derive(Default)]
struct FunctionCalls {
    calls: BTreeMap<String, BTreeSet<String>>,
    current: Vec<String>,
}

impl FunctionCalls {
    fn record(&mut self, called: String) {
        if let Some(current) = self.current.last() {
            self.calls
                .entry(current.clone())
                .or_default()
                .insert(called);
        }
    }
}

impl Visit<'_> for FunctionCalls {
    fn visit_item_fn(&mut self, function: &syn::ItemFn) {
        self.current.push(function.sig.ident.to_string());
        syn::visit::visit_item_fn(self, function);
        self.current.pop();
    }

    fn visit_impl_item_fn(&mut self, _: &syn::ImplItemFn) {}

    fn visit_expr_call(&mut self, call: &syn::ExprCall) {
        if let syn::Expr::Path(path) = &*call.func
            && let Some(last) = path.path.segments.last()
        {
            self.record(last.ident.to_string());
        }
        syn::visit::visit_expr_call(self, call);
    }
}

/// Walks a test's body: a `return` is guarded when it sits in the `else` of a
/// `let ... else` whose value calls a skipping function, or in an `if` whose condition
/// (or whose block) calls one. A `return` in a closure, an async block or a nested item
/// is not the test's own.
struct Returns<'a> {
    skipping: &'a BTreeSet<String>,
    /// How many guards enclose the current node.
    guarded: usize,
    silent: usize,
}

impl Returns<'_> {
    fn calls_skipping(&self, node: &dyn Fn(&mut FunctionCalls)) -> bool {
        let mut calls = FunctionCalls {
            current: vec![String::new()],
            ..FunctionCalls::default()
        };
        node(&mut calls);
        calls
            .calls
            .values()
            .flatten()
            .any(|called| self.skipping.contains(called))
    }

    fn guarded_visit(&mut self, guard: bool, visit: impl FnOnce(&mut Self)) {
        self.guarded += usize::from(guard);
        visit(self);
        self.guarded -= usize::from(guard);
    }
}

impl Visit<'_> for Returns<'_> {
    fn visit_local(&mut self, local: &syn::Local) {
        let Some(init) = &local.init else {
            return syn::visit::visit_local(self, local);
        };
        self.visit_expr(&init.expr);
        if let Some((_, otherwise)) = &init.diverge {
            let guard = self.calls_skipping(&|calls| calls.visit_expr(&init.expr));
            self.guarded_visit(guard, |this| this.visit_expr(otherwise));
        }
    }

    fn visit_expr_if(&mut self, expression: &syn::ExprIf) {
        self.visit_expr(&expression.cond);
        let guard = self.calls_skipping(&|calls| {
            calls.visit_expr(&expression.cond);
            calls.visit_block(&expression.then_branch);
        });
        self.guarded_visit(guard, |this| this.visit_block(&expression.then_branch));
        if let Some((_, otherwise)) = &expression.else_branch {
            self.visit_expr(otherwise);
        }
    }

    fn visit_expr_return(&mut self, expression: &syn::ExprReturn) {
        if self.guarded == 0 {
            self.silent += 1;
        }
        syn::visit::visit_expr_return(self, expression);
    }

    fn visit_expr_closure(&mut self, _: &syn::ExprClosure) {}

    fn visit_expr_async(&mut self, _: &syn::ExprAsync) {}

    fn visit_item(&mut self, _: &syn::Item) {}
}

/// A helper that caches its work (the renderings, the built image) still says SKIPPED
/// to every test it turns away, not only to the first: this test binary is run again on
/// the manifests' tests with no kubectl on PATH, and outside CI.
#[test]
fn every_test_that_skips_says_so_itself() {
    let source = workspace_root().join("xtask/tests/it/manifests.rs");
    let file = syn::parse_file(&std::fs::read_to_string(&source).expect("manifests.rs"))
        .expect("manifests.rs parses");
    let mut finder = TestFinder::default();
    finder.visit_file(&file);
    let needing_kubectl = finder
        .tests
        .iter()
        .filter(|test| {
            let mut calls = FunctionCalls {
                current: vec![String::new()],
                ..FunctionCalls::default()
            };
            calls.visit_block(&test.block);
            calls.calls.values().flatten().any(|c| c == "renderings")
        })
        .count();
    assert!(needing_kubectl > 3, "{needing_kubectl} tests render");

    let empty_path =
        std::env::temp_dir().join(format!("xtask-tidy-no-tools-{}", std::process::id()));
    std::fs::create_dir_all(&empty_path).expect("an empty PATH directory");
    let output = std::process::Command::new(std::env::current_exe().expect("this test binary"))
        .args(["manifests::", "--test-threads=1"])
        .env("PATH", &empty_path)
        .env_remove("CI")
        .output()
        .expect("run the manifests' tests");
    let _ = std::fs::remove_dir(&empty_path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the manifests' tests without kubectl:\n{}{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
    let said = stderr.matches("SKIPPED: needs kubectl").count();
    assert_eq!(
        said, needing_kubectl,
        "each of the {needing_kubectl} tests that render must say SKIPPED itself:\n{stderr}"
    );
}

/// The longest a function may be, in lines from `fn` to its closing brace: past that a
/// reader loses the thread, and the function has more than one job.
const MAX_FUNCTION_LINES: usize = 60;

/// Files whose long functions belong to another work package in flight, each with why;
/// the lead empties this list when those packages are merged.
const LONG_FUNCTIONS_ALLOWED: &[(&str, &str)] = &[];

/// Long test functions (and test helpers) not split yet: known debt, listed one by one
/// so that no new long function slips in, each with its length today. Shrink it, never
/// grow it.
const LONG_TESTS_NOT_YET_SPLIT: &[(&str, &str, usize)] = &[
    (
        "services/contract/src/topology.rs",
        "the_built_in_topology_is_the_seven_service_graph",
        73,
    ),
    (
        "services/mock-service/tests/it/mesh.rs",
        "one_action_makes_exactly_the_calls_of_the_graph",
        80,
    ),
    (
        "services/mock-service/tests/it/processes.rs",
        "one_action_is_one_trace_of_ten_server_spans_across_seven_services",
        171,
    ),
    (
        "services/mock-service/tests/it/processes.rs",
        "sigterm_exports_every_answered_requests_span_and_ends_one_cut_at_the_drain_deadline_as_an_error",
        78,
    ),
    (
        "services/telemetry/src/metrics.rs",
        "names_types_and_labels_are_the_dashboards_in_the_text_format",
        91,
    ),
    (
        "xtask/tests/it/alerting.rs",
        "alertmanager_mutes_what_a_failing_dependency_causes_upstream",
        109,
    ),
    (
        "xtask/tests/it/bench.rs",
        "the_quick_suite_measures_every_section_and_keeps_the_documents_text",
        138,
    ),
    (
        "xtask/tests/it/codegen.rs",
        "an_eighth_service_is_one_topology_edit_and_codegen",
        64,
    ),
    (
        "xtask/tests/it/grafana.rs",
        "fault_annotations_mark_exactly_the_faults_in_force",
        75,
    ),
    (
        "xtask/tests/it/grafana.rs",
        "the_lint_names_what_is_wrong_and_where",
        84,
    ),
    (
        "xtask/tests/it/image.rs",
        "the_image_is_small_non_root_content_tagged_and_serves",
        94,
    ),
    (
        "xtask/tests/it/local_mesh.rs",
        "every_dashboard_query_returns_data",
        63,
    ),
    (
        "xtask/tests/it/local_mesh.rs",
        "faults_are_set_shown_and_always_cleared",
        88,
    ),
    (
        "xtask/tests/it/local_mesh.rs",
        "local_mesh_smoke_traffic_prometheus_and_clean_stop",
        98,
    ),
    (
        "xtask/tests/it/local_topology.rs",
        "chaos_acts_on_the_services_of_the_running_topology",
        62,
    ),
    ("xtask/tests/it/manifests.rs", "check_network_policies", 123),
    ("xtask/tests/it/manifests.rs", "check_prometheus", 139),
    ("xtask/tests/it/manifests.rs", "check_refusals", 89),
    ("xtask/tests/it/manifests.rs", "check_services", 142),
    (
        "xtask/tests/it/manifests.rs",
        "every_kustomization_says_how_to_render_it_and_its_files_exist",
        103,
    ),
    (
        "xtask/tests/it/nix_flake.rs",
        "dev_shell_evaluates_on_every_system_with_every_tool",
        71,
    ),
    (
        "xtask/tests/it/nix_flake.rs",
        "flake_lock_pins_the_known_good_revisions",
        78,
    ),
    (
        "xtask/tests/it/prometheus.rs",
        "prometheus_delivers_watchdog_to_alertmanager",
        113,
    ),
    (
        "xtask/tests/it/service_containers.rs",
        "the_translation_resolves_references_as_the_kubelet_does",
        111,
    ),
    ("xtask/tests/it/service_containers.rs", "volumes", 88),
    ("xtask/tests/it/support/tilt.rs", "tilt_builtins", 256),
    (
        "xtask/tests/kubectl-standin/src/bin/kubectl/logs.rs",
        "run",
        84,
    ),
];

#[test]
fn no_function_is_longer_than_sixty_lines() {
    let mut long = Vec::new();
    for path in rust_sources() {
        let file = relative(&path);
        if LONG_FUNCTIONS_ALLOWED.iter().any(|(f, _)| *f == file) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read a source file");
        let parsed = syn::parse_file(&text).expect("parses");
        for (name, lines) in function_lengths(&parsed) {
            let known = LONG_TESTS_NOT_YET_SPLIT
                .iter()
                .any(|(f, n, at_most)| *f == file && *n == name && lines <= *at_most);
            if lines > MAX_FUNCTION_LINES && !known {
                long.push(format!("{file}: fn {name}: {lines} lines"));
            }
        }
    }
    long.sort();
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines (split each into named steps):\n  {}",
        long.join("\n  ")
    );
}

/// Every function of `file` (free, in an `impl` or a trait, nested ones too) with its
/// length in lines, from `fn` to the closing brace.
fn function_lengths(file: &syn::File) -> Vec<(String, usize)> {
    #[derive(Default)]
    struct Lengths(Vec<(String, usize)>);
    impl Lengths {
        fn record(&mut self, sig: &syn::Signature, block: &syn::Block) {
            let start = sig.fn_token.span.start().line;
            let end = block.brace_token.span.close().end().line;
            self.0.push((sig.ident.to_string(), end + 1 - start));
        }
    }
    impl Visit<'_> for Lengths {
        fn visit_item_fn(&mut self, function: &syn::ItemFn) {
            self.record(&function.sig, &function.block);
            syn::visit::visit_item_fn(self, function);
        }
        fn visit_impl_item_fn(&mut self, function: &syn::ImplItemFn) {
            self.record(&function.sig, &function.block);
            syn::visit::visit_impl_item_fn(self, function);
        }
        fn visit_trait_item_fn(&mut self, function: &syn::TraitItemFn) {
            if let Some(block) = &function.default {
                self.record(&function.sig, block);
            }
            syn::visit::visit_trait_item_fn(self, function);
        }
    }
    let mut lengths = Lengths::default();
    lengths.visit_file(file);
    lengths.0
}

/// Every source file opens with a `//!` line saying what it owns, so a reader who opens
/// it knows at once what it is for.
#[test]
fn every_source_file_opens_with_what_it_owns() {
    let files = rust_sources();
    assert!(files.len() > 50, "found only {} Rust files", files.len());
    let unexplained = files_whose_text(&files, |text| !opens_with_inner_doc(text));
    assert!(
        unexplained.is_empty(),
        "these files do not open with a `//!` line saying what they own:\n  {}",
        unexplained.join("\n  ")
    );
}

/// Of `files`, those whose text breaks a rule (`breaks` says so), relative to the root.
fn files_whose_text(files: &[PathBuf], breaks: impl Fn(&str) -> bool) -> Vec<String> {
    files
        .iter()
        .filter(|path| breaks(&std::fs::read_to_string(path).expect("read a source file")))
        .map(|path| relative(path))
        .collect()
}

/// Whether the first line of `text` is a `//!` comment with something said in it.
fn opens_with_inner_doc(text: &str) -> bool {
    text.lines()
        .next()
        .and_then(|line| line.strip_prefix("//!"))
        .is_some_and(|said| !said.trim().is_empty())
}

#[test]
fn the_opening_line_rule_wants_words_after_the_marker() {
    assert!(opens_with_inner_doc(
        "//! The load generator.\nuse std::fmt;\n"
    ));
    assert!(!opens_with_inner_doc("use std::fmt;\n//! Too late.\n"));
    assert!(!opens_with_inner_doc("//!\n//! Said on the second line.\n"));
    assert!(!opens_with_inner_doc(
        "/// An outer doc comment.\nfn f() {}\n"
    ));
    assert!(!opens_with_inner_doc(""));
}

/// The libraries (telemetry, contract, loadgen, mock-service's library) return error
/// types a caller can match, `thiserror` enums; `anyhow` is for xtask and a binary's
/// `main.rs`, where errors are only reported.
#[test]
fn libraries_return_typed_errors_not_anyhow() {
    let libraries: Vec<PathBuf> = rust_sources()
        .into_iter()
        .filter(|path| {
            let file = relative(path);
            let in_library_src = (file.starts_with("services/") || file.starts_with("loadgen/"))
                && file.contains("/src/");
            in_library_src && !file.ends_with("/main.rs") && !file.contains("/src/bin/")
        })
        .collect();
    assert!(
        libraries.len() > 20,
        "found {} library files",
        libraries.len()
    );
    let using = files_whose_text(&libraries, mentions_anyhow_in_code);
    assert!(
        using.is_empty(),
        "these library files use anyhow; give them a thiserror type:\n  {}",
        using.join("\n  ")
    );
}

/// Whether `anyhow` appears in a line that is not a comment.
fn mentions_anyhow_in_code(text: &str) -> bool {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .any(|line| line.contains("anyhow"))
}
