//! Errors of the Kubernetes API reads that policies make through [`ClusterContext::api_get`](super::ClusterContext).

use std::sync::Arc;
use std::time::Duration;

/// The error source of a failed request or connection, shared so that an error can be cached and cloned.
pub type SharedSource = Arc<dyn std::error::Error + Send + Sync>;

/// Why a read of the Kubernetes API made for a policy gave no answer. Every message starts with the path read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiReadError {
    /// The evaluation has no cluster context (`policyctl eval` or `test` without a cluster).
    #[error(
        "{path}: this evaluation has no cluster context (the Kubernetes API is not available)"
    )]
    NoCluster {
        /// The path read.
        path: String,
    },
    /// The path is not a read a policy may make.
    #[error("{path}: {rule}")]
    NotAllowed {
        /// The path read.
        path: String,
        /// The rule the path breaks.
        rule: PathRule,
    },
    /// The review was being tried on an async worker, where no read may wait for the network: the review goes to an
    /// evaluation thread, which reads.
    #[error("{path}: not read on an async worker (the review is handed to an evaluation thread)")]
    NotOnWorker {
        /// The path read.
        path: String,
    },
    /// The API server answered with an error status.
    #[error("{path}: {message} ({code})")]
    Status {
        /// The path read.
        path: String,
        /// The HTTP status code.
        code: u16,
        /// The API server's message.
        message: String,
    },
    /// The answer is larger than the configured limit.
    #[error("{path}: the response exceeds the limit of {max} bytes")]
    TooLarge {
        /// The path read.
        path: String,
        /// The limit, in bytes.
        max: usize,
    },
    /// The answer is not JSON.
    #[error("{path}: the response is not JSON: {source}")]
    NotJson {
        /// The path read.
        path: String,
        /// What the JSON reader found.
        #[source]
        source: Arc<serde_json::Error>,
    },
    /// The API server did not answer in time.
    #[error("{path}: the API server did not answer within {limit:?}")]
    Timeout {
        /// The path read.
        path: String,
        /// The time limit of a read.
        limit: Duration,
    },
    /// The request could not be built or sent, or its connection failed.
    #[error("{path}: {source}")]
    Transport {
        /// The path read.
        path: String,
        /// The client's error.
        #[source]
        source: SharedSource,
    },
    /// `policyctl test`: the test supplies no resources, so no read is made (context entries are mocked instead).
    #[error("{path}: API calls are not made in tests (mock the context entry in the Values file)")]
    NotInTests {
        /// The path read.
        path: String,
    },
    /// `policyctl test`: the path does not name API resources, so the test's context file cannot answer it.
    #[error("{path}: not a Kubernetes API path")]
    NotResourcePath {
        /// The path read.
        path: String,
    },
    /// `policyctl test`: the test's context file has no such object.
    #[error("{path}: not found in the test's context file")]
    NotInContext {
        /// The path read.
        path: String,
    },
}

impl ApiReadError {
    /// The path whose read failed.
    pub fn path(&self) -> &str {
        match self {
            ApiReadError::NoCluster { path }
            | ApiReadError::NotAllowed { path, .. }
            | ApiReadError::NotOnWorker { path }
            | ApiReadError::Status { path, .. }
            | ApiReadError::TooLarge { path, .. }
            | ApiReadError::NotJson { path, .. }
            | ApiReadError::Timeout { path, .. }
            | ApiReadError::Transport { path, .. }
            | ApiReadError::NotInTests { path }
            | ApiReadError::NotResourcePath { path }
            | ApiReadError::NotInContext { path } => path,
        }
    }
}

/// A rule of the reads policies may make, broken by a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRule {
    /// Only `/api/...` and `/apis/...` paths are read.
    #[error("only Kubernetes API paths (/api/..., /apis/...) can be read")]
    NotApi,
    /// No `.` or `..` segments.
    #[error("the path must not contain . or .. segments")]
    DotSegment,
    /// Secrets are never read for a policy.
    #[error("policies cannot read Secrets")]
    Secrets,
    /// Reads only, no watches.
    #[error("watches are not allowed, only reads")]
    Watch,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_path_first() {
        let path = "/api/v1/namespaces/a/configmaps/b".to_string();
        let cases = [
            (
                ApiReadError::NoCluster { path: path.clone() },
                "/api/v1/namespaces/a/configmaps/b: this evaluation has no cluster context (the Kubernetes API is not available)",
            ),
            (
                ApiReadError::NotAllowed { path: "/api/v1/secrets".into(), rule: PathRule::Secrets },
                "/api/v1/secrets: policies cannot read Secrets",
            ),
            (
                ApiReadError::NotAllowed { path: "/healthz".into(), rule: PathRule::NotApi },
                "/healthz: only Kubernetes API paths (/api/..., /apis/...) can be read",
            ),
            (
                ApiReadError::NotAllowed { path: "/api/..".into(), rule: PathRule::DotSegment },
                "/api/..: the path must not contain . or .. segments",
            ),
            (
                ApiReadError::NotAllowed { path: "/api/v1/pods?watch=1".into(), rule: PathRule::Watch },
                "/api/v1/pods?watch=1: watches are not allowed, only reads",
            ),
            (
                ApiReadError::NotOnWorker { path: path.clone() },
                "/api/v1/namespaces/a/configmaps/b: not read on an async worker (the review is handed to an evaluation thread)",
            ),
            (
                ApiReadError::Status { path: path.clone(), code: 404, message: "configmaps \"b\" not found".into() },
                "/api/v1/namespaces/a/configmaps/b: configmaps \"b\" not found (404)",
            ),
            (
                ApiReadError::TooLarge { path: path.clone(), max: 10 },
                "/api/v1/namespaces/a/configmaps/b: the response exceeds the limit of 10 bytes",
            ),
            (
                ApiReadError::Timeout { path: path.clone(), limit: Duration::from_millis(1500) },
                "/api/v1/namespaces/a/configmaps/b: the API server did not answer within 1.5s",
            ),
            (
                ApiReadError::NotInTests { path: path.clone() },
                "/api/v1/namespaces/a/configmaps/b: API calls are not made in tests (mock the context entry in the Values file)",
            ),
            (
                ApiReadError::NotResourcePath { path: "/version".into() },
                "/version: not a Kubernetes API path",
            ),
            (
                ApiReadError::NotInContext { path: path.clone() },
                "/api/v1/namespaces/a/configmaps/b: not found in the test's context file",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
            assert!(text.starts_with(error.path()), "{text}");
        }
    }

    #[test]
    fn decoding_and_transport_errors_keep_their_source() {
        let Err(json) = serde_json::from_str::<serde_json::Value>("{") else {
            panic!("not JSON");
        };
        let error = ApiReadError::NotJson {
            path: "/api/v1/pods".into(),
            source: Arc::new(json),
        };
        assert!(
            error
                .to_string()
                .starts_with("/api/v1/pods: the response is not JSON: EOF"),
            "{error}"
        );
        assert!(std::error::Error::source(&error).is_some());
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let error = ApiReadError::Transport {
            path: "/api/v1/pods".into(),
            source: Arc::new(io),
        };
        assert_eq!(error.to_string(), "/api/v1/pods: connection refused");
        let cloned = error.clone();
        assert!(std::error::Error::source(&cloned)
            .is_some_and(|s| s.to_string() == "connection refused"));
    }
}
