//! Lambda-mode configuration, read once at init from the function's environment. Every error
//! names the variable to fix.

use std::time::Duration;

use crate::metrics::DEFAULT_NAMESPACE;

/// A setting that is missing or wrong.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub variable: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// The Lambda function's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LambdaConfig {
    /// The function's Region: the source stream's (`AWS_REGION`, set by Lambda).
    pub source_region: String,
    /// `ESDK_REPLICATE_TO`: the destination Region.
    pub destination_region: String,
    /// `ESDK_CONTROL_TABLE`: the control table (in the destination Region: checkpoints; in the
    /// source Region: the active-Region flag).
    pub control_table: String,
    /// `ESDK_SOURCE_STREAM`: the only stream whose events are accepted (default: any stream of
    /// the source Region the mapping delivers).
    pub source_stream: Option<String>,
    /// `ESDK_DESTINATION_STREAM`: default the source stream's name.
    pub destination_stream: Option<String>,
    /// `ESDK_ALLOWED_KEYS`: comma-separated KMS key ARNs (empty: every key).
    pub allowed_keys: Vec<String>,
    /// `ESDK_DEAD_LETTER_QUEUE_URL`: where refused records go.
    pub dead_letter_queue_url: Option<String>,
    /// `ESDK_METRICS_NAMESPACE`: CloudWatch namespace.
    pub metrics_namespace: String,
    /// `ESDK_FLAG_TTL`: how long an active-Region flag read is trusted (default 1 s).
    pub flag_ttl: Duration,
    /// `ESDK_METRICS_INTERVAL`: least time between two `PutMetricData` calls (default 10 s).
    pub metrics_interval: Duration,
}

impl LambdaConfig {
    /// Reads the settings with `get` (the process environment: `|k| std::env::var(k).ok()`).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let opt = |variable: &'static str| -> Result<Option<String>, ConfigError> {
            match get(variable) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) if v.trim() != v => {
                    Err(ConfigError { variable, reason: format!("{v:?} has leading or trailing spaces") })
                }
                Some(v) => Ok(Some(v)),
            }
        };
        let req = |variable: &'static str, what: &str| -> Result<String, ConfigError> {
            opt(variable)?.ok_or_else(|| ConfigError { variable, reason: format!("missing: set it to {what}") })
        };
        let source_region = req("AWS_REGION", "the function's Region (Lambda sets it)")?;
        // lambda_runtime reads these (and panics without them); Lambda always sets them.
        for variable in ["AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION"] {
            req(variable, "what Lambda sets (this is not a Lambda execution environment?)")?;
        }
        let memory = req("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "what Lambda sets, in MiB")?;
        if memory.parse::<i32>().is_err() {
            return Err(ConfigError {
                variable: "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                reason: format!("{memory:?} is not a number of MiB"),
            });
        }
        let destination_region = req("ESDK_REPLICATE_TO", "the destination Region, e.g. us-west-2")?;
        if !is_region(&destination_region) {
            return Err(ConfigError {
                variable: "ESDK_REPLICATE_TO",
                reason: format!("{destination_region:?} is not a Region name (like us-west-2)"),
            });
        }
        if destination_region == source_region {
            return Err(ConfigError {
                variable: "ESDK_REPLICATE_TO",
                reason: format!(
                    "{destination_region} is the function's own Region; replication goes to another Region"
                ),
            });
        }
        let control_table = req("ESDK_CONTROL_TABLE", "the DynamoDB control table's name")?;
        let allowed_keys: Vec<String> =
            opt("ESDK_ALLOWED_KEYS")?.map(|v| v.split(',').map(|k| k.trim().to_owned()).collect()).unwrap_or_default();
        if let Some(bad) = allowed_keys.iter().find(|k| !k.starts_with("arn:") || !k.contains(":key/")) {
            return Err(ConfigError {
                variable: "ESDK_ALLOWED_KEYS",
                reason: format!("{bad:?} is not a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>); aliases and key ids cannot be matched against the records' key ARNs"),
            });
        }
        let duration = |variable: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            match opt(variable)? {
                None => Ok(default),
                Some(v) => humantime::parse_duration(&v)
                    .map_err(|e| ConfigError { variable, reason: format!("{v:?}: {e} (e.g. 1s, 500ms)") }),
            }
        };
        let flag_ttl = duration("ESDK_FLAG_TTL", Duration::from_secs(1))?;
        let metrics_interval = duration("ESDK_METRICS_INTERVAL", crate::metrics::DEFAULT_FLUSH_INTERVAL)?;
        Ok(Self {
            source_region,
            destination_region,
            control_table,
            source_stream: opt("ESDK_SOURCE_STREAM")?,
            destination_stream: opt("ESDK_DESTINATION_STREAM")?,
            allowed_keys,
            dead_letter_queue_url: opt("ESDK_DEAD_LETTER_QUEUE_URL")?,
            metrics_namespace: opt("ESDK_METRICS_NAMESPACE")?.unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            flag_ttl,
            metrics_interval,
        })
    }
}

