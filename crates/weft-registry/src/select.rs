//! Version selection and its error messages, shared by the host's
//! [`Registry`](crate::Registry) and the callers' [`Cache`](crate::Cache) so
//! both answer the same question the same way.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use weft_core::Error;
use weft_core::name::{Version, VersionSelector};

/// Picks the version of `service` that `selector` asks for among `running`
/// (versions that have at least one instance).
///
/// Without a main version, [`VersionSelector::Main`] picks the highest
/// running version.
pub(crate) fn choose<'a, V>(
    service: &str,
    main: Option<&Version>,
    running: &'a BTreeMap<Version, V>,
    selector: &VersionSelector,
) -> Result<(&'a Version, &'a V), Error> {
    let found = match selector {
        VersionSelector::Main => match main {
            Some(main) => {
                return running
                    .get_key_value(main)
                    .ok_or_else(|| main_unavailable(service, main, running));
            }
            None => running.iter().next_back(),
        },
        VersionSelector::Exact(v) => running.get_key_value(v),
        VersionSelector::Req(_) => running.iter().rev().find(|(v, _)| selector.matches(v)),
    };
    found.ok_or_else(|| match selector {
        VersionSelector::Main => unknown_service(service),
        _ => version_not_running(service, selector, running),
    })
}

pub(crate) fn unknown_service(service: &str) -> Error {
    Error::not_found(format!(
        "no service `{service}` is registered with the host; start it, or check the name (`weft ls` lists services)"
    ))
}

pub(crate) fn version_not_running<V>(
    service: &str,
    selector: &VersionSelector,
    running: &BTreeMap<Version, V>,
) -> Error {
    let wanted = match selector {
        VersionSelector::Req(req) => format!("no running version of `{service}` matches `{req}`"),
        _ => format!("version {selector} of `{service}` is not running"),
    };
    Error::not_found(if running.is_empty() {
        format!("{wanted}, and no other version of it is running; start or deploy it")
    } else {
        format!(
            "{wanted}; running versions: {}; call one of those, or start the version you want (`weft ls` lists versions)",
            list(running)
        )
    })
}

fn main_unavailable<V>(service: &str, main: &Version, running: &BTreeMap<Version, V>) -> Error {
    Error::unavailable(if running.is_empty() {
        format!(
            "the main version {main} of `{service}` has no running instances, and no other version is running; start it, or check its status with `weft ls`"
        )
    } else {
        format!(
            "the main version {main} of `{service}` has no running instances, but other versions are running ({}); start {main}, call a running version by number, or make one main (`weft main {service} <version>`)",
            list(running)
        )
    })
}

/// The versions, lowest first, as `1.0.0, 1.1.0`.
pub(crate) fn list<V>(running: &BTreeMap<Version, V>) -> String {
    let mut out = String::new();
    for (i, v) in running.keys().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{v}");
    }
    out
}
