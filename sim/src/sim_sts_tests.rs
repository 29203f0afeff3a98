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

#[test]
fn token_length_is_configurable_and_defaults_to_the_demos() {
    let now = SystemTime::now();
    let s = Sessions::default();
    answer(&s, &assume(&[]), "B", now, "r");
    let token = s.issued_tokens().pop().unwrap();
    assert_eq!(token.len(), DEFAULT_TOKEN_LEN);
    assert_eq!(DEFAULT_TOKEN_LEN, 197);
    assert!(token.starts_with("IQoJb3JpZ2luX2VjE"));

    let s = Sessions::new(&StsOptions {
        token_len: 1000,
        ..StsOptions::default()
    });
    let (a, k) = answer(&s, &assume(&[]), "B", now, "r");
    let (a2, _) = answer(&s, &assume(&[]), "B", now, "r");
    let tokens = s.issued_tokens();
    assert!(tokens.iter().all(|t| t.len() == 1000), "{tokens:?}");
    assert!(tokens[0].starts_with("IQoJb3JpZ2luX2VjE"));
    assert_ne!(tokens[0], tokens[1]);
    let xml = String::from_utf8(a.frames[0].to_vec()).unwrap();
    assert!(xml.contains(&format!("<SessionToken>{}</SessionToken>", tokens[0])));
    assert!(String::from_utf8_lossy(&a2.frames[0]).contains(&tokens[1]));
    let akid = k.unwrap().access_key_id;
    assert_eq!(s.check_token(&akid, Some(&tokens[0]), now), Ok(()));
    assert_eq!(
        s.check_token(&akid, Some(&tokens[1]), now),
        Err(TokenError::Invalid)
    );

    // Shorter than the prefix: one random character after it.
    let s = Sessions::new(&StsOptions {
        token_len: 3,
        ..StsOptions::default()
    });
    answer(&s, &assume(&[]), "B", now, "r");
    assert_eq!(s.issued_tokens()[0].len(), TOKEN_PREFIX.len() + 1);
}

#[test]
fn many_sessions_are_found_by_key_in_issue_order() {
    let s = Sessions::default();
    let now = SystemTime::now();
    let mut keys = Vec::new();
    for i in 0..300 {
        let tenant = format!("t{i}");
        let f = assume(&[
            ("Tags.member.1.Key", "TenantID"),
            ("Tags.member.1.Value", &tenant),
        ]);
        keys.push(answer(&s, &f, "B", now, "r").1.unwrap().access_key_id);
    }
    let all = s.all();
    assert_eq!(all.len(), 300);
    let tokens = s.issued_tokens();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(all[i].access_key_id, *k);
        assert_eq!(
            s.get(k).unwrap().tag("TenantID"),
            Some(format!("t{i}").as_str())
        );
        assert_eq!(s.check_token(k, Some(&tokens[i]), now), Ok(()));
    }
    assert!(s.get("ASIAUNKNOWN").is_none());
}

#[test]
fn assume_role_only_keys_are_known_by_id() {
    let s = Sessions::new(&StsOptions {
        assume_role_only: vec![("AKIABASE".into(), SecretString::new("x".into()))],
        ..StsOptions::default()
    });
    assert!(s.is_assume_role_only("AKIABASE"));
    assert!(!s.is_assume_role_only("AKIAOTHER"));
    assert!(!Sessions::default().is_assume_role_only("AKIABASE"));
    // Not a session: its requests need no session token.
    assert!(!s.is_temporary("AKIABASE"));
    assert_eq!(s.check_token("AKIABASE", None, SystemTime::now()), Ok(()));
}

#[test]
fn error_summary_names_status_code_and_message() {
    let a = error(400, "ValidationError", "Version must be <2011-06-15>", "r");
    assert_eq!(
        error_summary(&a),
        "400 ValidationError: Version must be &lt;2011-06-15&gt;"
    );
    let (ok, _) = answer(
        &Sessions::default(),
        &assume(&[]),
        "B",
        SystemTime::now(),
        "r",
    );
    assert_eq!(error_summary(&ok), "200 : ");
}
