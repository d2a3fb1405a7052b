//! The Kubernetes manifests of `deploy/kubernetes/`: every file validated offline against
//! the Kubernetes API's JSON schemas by `kubernetes-validate` (a PyPI package that bundles
//! them: `python3 -m pip install kubernetes-validate`), `kustomization.yaml` listing
//! exactly those files, and what a deployment relies on beyond the schemas: the nodes
//! join the cluster with the flags it needs, their names and secrets lead where the flags
//! say, the Services and policies select the right pods, and the Docker sidecar shares
//! what the server hands it by path.
//!
//! The YAML is read with PyYAML (a dependency of `kubernetes-validate`) and checked here
//! as JSON. Skipped loudly when python3 or the package is missing, unless
//! `CODEBEAKER_REQUIRE_CLIENTS=1` makes that a failure (CI sets it and installs the
//! package: scripts/test.sh).

mod mcp_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use mcp_support::python_with;
use serde_json::Value;

/// The directory of the manifests.
const MANIFEST_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/kubernetes");
/// The Kubernetes version the manifests are validated against: the oldest the deployment
/// supports (native sidecars, `restartPolicy: Always` on an init container, are on by
/// default from 1.29), among the versions the package bundles.
const KUBERNETES_VERSION: &str = "1.30.0";
/// The kustomization, which is not a Kubernetes API object.
const KUSTOMIZATION: &str = "kustomization.yaml";
/// The namespace every object lives in.
const NAMESPACE: &str = "codebeaker";
/// The name of the server container in the node pods.
const SERVER_CONTAINER: &str = "codebeaker-server";
/// The port clients, probes and the other nodes use.
const PORT: u64 = 5000;

/// Prints the reason and returns false when python3 cannot import `kubernetes_validate`
/// (a failure instead under `CODEBEAKER_REQUIRE_CLIENTS=1`).
fn validator_or_skip(test: &str) -> bool {
    python_with(&["kubernetes_validate"], test)
}

/// The manifest files of the directory (`*.yaml`, `*.yml`) except the kustomization, by name.
fn manifest_files() -> Vec<PathBuf> {
    let entries = std::fs::read_dir(MANIFEST_DIR).unwrap_or_else(|e| panic!("read {MANIFEST_DIR}: {e}"));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml"))
        .filter(|path| path.file_name().is_some_and(|name| name != KUSTOMIZATION))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {MANIFEST_DIR}");
    files
}

fn file_name(path: &Path) -> String {
    path.file_name().expect("a file name").to_string_lossy().into_owned()
}

/// Every YAML document of `files` (empty ones left out), parsed by PyYAML, by file name.
fn parse_yaml(files: &[PathBuf]) -> BTreeMap<String, Vec<Value>> {
    const SCRIPT: &str = "import json, sys, yaml\n\
        docs = {p: [d for d in yaml.safe_load_all(open(p, encoding='utf-8')) if d is not None] \
        for p in sys.argv[1:]}\n\
        json.dump(docs, sys.stdout)";
    let output = Command::new("python3").arg("-c").arg(SCRIPT).args(files).output().expect("python3 runs");
    assert!(
        output.status.success(),
        "PyYAML could not read the manifests ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let parsed: BTreeMap<String, Vec<Value>> = serde_json::from_slice(&output.stdout).expect("JSON from python3");
    parsed.into_iter().map(|(path, docs)| (file_name(Path::new(&path)), docs)).collect()
}

/// The Kubernetes objects of every manifest, for the checks beyond the schemas.
struct Objects(Vec<Value>);

impl Objects {
    fn load() -> Objects {
        Objects(parse_yaml(&manifest_files()).into_values().flatten().collect())
    }

    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.0.iter().filter(|object| object["kind"] == kind).collect()
    }

    fn named(&self, kind: &str, name: &str) -> &Value {
        self.of_kind(kind)
            .into_iter()
            .find(|object| object["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} named {name} in {MANIFEST_DIR}"))
    }

    /// The node StatefulSet (the only one).
    fn node_set(&self) -> &Value {
        let sets = self.of_kind("StatefulSet");
        assert_eq!(sets.len(), 1, "one StatefulSet, the nodes': {sets:?}");
        sets[0]
    }
}

/// The labels a workload's pod template gives its pods.
fn pod_labels(workload: &Value) -> &serde_json::Map<String, Value> {
    workload["spec"]["template"]["metadata"]["labels"].as_object().expect("pod template labels")
}

