//! The conformance suites: the same tests against each backend a host can
//! keep its state in.
//!
//! A conformance test is an `async fn name(backend: Backend)` that starts
//! its hosts with [`Mesh::start`]; `conformance!(name, ...)` runs it once
//! per backend, as `embedded::name` and `nats::name`. On the embedded
//! backend the mesh is one host. On NATS it is two hosts that share one
//! nats-server: services register with the first ([`Mesh::home`]) and
//! everything the test checks goes through the second ([`Mesh::caller`]),
//! so that every assertion also says that the cluster shares it.

use weft_test_support::{HostBuilder, HostProcess, NatsCluster};

use crate::host_builder;

/// Where the hosts of a test keep what they share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    /// One host, its own store: the default.
    Embedded,
    /// Two hosts joined through a three-node NATS cluster with JetStream.
    Nats,
}

/// The hosts of one conformance test, and the NATS server they share.
pub(crate) struct Mesh {
    hosts: Vec<HostProcess>,
    // Dropped after the hosts (fields drop in order).
    _nats: Option<NatsCluster>,
}

impl Mesh {
    /// Starts the hosts of `backend` with default settings.
    pub(crate) async fn start(backend: Backend) -> Mesh {
        Mesh::start_with(backend, |builder| builder).await
    }

    /// Starts the hosts of `backend`, each with the settings `configure`
    /// adds.
    pub(crate) async fn start_with(
        backend: Backend,
        configure: impl Fn(HostBuilder) -> HostBuilder,
    ) -> Mesh {
        match backend {
            Backend::Embedded => Mesh {
                hosts: vec![configure(host_builder()).start().await],
                _nats: None,
            },
            Backend::Nats => {
                let nats = NatsCluster::start(3).await;
                let url = nats.urls();
                let mut hosts = Vec::new();
                for name in ["home", "caller"] {
                    let builder = host_builder().args(["--nats", url.as_str(), "--name", name]);
                    hosts.push(configure(builder).start().await);
                }
                Mesh {
                    hosts,
                    _nats: Some(nats),
                }
            }
        }
    }

    /// The host services register with.
    pub(crate) fn home(&self) -> &HostProcess {
        &self.hosts[0]
    }

    /// The host callers, the CLI and the gateway go through: another host
    /// than [`Mesh::home`] in a cluster.
    pub(crate) fn caller(&self) -> &HostProcess {
        self.hosts.last().expect("a mesh has a host")
    }
}

/// Runs each named `async fn(Backend)` of the module once per backend.
macro_rules! conformance {
    ($($name:ident),+ $(,)?) => {
        /// The suite against one host with its own store.
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::mesh::Backend::Embedded).await;
                }
            )+
        }

        /// The suite against two hosts on a three-node NATS cluster.
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::mesh::Backend::Nats).await;
                }
            )+
        }
    };
}
pub(crate) use conformance;
