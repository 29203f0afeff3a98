//! Query strings of the list operations (ListAsyncInvokes, ListInvocations,
//! ListInvocationSteps, ListSessions, ListFlowExecutions,
//! ListFlowExecutionEvents): each parameter at most once, names and values
//! percent-decoded (`+` a space) as AWS reads them. The string itself goes
//! upstream as sent; the families judge the decoded pairs.

use crate::decide;
use crate::error::ProxyError;

/// Calls `judge(name, value)` for each decoded pair, in order; a name given
/// twice, or a part that is not UTF-8 once decoded, is 400.
pub(crate) fn for_each_pair(
    query: &str,
    mut judge: impl FnMut(&str, &str) -> Result<(), ProxyError>,
) -> Result<(), ProxyError> {
    let mut seen: Vec<String> = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = part.split_once('=').unwrap_or((part, ""));
        let (name, value) = (decode(raw_name)?, decode(raw_value)?);
        if seen.contains(&name) {
            return Err(ProxyError::InvalidParameter(format!("query parameter `{name}` may appear at most once")));
        }
        judge(&name, &value)?;
        seen.push(name);
    }
    Ok(())
}

fn decode(s: &str) -> Result<String, ProxyError> {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| ProxyError::InvalidParameter("query string is not valid UTF-8".into()))
}

/// The paging parameters every list operation shares, as AWS's models
/// bound them: `maxResults` 1 to 1,000 in plain digits, `nextToken` 1 to
/// 2,048 characters without white space. `None` for any other name.
pub(crate) fn paging_value_ok(name: &str, value: &str) -> Option<bool> {
    match name {
        "maxResults" => {
            Some(value.bytes().all(|b| b.is_ascii_digit()) && value.parse::<u32>().is_ok_and(|n| (1..=1000).contains(&n)))
        }
        "nextToken" => Some((1..=2048).contains(&value.len()) && !value.chars().any(char::is_whitespace)),
        _ => None,
    }
}

/// The 400 for a value `model` (the operation's AWS model) does not allow.
pub(crate) fn value_not_allowed(name: &str, value: &str, model: &str) -> ProxyError {
    ProxyError::InvalidParameter(format!(
        "query parameter `{name}` has a value {model} does not allow: {:?}",
        decide::truncate(value, 64)
    ))
}