/// Whether every label of `selector` is one of `labels`.
fn selects(selector: &Value, labels: &serde_json::Map<String, Value>) -> bool {
    let selector = selector.as_object().expect("a label selector");
    !selector.is_empty() && selector.iter().all(|(key, value)| labels.get(key) == Some(value))
}

/// Every container of a pod spec, init containers (and so native sidecars) first.
fn containers(pod: &Value) -> Vec<&Value> {
    ["initContainers", "containers"].iter().filter_map(|key| pod[*key].as_array()).flatten().collect()
}

fn server_container(pod: &Value) -> &Value {
    pod["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == SERVER_CONTAINER)
        .unwrap_or_else(|| panic!("no container {SERVER_CONTAINER} in the node pods"))
}

fn args(container: &Value) -> Vec<&str> {
    container["args"].as_array().expect("args").iter().map(|a| a.as_str().expect("a string arg")).collect()
}

/// The value of `--flag` in `args`, as `--flag=VALUE` or `--flag VALUE`.
fn flag<'a>(args: &[&'a str], name: &str) -> Option<&'a str> {
    let prefix = format!("{name}=");
    args.iter().enumerate().find_map(|(i, arg)| match arg.strip_prefix(&prefix) {
        Some(value) => Some(value),
        None if *arg == name => args.get(i + 1).copied(),
        None => None,
    })
}

fn required_flag<'a>(args: &[&'a str], name: &str) -> &'a str {
    flag(args, name).unwrap_or_else(|| panic!("the server container's args lack {name}: {args:?}"))
}

/// The value of the container's env variable `name`.
fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"].as_array()?.iter().find(|e| e["name"] == name)
}

fn env_value<'a>(container: &'a Value, name: &str) -> &'a str {
    env(container, name).and_then(|e| e["value"].as_str()).unwrap_or_else(|| panic!("no env value {name}"))
}

/// The pod volume mounted at the directory holding `file` in `container`, and the name
/// of the file in it.
fn volume_of<'a>(pod: &'a Value, container: &Value, file: &str) -> (&'a Value, String) {
    let path = Path::new(file);
    let dir = path.parent().expect("a directory").to_str().expect("UTF-8");
    let mount = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["mountPath"].as_str().map(|p| p.trim_end_matches('/')) == Some(dir))
        .unwrap_or_else(|| panic!("{} mounts nothing at {dir} (for {file})", container["name"]));
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("no volume {} in the pod", mount["name"]));
    (volume, file_name(path))
}

/// Whether `container` mounts the volume `name` at `path`.
fn mounts_at(container: &Value, name: &Value, path: &str) -> bool {
    container["volumeMounts"].as_array().into_iter().flatten().any(|m| &m["name"] == name && m["mountPath"] == path)
}

/// Every manifest file passes `kubernetes-validate --strict` for [`KUBERNETES_VERSION`]:
/// known kinds and fields only, right types, required fields present. A kind the package
/// has no schema for is only a warning to the tool; here it is a failure.
#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    if !validator_or_skip("manifests_validate_against_the_kubernetes_schemas") {
        return;
    }
    let files = manifest_files();
    let output = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(&files)
        .output()
        .expect("python3 runs");
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "kubernetes-validate failed ({}):\n{report}", output.status);
    let unchecked: Vec<&str> = report.lines().filter(|line| !line.starts_with("INFO ")).collect();
    assert!(unchecked.is_empty(), "kubernetes-validate did not check everything:\n{report}");
    let objects: usize = parse_yaml(&files).values().map(Vec::len).sum();
    let passed = report.lines().filter(|line| line.contains(" passed for resource ")).count();
    assert_eq!(passed, objects, "one pass per object of the manifests:\n{report}");
    println!("{report}");
}

/// `kustomization.yaml` (`kubectl apply -k`) lists every other manifest of the directory,
/// once each, and nothing else.
#[test]
fn kustomization_lists_exactly_the_manifests() {
    if !validator_or_skip("kustomization_lists_exactly_the_manifests") {
        return;
    }
    let path = Path::new(MANIFEST_DIR).join(KUSTOMIZATION);
    let parsed = parse_yaml(std::slice::from_ref(&path));
    let kustomization = &parsed[KUSTOMIZATION][0];
    assert_eq!(kustomization["kind"], "Kustomization");
    let resources: Vec<&str> = kustomization["resources"]
        .as_array()
        .expect("a resources list")
        .iter()
        .map(|r| r.as_str().expect("a file name"))
        .collect();
    let listed: BTreeSet<&str> = resources.iter().copied().collect();
    assert_eq!(listed.len(), resources.len(), "a file listed twice: {resources:?}");
    let present: Vec<String> = manifest_files().iter().map(|p| file_name(p)).collect();
    let present: BTreeSet<&str> = present.iter().map(String::as_str).collect();
    assert_eq!(listed, present, "kustomization.yaml's resources against the files of {MANIFEST_DIR}");
}

