//! The one error type of weft, with stable codes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The stable code of an [`Error`].
///
/// Codes never change meaning; new ones may be added, so match with a
/// wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Code {
    /// A service, version or entrypoint does not exist.
    NotFound,
    /// An argument is missing, has the wrong type, or is not expected.
    InvalidArgument,
    /// The entrypoint ran and returned an error of its own.
    Application,
    /// The call's deadline passed before it completed.
    DeadlineExceeded,
    /// No instance could take the call right now; trying again later may work.
    Unavailable,
    /// The caller cancelled the call.
    Cancelled,
    /// The caller did not prove who it is.
    Unauthenticated,
    /// The caller is known but not allowed to do this.
    PermissionDenied,
    /// A limit was hit: payload size, concurrency, quota.
    ResourceExhausted,
    /// A bug or an unexpected condition inside weft.
    Internal,
}

impl Code {
    /// The code as it appears on the wire and in HTTP problem bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::NotFound => "not_found",
            Code::InvalidArgument => "invalid_argument",
            Code::Application => "application",
            Code::DeadlineExceeded => "deadline_exceeded",
            Code::Unavailable => "unavailable",
            Code::Cancelled => "cancelled",
            Code::Unauthenticated => "unauthenticated",
            Code::PermissionDenied => "permission_denied",
            Code::ResourceExhausted => "resource_exhausted",
            Code::Internal => "internal",
        }
    }

    /// The HTTP status the gateway answers with for this code.
    pub fn http_status(self) -> u16 {
        match self {
            Code::NotFound => 404,
            Code::InvalidArgument => 400,
            Code::Application => 500,
            Code::DeadlineExceeded => 504,
            Code::Unavailable => 503,
            Code::Cancelled => 499,
            Code::Unauthenticated => 401,
            Code::PermissionDenied => 403,
            Code::ResourceExhausted => 413,
            Code::Internal => 500,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong with a call, a publish or a registration.
///
/// An error has a stable [`Code`] and a message that says what happened and
/// what to do. Errors cross process boundaries intact: an [`Code::Application`]
/// error raised by a remote entrypoint arrives with the remote service,
/// entrypoint and the error's kind.
///
/// ```
/// use weft_core::{Code, Error};
///
/// let err = Error::invalid_argument("count", "expected an integer, got a string");
/// assert_eq!(err.code(), Code::InvalidArgument);
/// assert_eq!(err.field(), Some("count"));
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "Repr", into = "Repr")]
pub struct Error {
    code: Code,
    message: String,
    // Boxed so that `Result<T, Error>` stays small on the hot path.
    origin: Option<Box<Origin>>,
}

#[derive(Clone, PartialEq, Default)]
struct Origin {
    field: Option<String>,
    service: Option<String>,
    entrypoint: Option<String>,
    kind: Option<String>,
}

/// The flat form of an error on the wire and in problem bodies.
#[derive(Serialize, Deserialize)]
struct Repr {
    code: Code,
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entrypoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
}

impl From<Repr> for Error {
    fn from(r: Repr) -> Self {
        let origin = Origin {
            field: r.field,
            service: r.service,
            entrypoint: r.entrypoint,
            kind: r.kind,
        };
        Error {
            code: r.code,
            message: r.message,
            origin: (origin != Origin::default()).then(|| Box::new(origin)),
        }
    }
}

impl From<Error> for Repr {
    fn from(e: Error) -> Self {
        let o = e.origin.map(|o| *o).unwrap_or_default();
        Repr {
            code: e.code,
            message: e.message,
            field: o.field,
            service: o.service,
            entrypoint: o.entrypoint,
            kind: o.kind,
        }
    }
}

/// The kind of an [`Code::Unavailable`] error for a call that was not run.
const NOT_RUN: &str = "not_run";

/// The kind of a [`Code::ResourceExhausted`] error for a call refused
/// because its entrypoint was at its concurrency limit.
const OVERLOADED: &str = "overloaded";

