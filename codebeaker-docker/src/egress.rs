//! The host side of a session's egress tunnel. Containers keep network mode `none`; the
//! agent serves an HTTP proxy on the container's loopback and carries each `CONNECT` (or
//! plain HTTP request) to the host as a tunnel request over the agent protocol. Here the
//! host asks the session's [`EgressRules`] (the operator's one network policy, shared
//! with Deno's `fetch`) and either refuses with the rule's message (`egress to
//! example.org:443 is not allowed by policy`) or connects to a vetted address and pumps
//! bytes both ways, within the rules' connection and byte caps.
//!
//! Also here: the environment that points a session's package managers at the proxy.

use std::sync::Arc;

use codebeaker::{EgressRules, Language};
use codebeaker_agent::client::{AgentClient, Relay, TunnelRequest};
use tokio::task::{JoinHandle, JoinSet};
use tracing::debug;

/// Where the agent's proxy listens inside every container.
pub(crate) const PROXY_URL: &str = "http://127.0.0.1:3128";

/// Where the operator's extra CA bundle is mounted (read-only) in containers.
pub(crate) const CA_BUNDLE_PATH: &str = "/etc/codebeaker/ca-bundle.pem";

/// Tunnel requests a session may have in flight (deciding, connecting or relaying) at
/// once, beyond the rules' own connection cap: more are refused at once, so a flood of
/// requests from the agent costs no lookups and no tasks.
const MAX_TUNNEL_TASKS: usize = 64;

/// Serves `client`'s tunnel requests under `rules` until the channel closes. Every
/// tunnel runs as a task of the returned one: aborting it (the session closes) ends them
/// all, closing their connections and freeing what they buffered.
pub(crate) fn serve(client: &AgentClient, rules: Arc<EgressRules>) -> JoinHandle<()> {
    let mut requests = client.take_tunnel_requests();
    let client = client.clone();
    tokio::spawn(async move {
        let mut tunnels = JoinSet::new();
        loop {
            tokio::select! {
                request = requests.recv() => {
                    let Some(request) = request else { break };
                    if tunnels.len() >= MAX_TUNNEL_TASKS {
                        rules.record_refusal();
                        let message = format!(
                            "egress to {}:{} is refused: the session already has {MAX_TUNNEL_TASKS} tunnels in flight",
                            request.open.host, request.open.port
                        );
                        let _ = client.refuse_tunnel(request.id, message).await;
                        continue;
                    }
                    tunnels.spawn(tunnel(client.clone(), rules.clone(), request));
                }
                Some(_) = tunnels.join_next(), if !tunnels.is_empty() => {}
            }
        }
        // The channel closed: the tunnels end with it.
        tunnels.shutdown().await;
    })
}

/// One tunnel: refused by the rules, or connected and relayed until either side ends.
/// The byte cap is the rules' own (per session): bytes the program sends count as soon as
/// the host holds them, and its first bytes must name the host the tunnel was allowed
/// for (TLS SNI, HTTP `Host`).
async fn tunnel(client: AgentClient, rules: Arc<EgressRules>, request: TunnelRequest) {
    let (host, port) = (request.open.host.clone(), request.open.port);
    match rules.connect(&host, port).await {
        Ok(stream) => {
            let meter = stream.meter();
            let judge = rules.clone();
            let target = host.clone();
            let relay = Relay {
                max_bytes: None,
                charge: Some(Arc::new(move |bytes| meter.charge(bytes).map_err(|e| e.to_string()))),
                opening: Some(Box::new(move |bytes: &[u8]| judge.check_opening(&target, port, bytes))),
            };
            if let Err(e) = client.relay_tunnel(request.id, stream, relay).await {
                debug!(%host, port, error = %e, "egress tunnel ended with an error");
            }
        }
        Err(denied) => {
            debug!(%host, port, %denied, "egress refused");
            let _ = client.refuse_tunnel(request.id, denied.to_string()).await;
        }
    }
}

/// Environment of every command in a session with the agent's proxy: the proxy
/// variables, the package managers' own settings, and the extra CA bundle.
pub(crate) fn session_env(language: Language, proxy: bool, ca_bundle: bool) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let mut set = |name: &str, value: &str| env.push((name.to_owned(), value.to_owned()));
    if proxy {
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            set(name, PROXY_URL);
        }
        for name in ["NO_PROXY", "no_proxy"] {
            set(name, "localhost,127.0.0.1,::1");
        }
        match language {
            Language::Python => set("PIP_PROXY", PROXY_URL),
            Language::JavaScript => {
                set("npm_config_proxy", PROXY_URL);
                set("npm_config_https_proxy", PROXY_URL);
            }
            Language::Go => set("GOPROXY", "https://proxy.golang.org,direct"),
            _ => {}
        }
    }
    if ca_bundle {
        for name in ["SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "npm_config_cafile"] {
            set(name, CA_BUNDLE_PATH);
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_managers_point_at_the_proxy() {
        let env = session_env(Language::JavaScript, true, true);
        let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("HTTPS_PROXY"), Some(PROXY_URL));
        assert_eq!(get("npm_config_https_proxy"), Some(PROXY_URL));
        assert_eq!(get("NODE_EXTRA_CA_CERTS"), Some(CA_BUNDLE_PATH));
        assert!(get("NO_PROXY").is_some_and(|v| v.contains("127.0.0.1")));
        assert!(session_env(Language::Python, false, false).is_empty(), "no agent: no proxy to point at");
    }
}