/// Every object lives in the `codebeaker` namespace, which the manifests create, and the
/// manifests hold a Secret and a NetworkPolicy for each kind of pod (nodes and Redis).
#[test]
fn objects_live_in_one_namespace_with_a_secret_and_network_policies() {
    if !validator_or_skip("objects_live_in_one_namespace_with_a_secret_and_network_policies") {
        return;
    }
    let objects = Objects::load();
    objects.named("Namespace", NAMESPACE);
    for object in objects.0.iter().filter(|o| o["kind"] != "Namespace") {
        assert_eq!(object["metadata"]["namespace"], NAMESPACE, "{} {}", object["kind"], object["metadata"]["name"]);
    }
    assert!(!objects.of_kind("Secret").is_empty(), "no Secret in the manifests");
    let policies = objects.of_kind("NetworkPolicy");
    assert!(!policies.is_empty(), "no NetworkPolicy in the manifests");
    let workloads = objects.of_kind("StatefulSet").into_iter().chain(objects.of_kind("Deployment"));
    for workload in workloads {
        let labels = pod_labels(workload);
        assert!(
            policies.iter().any(|p| selects(&p["spec"]["podSelector"]["matchLabels"], labels)),
            "no NetworkPolicy selects the pods of {} {}",
            workload["kind"],
            workload["metadata"]["name"]
        );
    }
}

/// The node StatefulSet's server container joins the cluster: `--cluster-redis` names a
/// Service of the manifests that selects the Redis pods, `--node-url` is the pod's stable
/// name under the StatefulSet's headless Service (from the downward API's `POD_NAME` and
/// `NAMESPACE`), `--cluster-secret-file` and `--api-keys` are keys of the Secret mounted
/// there, and the server listens on all addresses at the port the Services use.
#[test]
fn node_pods_join_the_cluster_with_the_flags_it_needs() {
    if !validator_or_skip("node_pods_join_the_cluster_with_the_flags_it_needs") {
        return;
    }
    let objects = Objects::load();
    let set = objects.node_set();
    let pod = &set["spec"]["template"]["spec"];
    let server = server_container(pod);
    let args = args(server);

    for variable in ["POD_NAME", "NAMESPACE"] {
        let field = env(server, variable).map(|e| &e["valueFrom"]["fieldRef"]["fieldPath"]);
        let expected = if variable == "POD_NAME" { "metadata.name" } else { "metadata.namespace" };
        assert_eq!(field.and_then(Value::as_str), Some(expected), "env {variable} from the downward API");
    }
    // Kubernetes expands only variables the container defines; others stay as written.
    for arg in &args {
        for reference in arg.split("$(").skip(1).filter_map(|rest| rest.split_once(')')).map(|(name, _)| name) {
            assert!(env(server, reference).is_some(), "{arg} refers to $({reference}), which the env lacks");
        }
    }

    assert_eq!(required_flag(&args, "--listen"), format!("0.0.0.0:{PORT}"));
    let ports = server["ports"].as_array().expect("container ports");
    assert!(ports.iter().any(|p| p["containerPort"] == PORT && p["name"] == "http"), "container port http {PORT}");

    let service = set["spec"]["serviceName"].as_str().expect("serviceName");
    let headless = objects.named("Service", service);
    assert_eq!(headless["spec"]["clusterIP"], "None", "the StatefulSet's Service is headless");
    assert!(selects(&headless["spec"]["selector"], pod_labels(set)), "{service} selects the node pods");
    assert!(selects(&set["spec"]["selector"]["matchLabels"], pod_labels(set)), "the StatefulSet selects its pods");
    assert_eq!(
        required_flag(&args, "--node-url"),
        format!("ws://$(POD_NAME).{service}.$(NAMESPACE).svc.cluster.local:{PORT}"),
        "each node's URL is its pod's stable DNS name"
    );

    let redis = required_flag(&args, "--cluster-redis");
    let (host, port) = redis
        .strip_prefix("redis://")
        .and_then(|rest| rest.rsplit_once(':'))
        .unwrap_or_else(|| panic!("--cluster-redis {redis} is not redis://HOST:PORT"));
    let redis_service = objects.named("Service", host.split('.').next().expect("a host"));
    let port: u64 = port.parse().expect("a port number");
    assert!(
        redis_service["spec"]["ports"].as_array().expect("ports").iter().any(|p| p["port"] == port),
        "Service {host} serves port {port}"
    );
    let redis_pods = objects.of_kind("Deployment").into_iter().chain(objects.of_kind("StatefulSet"));
    assert!(
        redis_pods.filter(|w| w != &set).any(|w| selects(&redis_service["spec"]["selector"], pod_labels(w))),
        "Service {host} selects Redis pods"
    );

    for name in ["--cluster-secret-file", "--api-keys"] {
        let file = required_flag(&args, name);
        let (volume, key) = volume_of(pod, server, file);
        let secret_name = volume["secret"]["secretName"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} {file} is not on a Secret volume: {volume}"));
        let secret = objects.named("Secret", secret_name);
        let has_key = |field: &str| secret[field].get(&key).is_some();
        assert!(has_key("stringData") || has_key("data"), "Secret {secret_name} has no key {key} ({name})");
    }
    for name in ["--cluster-sample", "--cluster-heartbeat-ms"] {
        if let Some(value) = flag(&args, name) {
            assert!(value.parse::<u64>().is_ok_and(|n| n > 0), "{name} {value} is a positive integer");
        }
    }
}