/// `Result` with weft's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with a code and a message.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            origin: None,
        }
    }

    /// [`Code::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }

    /// [`Code::InvalidArgument`] naming the parameter that failed.
    pub fn invalid_argument(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = Self::new(Code::InvalidArgument, message);
        e.origin_mut().field = Some(field.into());
        e
    }

    /// [`Code::Application`]: an entrypoint returned an error of its own.
    /// `kind` names the error (an enum variant or a type name).
    pub fn application(kind: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = Self::new(Code::Application, message);
        e.origin_mut().kind = Some(kind.into());
        e
    }

    /// [`Code::DeadlineExceeded`].
    pub fn deadline_exceeded(message: impl Into<String>) -> Self {
        Self::new(Code::DeadlineExceeded, message)
    }

    /// [`Code::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(Code::Unavailable, message)
    }

    /// [`Code::Unavailable`] for a call that was certainly not run (the
    /// callee was shutting down before it started it): safe to send again,
    /// idempotent or not.
    pub fn not_run(message: impl Into<String>) -> Self {
        let mut e = Self::new(Code::Unavailable, message);
        e.origin_mut().kind = Some(NOT_RUN.to_owned());
        e
    }

    /// Whether the call certainly did not run (see [`Error::not_run`]).
    pub fn is_not_run(&self) -> bool {
        self.code == Code::Unavailable && self.kind() == Some(NOT_RUN)
    }

    /// [`Code::ResourceExhausted`] for a call refused, before it ran,
    /// because its entrypoint had as many calls running and waiting as it
    /// takes (`#[entrypoint(max_concurrency = .., queue = ..)]`): safe to
    /// send again, to another instance.
    pub fn overloaded(message: impl Into<String>) -> Self {
        let mut e = Self::new(Code::ResourceExhausted, message);
        e.origin_mut().kind = Some(OVERLOADED.to_owned());
        e
    }

    /// Whether the callee refused the call as overloaded (see
    /// [`Error::overloaded`]).
    pub fn is_overloaded(&self) -> bool {
        self.code == Code::ResourceExhausted && self.kind() == Some(OVERLOADED)
    }

    /// [`Code::Unavailable`]: dialling `instance` of `service` failed with
    /// `cause` (which names only the address).
    pub fn instance_unreachable(service: &str, instance: &str, cause: &Error) -> Self {
        Self::unavailable(format!(
            "instance `{instance}` of `{service}` cannot be reached: {}",
            cause.message()
        ))
    }

    /// [`Code::Cancelled`].
    pub fn cancelled(message: impl Into<String>) -> Self {
        Self::new(Code::Cancelled, message)
    }

    /// [`Code::Unauthenticated`].
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(Code::Unauthenticated, message)
    }

    /// [`Code::PermissionDenied`].
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(Code::PermissionDenied, message)
    }

    /// [`Code::ResourceExhausted`].
    pub fn resource_exhausted(message: impl Into<String>) -> Self {
        Self::new(Code::ResourceExhausted, message)
    }

    /// [`Code::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }

    /// Records the service and entrypoint where the error was raised, unless
    /// it already names one (errors passed through keep their origin).
    pub fn with_origin(mut self, service: &str, entrypoint: &str) -> Self {
        let o = self.origin_mut();
        if o.service.is_none() {
            o.service = Some(service.to_owned());
            o.entrypoint = Some(entrypoint.to_owned());
        }
        self
    }

    fn origin_mut(&mut self) -> &mut Origin {
        self.origin.get_or_insert_with(Default::default)
    }

    /// The stable code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// What happened and what to do.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The parameter that failed, for [`Code::InvalidArgument`].
    pub fn field(&self) -> Option<&str> {
        self.origin.as_ref().and_then(|o| o.field.as_deref())
    }

    /// The service where the error was raised, when it came from a remote entrypoint.
    pub fn service(&self) -> Option<&str> {
        self.origin.as_ref().and_then(|o| o.service.as_deref())
    }

    /// The entrypoint where the error was raised.
    pub fn entrypoint(&self) -> Option<&str> {
        self.origin.as_ref().and_then(|o| o.entrypoint.as_deref())
    }

    /// The application error's kind (variant or type name), for [`Code::Application`].
    pub fn kind(&self) -> Option<&str> {
        self.origin.as_ref().and_then(|o| o.kind.as_deref())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("code", &self.code).field("message", &self.message);
        for (name, v) in [
            ("field", self.field()),
            ("service", self.service()),
            ("entrypoint", self.entrypoint()),
            ("kind", self.kind()),
        ] {
            if let Some(v) = v {
                d.field(name, &v);
            }
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(kind) = self.kind() {
            write!(f, " ({kind})")?;
        }
        if let (Some(s), Some(e)) = (self.service(), self.entrypoint()) {
            write!(f, " from {s}.{e}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for Error {}

impl From<weft_wire::WireError> for Error {
    fn from(e: weft_wire::WireError) -> Self {
        match e {
            weft_wire::WireError::FrameTooLarge { .. } => Error::resource_exhausted(e.to_string()),
            other => Error::internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_origin_and_kind() {
        let e = Error::application("OutOfStock", "no dice left").with_origin("shop", "buy");
        assert_eq!(
            e.to_string(),
            "application (OutOfStock) from shop.buy: no dice left"
        );
    }

    #[test]
    fn origin_is_kept_when_passed_through() {
        let e = Error::not_found("x")
            .with_origin("a", "b")
            .with_origin("c", "d");
        assert_eq!(e.service(), Some("a"));
        assert_eq!(e.entrypoint(), Some("b"));
    }

    #[test]
    fn serde_round_trip_is_stable() {
        let e = Error::invalid_argument("n", "bad");
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"code":"invalid_argument","message":"bad","field":"n"}"#
        );
        let back: Error = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
    }
}