/// `xx-name-N` (with an optional partition infix such as `us-gov-west-1`).
fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<LambdaConfig, ConfigError> {
        let env: HashMap<String, String> =
            RUNTIME.iter().chain(vars).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        LambdaConfig::from_env(|k| env.get(k).cloned())
    }

    const BASE: [(&str, &str); 3] =
        [("AWS_REGION", "us-east-1"), ("ESDK_REPLICATE_TO", "us-west-2"), ("ESDK_CONTROL_TABLE", "ctl")];
    const RUNTIME: [(&str, &str); 3] = [
        ("AWS_LAMBDA_FUNCTION_NAME", "replicator"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
    ];

    #[test]
    fn defaults() {
        let c = config(&BASE).unwrap();
        assert_eq!(c.metrics_namespace, "esdk/replication");
        assert_eq!((c.destination_stream, c.source_stream, c.dead_letter_queue_url), (None, None, None));
        assert!(c.allowed_keys.is_empty());
        assert_eq!(c.flag_ttl, Duration::from_secs(1));
        assert_eq!(c.metrics_interval, Duration::from_secs(10));
    }

    #[test]
    fn every_error_names_its_variable() {
        let key = "arn:aws:kms:us-east-1:111122223333:key/mrk-1";
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![BASE[0], BASE[2]], "ESDK_REPLICATE_TO"),
            (vec![BASE[0], BASE[1]], "ESDK_CONTROL_TABLE"),
            (vec![BASE[1], BASE[2]], "AWS_REGION"),
            (vec![BASE[0], ("ESDK_REPLICATE_TO", "us-east-1"), BASE[2]], "ESDK_REPLICATE_TO"),
            (vec![BASE[0], ("ESDK_REPLICATE_TO", "west"), BASE[2]], "ESDK_REPLICATE_TO"),
            (vec![BASE[0], BASE[1], BASE[2], ("ESDK_ALLOWED_KEYS", "alias/orders")], "ESDK_ALLOWED_KEYS"),
            (vec![BASE[0], BASE[1], BASE[2], ("ESDK_FLAG_TTL", "soon")], "ESDK_FLAG_TTL"),
            (vec![BASE[0], BASE[1], BASE[2], ("ESDK_METRICS_INTERVAL", "-1")], "ESDK_METRICS_INTERVAL"),
            (vec![BASE[0], BASE[1], ("ESDK_CONTROL_TABLE", " ctl")], "ESDK_CONTROL_TABLE"),
            (
                vec![BASE[0], BASE[1], BASE[2], ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "lots")],
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            ),
        ];
        for (vars, variable) in cases {
            let e = config(&vars).unwrap_err();
            assert_eq!(e.variable, variable, "{vars:?}");
            assert!(e.to_string().starts_with(variable), "{e}");
        }
        let mut vars = BASE.to_vec();
        let keys = format!("{key}, {}", key.replace("mrk-1", "mrk-2"));
        vars.push(("ESDK_ALLOWED_KEYS", &keys));
        assert_eq!(config(&vars).unwrap().allowed_keys.len(), 2);
        assert!(is_region("us-gov-west-1") && is_region("ap-southeast-7") && !is_region("us-west"));
    }
}
