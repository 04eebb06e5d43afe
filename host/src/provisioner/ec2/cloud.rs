//! The EC2 API as the `ec2` driver uses it, on the official AWS SDK: one client per site, the
//! three calls it makes, and bounded retries with exponential backoff and jitter.
//!
//! The SDK's own retries are off: a `RunInstances` whose answer was lost may have launched the
//! instance, so before every try the driver looks for it by its `epu:instance` tag instead.

use crate::model::Ec2Deployable;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, InstanceStateName, ResourceType, Tag, TagSpecification};
use aws_sdk_ec2::Client;
use std::collections::HashMap;
use std::time::Duration;

/// Tag keys on every instance the driver launches.
pub const TAG_DOMAIN: &str = "epu:domain";
pub const TAG_INSTANCE: &str = "epu:instance";
pub const TAG_RUN: &str = "epu:run";

/// The first backoff and its cap.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// A failed cloud call.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {message}")]
pub struct CloudError {
    pub op: &'static str,
    pub message: String,
    /// Throttling, a 5xx, a timeout or a lost connection: worth another try.
    pub retryable: bool,
    /// The call timed out: it may still reach the cloud.
    pub timed_out: bool,
}

fn classify<E>(
    op: &'static str,
    e: aws_sdk_ec2::error::SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_ec2::error::SdkError;
    let (retryable, message) = match &e {
        SdkError::TimeoutError(_) => (true, "timed out".to_string()),
        SdkError::DispatchFailure(_) => (true, chain(&e)),
        SdkError::ResponseError(_) => (true, "the response could not be read".to_string()),
        SdkError::ServiceError(s) => {
            let err = s.err();
            let code = err.code().unwrap_or("unknown");
            let status = s.raw().status().as_u16();
            let throttled = matches!(
                code,
                "RequestLimitExceeded" | "Throttling" | "ThrottlingException" | "RequestThrottled"
            );
            let msg = format!("{code} ({status}): {}", err.message().unwrap_or_default());
            (throttled || status >= 500, msg)
        }
        other => (false, chain(other)),
    };
    CloudError {
        op,
        message,
        retryable,
        timed_out: matches!(e, SdkError::TimeoutError(_)),
    }
}

/// An error and its sources, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = s.source();
    }
    parts.join(": ")
}

/// Checks that the standard AWS chain (env, profile, …) yields credentials, within 5 s.
pub async fn check_credentials(dep: &Ec2Deployable) -> Result<(), String> {
    use aws_sdk_ec2::config::ProvideCredentials;
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(dep.region.clone()))
        .load()
        .await;
    let Some(provider) = conf.credentials_provider() else {
        return Err("no AWS credentials provider is configured".into());
    };
    match tokio::time::timeout(Duration::from_secs(5), provider.provide_credentials()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, \
             in the daemon's environment): {}",
            chain(&e)
        )),
        Err(_) => Err("looking for AWS credentials took over 5 s".into()),
    }
}

/// The wait before try `attempt` (from 1): exponential, capped, with full jitter.
pub fn backoff(attempt: u32) -> Duration {
    let exp = BACKOFF_BASE
        .saturating_mul(1 << attempt.min(10))
        .min(BACKOFF_CAP);
    let unit = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
    exp.mul_f64(0.5 + unit / 2.0)
}

/// An instance as the cloud lists it.
#[derive(Clone, Debug)]
pub struct CloudInstance {
    pub id: String,
    pub state: InstanceStateName,
    pub tags: HashMap<String, String>,
}

/// What one launch asks for.
pub struct LaunchRequest<'a> {
    pub instance_id: &'a str,
    pub domain: &'a str,
    pub run: Option<&'a str>,
    pub user_data: String,
}

/// A client for one site (region and endpoint).
pub async fn client(dep: &Ec2Deployable) -> Client {
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(dep.region.clone()))
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_millis(dep.call_timeout_ms))
                .connect_timeout(Duration::from_millis(dep.call_timeout_ms))
                .build(),
        )
        .load()
        .await;
    let mut b = aws_sdk_ec2::config::Builder::from(&conf);
    if let Some(url) = &dep.endpoint_url {
        b = b.endpoint_url(url);
    }
    Client::from_conf(b.build())
}

/// `RunInstances` of one instance, tagged, with the instance id as client token (which makes
/// a repeated call idempotent on AWS). Returns the cloud's instance id.
pub async fn run_instance(
    client: &Client,
    dep: &Ec2Deployable,
    req: &LaunchRequest<'_>,
) -> Result<String, CloudError> {
    use base64::Engine;
    let mut tags = vec![
        Tag::builder().key(TAG_DOMAIN).value(req.domain).build(),
        Tag::builder()
            .key(TAG_INSTANCE)
            .value(req.instance_id)
            .build(),
    ];
    if let Some(run) = req.run {
        tags.push(Tag::builder().key(TAG_RUN).value(run).build());
    }
    let spec = TagSpecification::builder()
        .resource_type(ResourceType::Instance)
        .set_tags(Some(tags))
        .build();
    let mut call = client
        .run_instances()
        .image_id(&dep.image_id)
        .instance_type(dep.instance_type.as_str().into())
        .min_count(1)
        .max_count(1)
        .client_token(req.instance_id)
        .user_data(base64::engine::general_purpose::STANDARD.encode(&req.user_data))
        .tag_specifications(spec);
    if let Some(k) = &dep.key_name {
        call = call.key_name(k);
    }
    if !dep.security_groups.is_empty() {
        call = call.set_security_groups(Some(dep.security_groups.clone()));
    }
    let out = call.send().await.map_err(|e| classify("RunInstances", e))?;
    out.instances()
        .first()
        .and_then(|i| i.instance_id())
        .map(str::to_string)
        .ok_or_else(|| CloudError {
            op: "RunInstances",
            message: "the answer names no instance".into(),
            retryable: false,
            timed_out: false,
        })
}

/// `DescribeInstances` of the instances whose tag `key` is `value`, every page.
pub async fn describe_tagged(
    client: &Client,
    key: &str,
    value: &str,
) -> Result<Vec<CloudInstance>, CloudError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .describe_instances()
            .filters(
                Filter::builder()
                    .name(format!("tag:{key}"))
                    .values(value)
                    .build(),
            )
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| classify("DescribeInstances", e))?;
        for i in page.reservations().iter().flat_map(|r| r.instances()) {
            let (Some(id), Some(state)) = (i.instance_id(), i.state().and_then(|s| s.name()))
            else {
                continue;
            };
            let tags = i
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect();
            out.push(CloudInstance {
                id: id.to_string(),
                state: state.clone(),
                tags,
            });
        }
        token = page
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// `TerminateInstances` of one instance.
pub async fn terminate(client: &Client, cloud_id: &str) -> Result<(), CloudError> {
    client
        .terminate_instances()
        .instance_ids(cloud_id)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| classify("TerminateInstances", e))
}

/// Whether the cloud is done with an instance (or is ending it).
pub fn is_ending(state: &InstanceStateName) -> bool {
    matches!(
        state,
        InstanceStateName::ShuttingDown
            | InstanceStateName::Terminated
            | InstanceStateName::Stopping
            | InstanceStateName::Stopped
    )
}
