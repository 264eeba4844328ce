//! [`ServiceError`]: failures below the service keep their cause, with the message and
//! status a client saw before.

use std::error::Error as _;

use axum::http::StatusCode;

use super::*;

#[test]
fn store_failures_keep_their_cause_and_message() {
    let io = StoreError::Io {
        path: "/data/catalog".into(),
        source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied"),
    };
    let shown = io.to_string();
    let e = ServiceError::from(io);
    assert_eq!(e.to_string(), shown);
    assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(e.code(), "internal");
    // The io::Error below the store error is still reachable.
    assert_eq!(e.source().unwrap().to_string(), "denied");

    let missing = StoreError::NotFound {
        store: "file:///s".into(),
        key: "runs/j/r.json".into(),
    };
    let e = ServiceError::from(missing);
    assert_eq!(e.status(), StatusCode::NOT_FOUND);
    assert_eq!(e.to_string(), "runs/j/r.json not found");
}

#[test]
fn socket_and_auth_config_failures_keep_their_cause() {
    let e = ServiceError::Io {
        context: "cannot read the listening socket's address",
        source: std::io::Error::other("gone"),
    };
    assert_eq!(
        e.to_string(),
        "cannot read the listening socket's address: gone"
    );
    assert_eq!(e.source().unwrap().to_string(), "gone");
    assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);

    let e = ServiceError::AuthConfig(auth::AuthConfigError {
        key: "tokens[0].role".into(),
        reason: "unknown role".into(),
    });
    assert_eq!(
        e.to_string(),
        "invalid service configuration: [service] tokens[0].role: unknown role"
    );
    assert!(e.source().is_some());
    assert_eq!(e.code(), "internal");
}
