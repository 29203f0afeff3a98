//! Checks on a token once its key is found: expiry, not-before and leeway,
//! issuer and audience, `alg: none` and algorithm confusion, tampering, and
//! the tenant, user and groups claims that make up the principal.

use super::*;

#[tokio::test]
async fn expiry_not_before_and_leeway() {
    let a = hs();
    let mut c = claims();
    c["exp"] = json!(now() - 10);
    let expired = hs_token(&c);
    assert!(is_invalid(&check(&a, &expired).await));
    let mut c = claims();
    c["nbf"] = json!(now() + 10);
    let early = hs_token(&c);
    assert!(is_invalid(&check(&a, &early).await));
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert!(
        is_invalid(&check(&a, &hs_token(&c)).await),
        "exp is required"
    );
    let mut c = claims();
    c["exp"] = json!("tomorrow");
    assert!(is_invalid(&check(&a, &hs_token(&c)).await));

    let path = temp_file(HS_SECRET.as_bytes());
    let lenient = authn(&with_leeway(
        jwt_config(KeySource::Hs256SecretFile(path.path()), &[Algorithm::HS256]),
        30,
    ));
    assert!(check(&lenient, &expired).await.is_ok());
    assert!(check(&lenient, &early).await.is_ok());
    let mut c = claims();
    c["exp"] = json!(now() - 40);
    assert!(is_invalid(&check(&lenient, &hs_token(&c)).await));
}

#[tokio::test]
async fn issuer_and_audience() {
    let a = hs();
    let mut c = claims();
    c["iss"] = json!("https://issuer.example/pool/");
    assert!(is_invalid(&check(&a, &hs_token(&c)).await), "iss is exact");
    c.as_object_mut().unwrap().remove("iss");
    assert!(
        is_invalid(&check(&a, &hs_token(&c)).await),
        "iss is required"
    );

    let mut c = claims();
    c["aud"] = json!("someone-else");
    assert!(is_invalid(&check(&a, &hs_token(&c)).await));
    c["aud"] = json!(["x", "other-client"]);
    assert!(
        check(&a, &hs_token(&c)).await.is_ok(),
        "aud list intersects"
    );
    c["aud"] = json!(["x", "y"]);
    assert!(is_invalid(&check(&a, &hs_token(&c)).await));
    c["aud"] = json!(42);
    assert!(is_invalid(&check(&a, &hs_token(&c)).await));

    // Cognito access token: no aud, client_id instead
    let mut c = claims();
    c.as_object_mut().unwrap().remove("aud");
    c["client_id"] = json!("app-client");
    assert!(check(&a, &hs_token(&c)).await.is_ok());
    c["client_id"] = json!("stranger");
    assert!(is_invalid(&check(&a, &hs_token(&c)).await));
    c.as_object_mut().unwrap().remove("client_id");
    assert!(
        is_invalid(&check(&a, &hs_token(&c)).await),
        "no audience at all"
    );
    // an aud that does not match is not rescued by client_id
    let mut c = claims();
    c["aud"] = json!("someone-else");
    c["client_id"] = json!("app-client");
    assert!(is_invalid(&check(&a, &hs_token(&c)).await));
}

