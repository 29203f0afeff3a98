//! SageMaker runtime answers of the simulator: InvokeEndpoint
//! (`POST /endpoints/{name}/invocations`) echoes the request body, as a model
//! container that returns its input would. Which endpoint and which model of
//! a multi-model endpoint (`X-Amzn-SageMaker-Target-Model`) were asked for is
//! in the simulator's record of the request.

use super::sim_bedrock::Answer;
use bytes::Bytes;

pub const TARGET_MODEL: &str = "x-amzn-sagemaker-target-model";

/// `/endpoints/{name}/invocations` -> the endpoint name.
pub fn route(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/endpoints/")?;
    let name = rest.strip_suffix("/invocations")?;
    (!name.is_empty() && !name.contains('/')).then(|| name.to_string())
}

/// SageMaker endpoint names: `^[a-zA-Z0-9](-*[a-zA-Z0-9])*$`, 63 at most.
pub fn valid_endpoint_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

pub fn answer(endpoint: &str, headers: &http::HeaderMap, body: &Bytes) -> Answer {
    if !valid_endpoint_name(endpoint) {
        return Answer::error(
            400,
            "ValidationError",
            "1 validation error detected: Value at 'endpointName' failed to satisfy constraint",
        );
    }
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let mut extra = vec![
        ("content-type", content_type),
        (
            "x-amzn-invoked-production-variant",
            "AllTraffic".to_string(),
        ),
    ];
    if let Some(m) = headers.get(TARGET_MODEL).and_then(|v| v.to_str().ok()) {
        // Multi-model endpoints load the model on first use; say which.
        extra.push((
            "x-amzn-sagemaker-custom-attributes",
            format!("served-by={m}"),
        ));
    }
    Answer {
        status: 200,
        headers: extra,
        frames: vec![body.clone()],
        streaming: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_echoes() {
        assert_eq!(
            route("/endpoints/acme-classifier/invocations"),
            Some("acme-classifier".into())
        );
        assert_eq!(route("/endpoints//invocations"), None);
        assert_eq!(route("/endpoints/a/b/invocations"), None);
        assert_eq!(route("/endpoints/a/async-invocations"), None);
        let mut h = http::HeaderMap::new();
        h.insert("content-type", "text/csv".parse().unwrap());
        h.insert(TARGET_MODEL, "acme.tar.gz".parse().unwrap());
        let a = answer("pool", &h, &Bytes::from_static(b"1,2,3"));
        assert_eq!(a.status, 200);
        assert_eq!(a.frames, vec![Bytes::from_static(b"1,2,3")]);
        assert!(a.headers.contains(&("content-type", "text/csv".into())));
        assert_eq!(answer("-bad", &h, &Bytes::new()).status, 400);
        assert!(!valid_endpoint_name("a_b"));
        assert!(valid_endpoint_name("a-b-1"));
    }
}
