use super::*;
use crate::glob::Glob;
use crate::test_support::{alice, policy};

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const PROFILE: &str = "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/acme-haiku";

fn mapped(pairs: &[(&str, &str)]) -> TenantPolicy {
    let mut p = policy();
    p.model_map = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    p
}

#[test]
fn bare_id_and_every_foundation_model_arn_are_mapped() {
    let p = mapped(&[(HAIKU, PROFILE)]);
    for req in [
        HAIKU.to_string(),
        format!("arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}"),
        format!("arn:aws:bedrock:eu-central-1::foundation-model/{HAIKU}"),
        format!("arn:aws-us-gov:bedrock:us-gov-west-1::foundation-model/{HAIKU}"),
        format!("arn:aws-cn:bedrock:cn-north-1::foundation-model/{HAIKU}"),
    ] {
        assert_eq!(resolve(&p, &req), Resolution::Mapped(PROFILE), "{req}");
    }
}

#[test]
fn keys_written_as_arns_cover_the_bare_id_and_other_arns() {
    let p = mapped(&[(&format!("arn:aws:bedrock:us-west-2::foundation-model/{HAIKU}"), PROFILE)]);
    assert_eq!(resolve(&p, HAIKU), Resolution::Mapped(PROFILE));
    assert_eq!(resolve(&p, &format!("arn:aws:bedrock:ap-south-1::foundation-model/{HAIKU}")), Resolution::Mapped(PROFILE));
    assert!(matches!(resolve(&p, &format!("{HAIKU}:200k")), Resolution::Denied { .. }));
}

#[test]
fn suffix_case_and_profile_spellings_are_denied() {
    let p = mapped(&[(HAIKU, PROFILE)]);
    for req in [
        format!("{HAIKU}:200k"),
        format!("{HAIKU}:48k"),
        format!("arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}:200k"),
        HAIKU.to_uppercase(),
        "Anthropic.Claude-3-Haiku-20240307-v1:0".to_string(),
        format!("ARN:AWS:BEDROCK:us-east-1::foundation-model/{HAIKU}"),
        format!("us.{HAIKU}"),
        format!("eu.{HAIKU}"),
        format!("apac.{HAIKU}"),
        format!("global.{HAIKU}"),
        format!("us-gov.{HAIKU}"),
        format!("US.{HAIKU}"),
        format!("us.{HAIKU}:200k"),
        format!("arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.{HAIKU}"),
        format!("arn:aws:bedrock:us-east-1::inference-profile/{HAIKU}"),
    ] {
        assert_eq!(resolve(&p, &req), Resolution::Denied { key: HAIKU }, "{req}");
        assert_eq!(upstream_model(&p, &alice(), &req).unwrap_err().reason(), "model_not_allowed", "{req}");
    }
}

#[test]
fn other_models_are_forwarded_as_requested() {
    let p = mapped(&[(HAIKU, PROFILE)]);
    for req in [
        "anthropic.claude-3-haiku-20240307-v2:0",
        "anthropic.claude-3-haiku-20240307-v1:00",
        "anthropic.claude-3-haiku-20240307-v1",
        "anthropic.claude-3-sonnet-20240229-v1:0",
        "xanthropic.claude-3-haiku-20240307-v1:0",
        PROFILE,
    ] {
        assert_eq!(resolve(&p, req), Resolution::Unmapped, "{req}");
        assert_eq!(upstream_model(&p, &alice(), req).unwrap(), req);
    }
    assert_eq!(resolve(&policy(), HAIKU), Resolution::Unmapped, "empty map");
}

#[test]
fn a_spelling_named_exactly_in_the_configuration_is_covered() {
    let us = format!("us.{HAIKU}");
    // As a map key of its own (possibly mapped to itself).
    let p = mapped(&[(HAIKU, PROFILE), (&us, &us)]);
    assert_eq!(resolve(&p, &us), Resolution::Mapped(&us));
    assert!(matches!(resolve(&p, &format!("eu.{HAIKU}")), Resolution::Denied { .. }));
    // As a models entry without wildcards.
    let mut p = mapped(&[(HAIKU, PROFILE)]);
    p.models.push(Glob::new(&us).unwrap());
    assert_eq!(resolve(&p, &us), Resolution::Unmapped);
    assert_eq!(upstream_model(&p, &alice(), &us).unwrap(), us);
    // A glob is not consent.
    let mut p = mapped(&[(HAIKU, PROFILE)]);
    p.models.push(Glob::new("us.anthropic.*").unwrap());
    assert!(matches!(resolve(&p, &us), Resolution::Denied { .. }));
}

#[test]
fn non_foundation_model_keys_match_exactly_and_deny_case_variants() {
    let key = "arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0";
    let p = mapped(&[(key, PROFILE)]);
    assert_eq!(resolve(&p, key), Resolution::Mapped(PROFILE));
    assert!(matches!(resolve(&p, &key.to_uppercase()), Resolution::Denied { .. }));
    assert_eq!(resolve(&p, HAIKU), Resolution::Unmapped);
}

#[test]
fn foundation_model_arn_parsing() {
    assert_eq!(foundation_model_id(&format!("arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}")), Some(HAIKU));
    assert_eq!(foundation_model_id(&format!("arn:aws:bedrock:us-east-1:1:foundation-model/{HAIKU}")), None);
    assert_eq!(foundation_model_id("arn:aws:bedrock:us-east-1::foundation-model/"), None);
    assert_eq!(foundation_model_id(&format!("arn::bedrock:r::foundation-model/{HAIKU}")), None);
    assert_eq!(foundation_model_id(&format!("arn:aws:s3:r::foundation-model/{HAIKU}")), None);
    assert_eq!(foundation_model_id(HAIKU), None);
    assert_eq!(foundation_model_id(""), None);
    assert_eq!(canonical(HAIKU), HAIKU);
}

#[test]
fn odd_inputs_never_panic() {
    let p = mapped(&[(HAIKU, PROFILE), ("é.x", "y")]);
    for req in ["", ".", "/", ":", "é", "É.X", "a.é.x:1", "arn:", "arn:aws:bedrock:::foundation-model/é.x"] {
        let _ = resolve(&p, req);
    }
    assert!(matches!(resolve(&p, "a.é.x:1"), Resolution::Denied { key: "é.x" }));
}
