//! Model id syntax shared by the configuration (map keys are normalised when
//! parsed) and the policy decision point: the bare id inside a
//! foundation-model ARN. No policy here, only spelling.

/// The bare model id of a foundation-model ARN
/// (`arn:<partition>:bedrock:<region>::foundation-model/<id>`), any
/// partition and region; `None` for anything else.
pub fn foundation_model_id(model: &str) -> Option<&str> {
    let rest = model.strip_prefix("arn:")?;
    let mut parts = rest.splitn(5, ':');
    let partition = parts.next()?;
    if partition.is_empty() || parts.next()? != "bedrock" {
        return None;
    }
    let _region = parts.next()?;
    let account = parts.next()?;
    let resource = parts.next()?;
    if !account.is_empty() {
        return None;
    }
    resource.strip_prefix("foundation-model/").filter(|id| !id.is_empty())
}

/// The id a map key or a requested model stands for: the bare id of a
/// foundation-model ARN, else the string itself.
pub fn canonical(model: &str) -> &str {
    foundation_model_id(model).unwrap_or(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foundation_model_arns_of_any_partition_and_region() {
        assert_eq!(foundation_model_id("arn:aws-cn:bedrock:cn-north-1::foundation-model/m.x:0"), Some("m.x:0"));
        assert_eq!(foundation_model_id("arn:aws:bedrock:us-east-1:111122223333:inference-profile/m"), None);
        assert_eq!(foundation_model_id("arn:aws:bedrock:us-east-1::foundation-model/"), None);
        assert_eq!(foundation_model_id("arn:aws:s3:::foundation-model/m"), None);
        assert_eq!(canonical("arn:aws:bedrock:eu-west-1::foundation-model/m"), "m");
        assert_eq!(canonical("us.m"), "us.m");
    }
}