#[tokio::test]
async fn alg_none_and_algorithm_confusion() {
    let a = hs();
    for alg in ["none", "None", "NONE"] {
        let t = format!("{}.{}.", b64(&json!({ "alg": alg })), b64(&claims()));
        assert!(is_invalid(&check(&a, &t).await), "{alg}");
        let t = format!("{}.{}.c2ln", b64(&json!({ "alg": alg })), b64(&claims()));
        assert!(is_invalid(&check(&a, &t).await), "{alg} with a signature");
    }
    // an algorithm outside the allowlist
    let path = temp_file(HS_SECRET.as_bytes());
    let hs384_only = authn(&jwt_config(
        KeySource::Hs256SecretFile(path.path()),
        &[Algorithm::HS384],
    ));
    assert!(is_invalid(&check(&hs384_only, &hs_token(&claims())).await));

    // HS256 signed with the RSA public key PEM as the HMAC secret must fail,
    // even with HS256 allowed, for a PEM key and for a JWKS key.
    let public_pem = fixture_bytes("rsa1_public.pem");
    let forged = sign_hs(&public_pem, Some("k1"), &claims());
    let algs = [Algorithm::RS256, Algorithm::HS256];
    let pem = authn(&jwt_config(
        KeySource::PemFile(fixture("rsa1_public.pem")),
        &algs,
    ));
    assert!(is_invalid(&check(&pem, &forged).await));
    let file = temp_file(jwks(&[("k1", "rsa1")]).as_bytes());
    let set = authn(&jwt_config(KeySource::JwksFile(file.path()), &algs));
    assert!(is_invalid(&check(&set, &forged).await));
    assert!(
        check(&set, &sign("rsa1", Algorithm::RS256, Some("k1"), &claims()))
            .await
            .is_ok()
    );
    // and an HS key never verifies an RS token
    let rs = sign("rsa1", Algorithm::RS256, None, &claims());
    let path = temp_file(HS_SECRET.as_bytes());
    let hs_any = authn(&jwt_config(KeySource::Hs256SecretFile(path.path()), &algs));
    assert!(is_invalid(&check(&hs_any, &rs).await));
}

#[tokio::test]
async fn tampered_token() {
    let a = rsa_pem();
    let t = sign("rsa1", Algorithm::RS256, None, &claims());
    let parts: Vec<&str> = t.split('.').collect();
    let mut c = claims();
    c["custom:tenantId"] = json!("globex");
    let tampered = format!("{}.{}.{}", parts[0], b64(&c), parts[2]);
    assert!(is_invalid(&check(&a, &tampered).await));
    let truncated = &t[..t.len() - 4];
    assert!(is_invalid(&check(&a, truncated).await));
    for junk in ["abc", "a.b", "a.b.c.d", "....", "x.y.z"] {
        assert!(is_invalid(&check(&a, junk).await), "{junk}");
    }
    assert!(check(&a, &t).await.is_ok());
}

#[tokio::test]
async fn tenant_and_user_claims() {
    let a = hs();
    for bad in ["a/b", "..", "../x", ".hidden", "x".repeat(65).as_str()] {
        let mut c = claims();
        c["custom:tenantId"] = json!(bad);
        match check(&a, &hs_token(&c)).await {
            Err(ProxyError::UnknownTenant(t)) => assert!(bad.starts_with(&t)),
            other => panic!("{bad}: {other:?}"),
        }
    }
    for bad in [json!(42), json!(""), json!(null), json!(["acme"])] {
        let mut c = claims();
        c["custom:tenantId"] = bad.clone();
        assert!(is_invalid(&check(&a, &hs_token(&c)).await), "{bad}");
    }
    let mut c = claims();
    c.as_object_mut().unwrap().remove("custom:tenantId");
    assert!(is_invalid(&check(&a, &hs_token(&c)).await));
    let mut c = claims();
    c.as_object_mut().unwrap().remove("sub");
    assert!(is_invalid(&check(&a, &hs_token(&c)).await));
    let mut c = claims();
    c["sub"] = json!(7);
    assert!(is_invalid(&check(&a, &hs_token(&c)).await));
    // a bad tenant id with a missing user is still 401, not 403
    c["custom:tenantId"] = json!("../x");
    assert!(is_invalid(&check(&a, &hs_token(&c)).await));
}

#[tokio::test]
async fn groups_claim() {
    let a = hs();
    let mut c = claims();
    c["cognito:groups"] = json!(["admins", "users"]);
    assert_eq!(
        check(&a, &hs_token(&c)).await.unwrap().groups,
        ["admins", "users"]
    );
    c["cognito:groups"] = json!("admins");
    assert_eq!(check(&a, &hs_token(&c)).await.unwrap().groups, ["admins"]);
    c.as_object_mut().unwrap().remove("cognito:groups");
    assert!(check(&a, &hs_token(&c)).await.unwrap().groups.is_empty());
    c["cognito:groups"] = json!(["admins", 3]);
    assert!(is_invalid(&check(&a, &hs_token(&c)).await));
}
