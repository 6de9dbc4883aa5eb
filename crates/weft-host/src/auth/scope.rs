//! Scopes (what a token allows) and needs (what a request asks for).

use std::fmt;
use std::str::FromStr;

use weft_core::Error;
use weft_host_api::tokens::SCOPE_FORMS;

/// What a token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// `call:*`: call every entrypoint of every service.
    CallAll,
    /// `call:SERVICE`: call every entrypoint of one service.
    CallService(String),
    /// `call:SERVICE.ENTRYPOINT`: call one entrypoint.
    CallEntrypoint(String, String),
    /// `admin`: everything, including deploying and managing tokens.
    Admin,
}

impl FromStr for Scope {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: String| {
            Error::invalid_argument(
                "scopes",
                format!("`{s}` is not a scope: {why}; scopes are {SCOPE_FORMS}"),
            )
        };
        if s == "admin" {
            return Ok(Scope::Admin);
        }
        let Some(target) = s.strip_prefix("call:") else {
            return Err(bad(
                "it starts with neither `call:` nor is it `admin`".into()
            ));
        };
        if target == "*" {
            return Ok(Scope::CallAll);
        }
        // Service names may contain dots, entrypoint names (Rust
        // identifiers) cannot: the last dot splits them.
        let valid =
            |name: &str| weft_core::name::validate(name).map_err(|e| bad(e.message().into()));
        if weft_core::name::validate(target).is_ok() && !target.contains('.') {
            return Ok(Scope::CallService(target.to_owned()));
        }
        match target.rsplit_once('.') {
            Some((service, entrypoint))
                if !entrypoint.is_empty()
                    && entrypoint
                        .chars()
                        .all(|c| c == '_' || c.is_ascii_alphanumeric()) =>
            {
                valid(service)?;
                Ok(Scope::CallEntrypoint(
                    service.to_owned(),
                    entrypoint.to_owned(),
                ))
            }
            _ => {
                valid(target)?;
                Ok(Scope::CallService(target.to_owned()))
            }
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::CallAll => f.write_str("call:*"),
            Scope::CallService(s) => write!(f, "call:{s}"),
            Scope::CallEntrypoint(s, e) => write!(f, "call:{s}.{e}"),
            Scope::Admin => f.write_str("admin"),
        }
    }
}

/// What a request needs a token to allow.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Need<'a> {
    /// Calling one entrypoint.
    Call(&'a str, &'a str),
    /// Reading one service's documentation: any scope that calls into it.
    Docs(&'a str),
    /// Reading the host's state (`GET /api/v1/...`): any valid token.
    Read,
    /// Managing the host: tokens, deployments.
    Admin,
}

impl Need<'_> {
    pub(super) fn allowed_by(&self, scope: &Scope) -> bool {
        match (self, scope) {
            (_, Scope::Admin) | (Need::Read, _) => true,
            (Need::Admin, _) => false,
            (_, Scope::CallAll) => true,
            (Need::Call(s, _) | Need::Docs(s), Scope::CallService(t)) => s == t,
            (Need::Call(s, e), Scope::CallEntrypoint(ts, te)) => s == ts && e == te,
            (Need::Docs(s), Scope::CallEntrypoint(ts, _)) => s == ts,
        }
    }

    /// The narrowest scope that allows this, as `weft token create` takes it.
    pub(crate) fn scope(&self) -> String {
        match self {
            Need::Call(s, e) => format!("call:{s}.{e}"),
            Need::Docs(s) => format!("call:{s}"),
            Need::Read => "any scope".to_owned(),
            Need::Admin => "admin".to_owned(),
        }
    }

    /// Every scope that allows this, for messages.
    pub(super) fn alternatives(&self) -> String {
        match self {
            Need::Call(s, e) => format!("`call:{s}.{e}`, `call:{s}`, `call:*` or `admin`"),
            Need::Docs(s) => format!("`call:{s}`, `call:{s}.ENTRYPOINT`, `call:*` or `admin`"),
            Need::Read => "any valid token".to_owned(),
            Need::Admin => "`admin`".to_owned(),
        }
    }

    pub(super) fn create_hint(&self) -> String {
        let scope = match self {
            Need::Read => "call:*".to_owned(),
            other => other.scope(),
        };
        format!("`weft token create --scope {scope}`")
    }
}

#[cfg(test)]
mod tests {
    use weft_core::Code;

    use super::*;

    #[test]
    fn scopes_parse_and_print() {
        for s in [
            "call:*",
            "call:die_roller",
            "call:die_roller.roll_die",
            "call:a.b.c",
            "admin",
        ] {
            assert_eq!(s.parse::<Scope>().unwrap().to_string(), s);
        }
        assert_eq!(
            "call:a.b.c".parse::<Scope>().unwrap(),
            Scope::CallEntrypoint("a.b".into(), "c".into())
        );
        for bad in ["", "call:", "call:Die", "root", "call:.x", "call:*.x"] {
            let e = bad.parse::<Scope>().unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn needs_match_scopes() {
        let call = Need::Call("s", "e");
        assert!(call.allowed_by(&Scope::CallAll));
        assert!(call.allowed_by(&Scope::Admin));
        assert!(call.allowed_by(&Scope::CallService("s".into())));
        assert!(call.allowed_by(&Scope::CallEntrypoint("s".into(), "e".into())));
        assert!(!call.allowed_by(&Scope::CallEntrypoint("s".into(), "f".into())));
        assert!(!call.allowed_by(&Scope::CallService("t".into())));
        assert!(Need::Docs("s").allowed_by(&Scope::CallEntrypoint("s".into(), "f".into())));
        assert!(!Need::Admin.allowed_by(&Scope::CallAll));
        assert!(Need::Read.allowed_by(&Scope::CallService("t".into())));
    }
}