/// The server container's readiness and liveness probes ask `GET /health` on the server's
/// port, which answers 503 when no backend can serve.
#[test]
fn node_pods_are_probed_on_health() {
    if !validator_or_skip("node_pods_are_probed_on_health") {
        return;
    }
    let objects = Objects::load();
    let server = server_container(&objects.node_set()["spec"]["template"]["spec"]);
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &server[probe]["httpGet"];
        assert_eq!(get["path"], "/health", "{probe}: {}", server[probe]);
        assert!(get["port"] == "http" || get["port"] == PORT, "{probe} on port {PORT}: {}", server[probe]);
    }
    for resources in ["requests", "limits"] {
        for container in containers(&objects.node_set()["spec"]["template"]["spec"]) {
            let set = &container["resources"][resources];
            assert!(set["cpu"].is_string() && set["memory"].is_string(), "{} {resources}", container["name"]);
        }
    }
}

/// The client Service `codebeaker` serves port 5000 of the node pods.
#[test]
fn the_client_service_reaches_the_node_pods() {
    if !validator_or_skip("the_client_service_reaches_the_node_pods") {
        return;
    }
    let objects = Objects::load();
    let service = objects.named("Service", "codebeaker");
    assert!(selects(&service["spec"]["selector"], pod_labels(objects.node_set())), "{service}");
    assert!(service["spec"]["ports"].as_array().expect("ports").iter().any(|p| p["port"] == PORT), "{service}");
}

/// The server reaches the pod's Docker engine, a privileged sidecar, through a socket on a
/// shared volume (`DOCKER_HOST`), and the agent it asks that engine to bind-mount into
/// sandboxes (`CODEBEAKER_AGENT`) is on a volume the engine mounts at the same path: the
/// engine resolves the path in its own filesystem, not the server's.
#[test]
fn the_docker_sidecar_shares_the_socket_and_the_agent() {
    if !validator_or_skip("the_docker_sidecar_shares_the_socket_and_the_agent") {
        return;
    }
    let objects = Objects::load();
    let pod = &objects.node_set()["spec"]["template"]["spec"];
    let server = server_container(pod);
    let engine = containers(pod)
        .into_iter()
        .find(|c| c["image"].as_str().is_some_and(|image| image.contains("dind")))
        .expect("a docker:dind sidecar in the node pods");
    assert_eq!(engine["securityContext"]["privileged"], true, "the Docker engine needs a privileged container");

    let socket = env_value(server, "DOCKER_HOST").strip_prefix("unix://").expect("DOCKER_HOST is a unix socket");
    let agent = env_value(server, "CODEBEAKER_AGENT");
    for file in [socket, agent] {
        let (volume, _) = volume_of(pod, server, file);
        let dir = Path::new(file).parent().and_then(Path::to_str).expect("a directory");
        assert!(mounts_at(engine, &volume["name"], dir), "the engine mounts {} at {dir} too", volume["name"]);
    }
    assert!(
        args(engine).iter().any(|a| a.strip_prefix("--host=unix://") == Some(socket)),
        "the engine listens on {socket}: {:?}",
        args(engine)
    );
}
