use super::*;

fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const ROLE: &str = "arn:aws:iam::111122223333:role/tenant-acme";

fn assume(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut f = form(&[
        ("Action", "AssumeRole"),
        ("Version", "2011-06-15"),
        ("RoleArn", ROLE),
        ("RoleSessionName", "tenantgate-acme"),
    ]);
    f.extend(form(extra));
    f
}

#[test]
fn parses_form_encoding() {
    assert_eq!(
        parse_form(b"Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr&x=a+b&flag"),
        form(&[
            ("Action", "AssumeRole"),
            ("RoleArn", "arn:aws:iam::1:role/r"),
            ("x", "a b"),
            ("flag", "")
        ])
    );
}

#[test]
fn assume_role_issues_unique_tagged_sessions() {
    let s = Sessions::default();
    let now = SystemTime::now();
    let f = assume(&[
        ("Tags.member.2.Key", "Plan"),
        ("Tags.member.1.Key", "TenantID"),
        ("Tags.member.1.Value", "acme"),
        ("Tags.member.2.Value", "gold"),
        ("DurationSeconds", "900"),
    ]);
    let (a, k1) = answer(&s, &f, "AKIABASE", now, "req-1");
    assert_eq!(a.status, 200);
    let xml = String::from_utf8(a.frames[0].to_vec()).unwrap();
    let k1 = k1.unwrap();
    assert!(k1.access_key_id.starts_with("ASIA0001"));
    assert_eq!(k1.access_key_id.len(), 20);
    assert!(xml.starts_with(&format!("<AssumeRoleResponse xmlns=\"{XMLNS}\">")));
    assert!(xml.contains(&format!("<AccessKeyId>{}</AccessKeyId>", k1.access_key_id)));
    assert!(xml.contains(&format!(
        "<SecretAccessKey>{}</SecretAccessKey>",
        k1.secret.expose()
    )));
    assert!(xml
        .contains("<Arn>arn:aws:sts::111122223333:assumed-role/tenant-acme/tenantgate-acme</Arn>"));
    assert!(xml.contains("<RequestId>req-1</RequestId>"));
    let exp = humantime::format_rfc3339_seconds(now + Duration::from_secs(900)).to_string();
    assert!(xml.contains(&format!("<Expiration>{exp}</Expiration>")));
    let sess = s.get(&k1.access_key_id).unwrap();
    assert_eq!(sess.tag("TenantID"), Some("acme"));
    assert_eq!(
        sess.tags,
        vec![
            ("TenantID".into(), "acme".into()),
            ("Plan".into(), "gold".into())
        ]
    );
    assert_eq!(sess.role_name(), "tenant-acme");
    assert_eq!(sess.caller, "AKIABASE");

    let (_, k2) = answer(&s, &assume(&[]), "AKIABASE", now, "req-2");
    let k2 = k2.unwrap();
    assert_ne!(k1.access_key_id, k2.access_key_id);
    assert_ne!(k1.secret.expose(), k2.secret.expose());
    assert_eq!(s.all().len(), 2);
}

#[test]
fn session_tokens_are_checked() {
    let s = Sessions::default();
    let now = SystemTime::now();
    let (_, k) = answer(&s, &assume(&[("DurationSeconds", "900")]), "B", now, "r");
    let k = k.unwrap();
    let token = s.issued_tokens().pop().unwrap();
    let akid = &k.access_key_id;
    assert_eq!(s.check_token(akid, Some(&token), now), Ok(()));
    assert_eq!(s.check_token(akid, None, now), Err(TokenError::Invalid));
    assert_eq!(
        s.check_token(akid, Some("x"), now),
        Err(TokenError::Invalid)
    );
    let later = now + Duration::from_secs(901);
    assert_eq!(
        s.check_token(akid, Some(&token), later),
        Err(TokenError::Expired)
    );
    // Configured keys: not this STS's to judge.
    assert_eq!(s.check_token("AKIABASE", None, now), Ok(()));
    assert_eq!(s.check_token("ASIAOTHERSTS", Some("t"), now), Ok(()));
}

#[test]
fn invalid_requests_get_sts_errors() {
    let s = Sessions::default();
    let now = SystemTime::now();
    let bad_role = form(&[
        ("Action", "AssumeRole"),
        ("Version", "2011-06-15"),
        ("RoleArn", "arn:aws:iam::1:role/x"),
        ("RoleSessionName", "tenantgate-acme"),
    ]);
    let cases: Vec<(Vec<(String, String)>, &str)> = vec![
        (
            form(&[("Action", "GetCallerIdentity"), ("Version", "2011-06-15")]),
            "InvalidAction",
        ),
        (form(&[("Version", "2011-06-15")]), "MissingAction"),
        (bad_role, "ValidationError"),
        (assume(&[("DurationSeconds", "60")]), "ValidationError"),
        (
            assume(&[("Tags.member.1.Key", "aws:x"), ("Tags.member.1.Value", "v")]),
            "ValidationError",
        ),
        (
            assume(&[("Tags.member.1.Key", "TenantID")]),
            "ValidationError",
        ),
    ];
    for (f, code) in cases {
        let (a, key) = answer(&s, &f, "B", now, "r");
        assert_eq!(a.status, 400, "{f:?}");
        assert!(key.is_none());
        let xml = String::from_utf8(a.frames[0].to_vec()).unwrap();
        assert!(
            xml.contains(&format!("<Code>{code}</Code>")),
            "{f:?}: {xml}"
        );
    }
    assert!(s.all().is_empty());
    assert!(!valid_session_name("a"));
    assert!(!valid_session_name("has space"));
    assert!(valid_role_arn("arn:aws:iam::111122223333:role/a/b"));
    assert!(!valid_role_arn("arn:aws:iam::1111:role/a"));
    assert!(!valid_role_arn("arn:aws:iam::111122223333:user/a"));
}
